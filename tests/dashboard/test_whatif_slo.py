"""The what-if's SLO estimate: stored TTFT and queueing p95 rescaled by the M/G/c wait to
the edited replica counts; no estimate (and why) where the stored signals cannot give one."""

from __future__ import annotations

import pytest

from scaling.engine import ReplicaCapacity
from scaling.engine.predictive import mean_wait_s
from scaling.signals import SignalTick
from scaling.whatif import slo_estimate
from tests.dashboard.test_dashboard_pages import form_data
from tests.dashboard.test_whatif import setup, store_load  # noqa: F401 (fixture)

CAPACITY = ReplicaCapacity(
    prefill_tokens_per_s=10_000.0, decode_tokens_per_s=1_000.0, max_concurrency=256
)


def busy(ttft: float = 0.9, queue: float | None = 0.5) -> SignalTick:
    """4 replicas serving 3 replicas of work (1.5 of prefill, 1.5 of decode)."""
    return SignalTick(
        now=0.0,
        current=4,
        ready=4,
        prompt_tokens_per_s=15_000.0,
        generation_tokens_per_s=1_500.0,
        ttft_p95_s=ttft,
        queue_p95_s=queue,
    )


def test_more_replicas_shorten_the_queue_by_the_mgc_wait():
    estimate, note = slo_estimate([busy(), busy()], [8, 4], CAPACITY, 0.6)
    assert estimate is not None and "estimate" in note.lower()
    # At 8 replicas: TTFT less the observed delay, plus the delay rescaled by the wait ratio.
    rescaled = 0.4 + 0.5 * mean_wait_s(8, 3.0, 1.0) / mean_wait_s(4, 3.0, 1.0)
    assert rescaled <= 0.6  # met; the 4-replica tick keeps its observed 0.9 s: missed
    assert estimate["observed"] == 0.0 and estimate["whatif"] == 0.5
    assert estimate["ticks"] == 2 and estimate["objective_s"] == 0.6


def test_fewer_replicas_than_the_load_miss():
    fine = busy(ttft=0.5, queue=0.1)
    estimate, _ = slo_estimate([fine, fine], [3, 4], CAPACITY, 0.6)
    assert estimate is not None
    assert estimate["observed"] == 1.0 and estimate["whatif"] == 0.5


@pytest.mark.parametrize(
    ("ticks", "capacity", "objective", "why"),
    [
        ([busy()], CAPACITY, None, "no TTFT p95 objective"),
        ([busy()], None, 0.6, "no replica capacity"),
        ([busy(queue=None)], CAPACITY, 0.6, "no stored tick"),
        ([], CAPACITY, 0.6, "no stored tick"),
    ],
)
def test_no_estimate_where_the_signals_cannot_give_one(ticks, capacity, objective, why):
    estimate, note = slo_estimate(ticks, [4] * len(ticks), capacity, objective)
    assert estimate is None and why in note


@pytest.mark.django_db
def test_the_endpoint_says_why_there_is_no_estimate(client, setup):  # noqa: F811
    workload, policy = setup["a"], setup["a"].policy
    store_load(workload, 600)  # the metric only: no latency signals
    client.force_login(setup["operator"])
    body = client.post(
        f"/workloads/{workload.pk}/whatif/",
        {**form_data(policy, target=5, slo_ttft_p95_s=0.5), "window": "900"},
    ).json()
    assert body["slo"] is None and "no stored tick" in body["slo_note"], body["slo_note"]
