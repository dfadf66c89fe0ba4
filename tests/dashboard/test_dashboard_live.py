"""The pure part of the live dashboard: series from samples, staleness, quantiles."""

from __future__ import annotations

import math

import pytest

from clusters.metrics import Sample
from dashboard.live import (
    GPU_UTIL,
    RUNNING,
    TTFT_BUCKET,
    ClusterRead,
    PolicyView,
    WorkloadLive,
    WorkloadRef,
    histogram_quantile,
)

POLICY = PolicyView(1, "hpa", "enforce", RUNNING, "average", 10.0, 11.0, 9.0, 1, 4)
REF = WorkloadRef(1, 1, 1, "team-a", "chat", 1, POLICY)


def sample(name: str, pod: str, value: float, t: float, **labels: str) -> Sample:
    merged = {"namespace": "team-a", "pod": pod, **labels}
    return Sample(name, tuple(sorted(merged.items())), value, t)


def read(t: float, running: float = 6.0, util: float = 80.0) -> ClusterRead:
    pods = ["chat-5d8f9-abcde", "chat-5d8f9-fghij"]
    return ClusterRead(
        1,
        "east",
        {
            RUNNING: [sample(RUNNING, pods[0], running, t)],
            GPU_UTIL: [sample(GPU_UTIL, p, util, t, gpu=str(i)) for i, p in enumerate(pods)]
            + [sample(GPU_UTIL, "chatty-5d8f9-zzzzz", 5.0, t, gpu="9")],
            TTFT_BUCKET: [],
        },
    )


def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.95, {0.1: 0.0, math.inf: 0.0}) is None


def test_ready_and_warming_replicas_come_from_the_workloads_own_pods():
    live = WorkloadLive(REF)
    live.observe(read(100.0), 100.0, stale_after=2.0)
    values = live.point["values"]
    assert values["ready"] == 1 and values["warming"] == 1  # one pod serves, one loads
    assert values["metric"] == 6.0
    assert set(values["gpu_util"]) == {"chat-5d8f9-abcde", "chat-5d8f9-fghij"}  # not chatty-*


def test_a_failed_read_ages_into_stale_and_is_never_zero():
    live = WorkloadLive(REF)
    live.observe(read(100.0), 100.0, stale_after=2.0)
    failed = ClusterRead(1, "east", None, "scrape failed")
    assert live.observe(failed, 101.0, stale_after=2.0) == []  # still fresh enough
    newly = live.observe(failed, 103.0, stale_after=2.0)
    assert "metric" in newly and "ready" in newly
    assert live.point["values"]["metric"] is None and live.point["values"]["ready"] is None
    assert live.observe(failed, 104.0, stale_after=2.0) == []  # reported once
    live.observe(read(105.0), 105.0, stale_after=2.0)
    assert live.point["stale"] == [] and live.point["values"]["metric"] == 6.0


def test_nonsensical_values_are_missing_not_drawn():
    live = WorkloadLive(REF)
    live.observe(read(100.0, running=math.nan, util=math.inf), 100.0, stale_after=2.0)
    values = live.point["values"]
    assert "metric" not in values and "running" not in values and "gpu_util" not in values


def test_history_is_bounded():
    live = WorkloadLive(REF)
    for t in range(1000):
        live.observe(read(float(t)), float(t), stale_after=2.0)
    assert len(live.history) == 300
