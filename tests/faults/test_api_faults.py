"""The Kubernetes API failing under the control loop: 409, 500, 503 and timeouts on the scale
write. Retries are bounded (counted from the requests the simulator received), the workload
says it is degraded and why, and it converges once the fault is cleared."""

import itertools
import time
from typing import Any

import pytest

from clusters.kubernetes import CONFLICT_RETRIES
from scaling.loop import tick_cluster
from scaling.models import ControlLoopState, Decision
from tests.faults.cluster import (
    clear_faults,
    deployment,
    fleet,
    history,
    register,
    scale_puts,
    set_faults,
    spec_replicas,
    wait_for_pods,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TICKS_UNDER_FAULT = 3
TIMEOUT_S = 0.4
# Total over the pool: any busy pool wants more than max_replicas, so the loop scales 1 -> 4.
WANTS_MAX: dict[str, Any] = {"aggregation": "total", "target": 1, "scale_up_period_s": 1}


@pytest.mark.parametrize(
    "fault",
    [
        {"error_rate": 1.0, "error_codes": [409]},
        {"error_rate": 1.0, "error_codes": [500]},
        {"error_rate": 1.0, "error_codes": [503]},
        {"hang_rate": 1.0, "hang_seconds": 3 * TIMEOUT_S},
    ],
    ids=["409", "500", "503", "timeout"],
)
def test_a_failing_scale_write_is_retried_a_bounded_number_of_times_then_converges(
    start_simulator, gpu_type, team_a, settings, fault
):
    settings.KUBERNETES_TIMEOUT_S = TIMEOUT_S
    url = start_simulator(fleet(deployment("team-a", "chat")), speed=4.0)
    workload = register(url, team_a, "chat", gpu_type, **WANTS_MAX)
    wait_for_pods(url, "chat")
    set_faults(url, match_methods=["PUT"], match_path="/scale", **fault)
    mark = history(url)["last"]

    per_tick = []
    for _ in range(TICKS_UNDER_FAULT):
        seen = history(url)["last"]
        started = time.monotonic()
        report = tick_cluster(workload.cluster_id)
        took = time.monotonic() - started
        assert report is not None and report.apply_errors == 1
        per_tick.append(scale_puts(history(url, seen)["requests"]))
        # Bounded in time too: every attempt has its timeout, and the backoff is short.
        assert took < (CONFLICT_RETRIES + 1) * (TIMEOUT_S + 0.5)
    code = fault.get("error_codes", [None])[0]
    attempts = CONFLICT_RETRIES + 1 if code == 409 else 1  # only a conflict is worth a re-read
    assert per_tick == [attempts] * TICKS_UNDER_FAULT

    # Degraded, and says why: the failing call and its cause, once per cause (not per tick).
    workload.refresh_from_db()
    assert workload.status["outcome"] == "error"
    reason = workload.status["reason"]
    assert "scale team-a/chat to 4" in reason
    assert (f"HTTP {code}" in reason) if code else ("did not answer within" in reason)
    # A new row only when the decision itself changed (the load may move the engine's wish
    # between ticks): never a second row for the same failure of the same decision.
    errors = list(Decision.objects.filter(workload=workload, outcome="error").order_by("pk"))
    assert 1 <= len(errors) < TICKS_UNDER_FAULT
    said = [(d.final_replicas, d.steps) for d in errors]
    assert all(a != b for a, b in itertools.pairwise(said)), said
    assert ControlLoopState.objects.get(cluster=workload.cluster).apply_errors == 3
    if code is not None:  # nothing reached the Deployment
        assert spec_replicas(url, "team-a", "chat") == 1
    assert not history(url, mark)["dropped"]["requests"]

    clear_faults(url)
    for _ in range(2):  # converges within two ticks of the fault's end
        tick_cluster(workload.cluster_id)
        if spec_replicas(url, "team-a", "chat") == 4:
            break
    assert spec_replicas(url, "team-a", "chat") == 4
    workload.refresh_from_db()
    assert workload.status["outcome"] in {"applied", "held"}
    assert "failed" not in workload.status["reason"]
