"""The workload's status as the API serves it: the typed latest evaluation, never the control
loop's own memory (engine state, signal history, counters, decision key, quota clocks)."""

import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from scaling.loop import tick_cluster
from scaling.models import ControlLoopState, Decision, Workload
from scaling.status import LOOP_STATE_KEYS
from tests.api.conftest import PUBLIC_STATUS_KEYS
from tests.scaling.test_loop import CHAT, fleet, register

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_anywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_anywhere(v)}
    return set()


@pytest.fixture
def staff() -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_user("ops", is_staff=True))
    return client


def test_after_real_ticks_the_api_serves_the_evaluation_and_no_loop_memory(
    start_simulator, gpu_type, team_a, staff
):
    # predictive reads token counters and keeps minutes of history: the most private state.
    busy = {"kind": "constant", "rate_rps": 20.0, "output_mean": 200, "input_mean": 300}
    url = start_simulator(fleet(CHAT | {"load": busy}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, algorithm="predictive", mode="dry-run")
    start = time.time()
    for second in range(4):
        tick_cluster(cluster.pk, now=start + second)
        time.sleep(0.3)  # the simulator serves new counter values in its own (real) time
    workload.refresh_from_db()
    assert {"memory", "history", "counters", "key", "wanted"} <= set(workload.loop_state)
    assert workload.loop_state["history"]["metric"]

    body = staff.get(f"/api/v1/workloads/{workload.pk}/").json()
    assert set(body["status"]) == PUBLIC_STATUS_KEYS
    assert not keys_anywhere(body) & set(LOOP_STATE_KEYS)
    assert "loop_state" not in body
    served = body["status"]
    assert served["outcome"] == workload.status["outcome"]
    assert served["algorithm"] == "predictive" and served["current"] == 1
    assert served["at"] == served["observed_at"]
    assert served["at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(start + 3)))
    assert served["steps"] and {"name", "value", "note"} == set(served["steps"][0])
    assert served["error"] is None
    listed = staff.get("/api/v1/workloads/").json()["results"]
    assert not keys_anywhere(listed) & set(LOOP_STATE_KEYS)


def test_an_unobservable_workload_shows_its_error_incident(gpu_type, team_a, staff):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cluster, workload = register(url, gpu_type, team_a)
    assert staff.get(f"/api/v1/workloads/{workload.pk}/").json()["status"] is None
    start = 1_800_000_000.0
    for second in range(3):
        tick_cluster(cluster.pk, now=start + second)
    body = staff.get(f"/api/v1/workloads/{workload.pk}/").json()
    error = body["status"]["error"]
    assert error["cause"][1] == "list deployments"  # [kind, failing call]
    assert error["count"] == 3
    assert error["since"] == "2027-01-15T08:00:00Z"
    assert error["last_at"] == "2027-01-15T08:00:02Z"
    assert body["status"]["outcome"] == "error"
    assert Workload.objects.get(pk=workload.pk).loop_state["key"][0] == "error"
    # One clock for the tick: the incident's Decision and the loop's error log use it too.
    (decision,) = Decision.objects.filter(workload=workload)
    assert decision.at == datetime.fromtimestamp(start, UTC)
    (logged,) = ControlLoopState.objects.get(cluster=cluster).errors.values()
    assert (logged["first_at"], logged["last_at"]) == (
        "2027-01-15T08:00:00+00:00",
        "2027-01-15T08:00:02+00:00",
    )
