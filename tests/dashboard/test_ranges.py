"""Longer chart ranges read the stored signal history: ``GET /workloads/<id>/history/``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from scaling import signal_store
from scaling.models import Decision
from scaling.signal_store import SignalChunk
from scaling.signals import SignalTick
from tests.api.conftest import make_decision

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(team_a, team_b, cluster, gpu_type, make_workload, make_user):
    return {
        "a": make_workload(team_a, cluster, gpu_type, "chat-a"),
        "viewer": make_user("viewer", team_a, "viewer"),
        "outsider": make_user("outsider", team_b, "operator"),
    }


def store_rows(workload: Any, seconds: float, every: float = 5.0, skip: tuple = ()) -> float:
    """``seconds`` of ticks ending now, as tick rows of the store (one row per 5 minutes);
    replicas 3 in the first half, then 5; TTFT p95 0.4 s. Ticks in ``skip`` (a range of
    seconds ago) are missing. Returns now."""
    now = time.time()
    ticks = [
        SignalTick(
            now=now - seconds + k * every,
            current=3 if k * every < seconds / 2 else 5,
            ready=3 if k * every < seconds / 2 else 5,
            metric=(now - seconds + k * every, 10.0 + k % 2),
            ttft_p95_s=0.4,
        )
        for k in range(int(seconds / every))
    ]
    ticks = [t for t in ticks if not (skip and skip[0] <= now - t.now <= skip[1])]
    rows = [ticks[i : i + 60] for i in range(0, len(ticks), 60)]
    SignalChunk.objects.bulk_create(
        SignalChunk(
            workload=workload,
            resolution=SignalChunk.Resolution.TICK,
            start_s=chunk[0].now,
            end_s=chunk[-1].now,
            ticks=len(chunk),
            data="".join(signal_store.line(t) for t in chunk),
        )
        for chunk in rows
    )
    return now


def test_six_hours_come_back_in_at_most_900_points_per_series(client, setup):
    workload = setup["a"]
    now = store_rows(workload, 6 * 3600)
    client.force_login(setup["viewer"])
    body = client.get(f"/workloads/{workload.pk}/history/", {"since": now - 6 * 3600}).json()
    assert 24 <= body["step_s"] <= 25  # until is the server's now, a moment later
    for name in ("t", "ready", "warming", "metric", "ttft_p95"):
        assert 850 <= len(body[name]) <= 900, name
    assert body["ready"][0] == 3 and body["ready"][-1] == 5
    assert body["metric"][0] == pytest.approx(10.5, abs=0.2)  # the bucket's mean
    assert set(body["ttft_p95"]) == {0.4}
    assert body["t"] == sorted(body["t"]) and body["t"][-1] <= now


def test_a_short_window_keeps_every_tick(client, setup):
    workload = setup["a"]
    now = store_rows(workload, 1800)
    client.force_login(setup["viewer"])
    body = client.get(f"/workloads/{workload.pk}/history/", {"since": now - 600}).json()
    assert body["step_s"] == 1 and len(body["t"]) in (119, 120, 121)


def test_a_gap_in_the_history_is_a_null_not_a_line(client, setup):
    workload = setup["a"]
    now = store_rows(workload, 3600, skip=(1200, 1800))
    client.force_login(setup["viewer"])
    body = client.get(f"/workloads/{workload.pk}/history/", {"since": now - 3600}).json()
    nulls = [i for i, v in enumerate(body["ready"]) if v is None]
    assert len(nulls) == 1
    i = nulls[0]
    assert body["t"][i + 1] - body["t"][i - 1] > 600


def test_the_span_is_at_most_a_day_and_bad_input_is_a_400(client, setup):
    workload = setup["a"]
    client.force_login(setup["viewer"])
    url = f"/workloads/{workload.pk}/history/"
    now = time.time()
    body = client.get(url, {"since": 0, "until": now}).json()
    assert body["until"] - body["since"] == pytest.approx(86400)
    for query in ({}, {"since": "soon"}, {"since": now + 10, "until": now}, {"since": "nan"}):
        assert client.get(url, query).status_code == 400, query


def test_the_windows_decisions_come_with_it_holds_left_out(client, setup):
    workload = setup["a"]
    now = store_rows(workload, 3600)
    inside = make_decision(workload, minutes_ago=30)
    make_decision(workload, minutes_ago=20, outcome=Decision.Outcome.HELD)
    make_decision(workload, minutes_ago=120)  # before the window
    client.force_login(setup["viewer"])
    body = client.get(f"/workloads/{workload.pk}/history/", {"since": now - 3600}).json()
    assert [d["id"] for d in body["decisions"]] == [inside.pk]
    assert body["decisions"][0]["reason"] == inside.reason


def test_another_tenants_workload_is_not_found(client, setup):
    workload = setup["a"]
    store_rows(workload, 600)
    client.force_login(setup["outsider"])
    response = client.get(f"/workloads/{workload.pk}/history/", {"since": time.time() - 600})
    assert response.status_code == 404
    client.logout()
    anonymous = client.get(f"/workloads/{workload.pk}/history/", {"since": time.time() - 600})
    assert anonymous.status_code == 302
