"""The pure part of the live dashboard: series from samples, staleness, quantiles."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace

import pytest

from clusters.kubernetes import DeploymentState, PodState
from clusters.metrics import Sample
from dashboard import frames
from dashboard.live import (
    ClusterRead,
    FleetLive,
    PolicyView,
    TypeRef,
    WorkloadLive,
    WorkloadRef,
)
from scaling.observe import GPU_UTIL, TTFT_BUCKETS
from scaling.observe import REQUESTS_RUNNING as RUNNING

POLICY = PolicyView(1, "hpa", "enforce", RUNNING, "average", 10.0, 11.0, 9.0, 1, 4)
REF = WorkloadRef(1, 1, 1, "team-a", "chat", 1, POLICY)


def sample(name: str, pod: str, value: float, t: float, **labels: str) -> Sample:
    merged = {"namespace": "team-a", "pod": pod, **labels}
    return Sample(name, tuple(sorted(merged.items())), value, t)


def deployment(name: str, app: str) -> DeploymentState:
    return DeploymentState("team-a", name, 2, 2, 1, selector={"app": app})


def pod(name: str, app: str) -> PodState:
    return PodState("team-a", name, {"app": app}, "Running", True, "node-0")


def read(
    t: float, running: float = 6.0, util: float = 80.0, **samples: list[Sample]
) -> ClusterRead:
    pods = ["chat-5d8f9-abcde", "chat-5d8f9-fghij"]
    found = {
        RUNNING: [sample(RUNNING, pods[0], running, t)],
        GPU_UTIL: [sample(GPU_UTIL, p, util, t, gpu=str(i)) for i, p in enumerate(pods)]
        + [sample(GPU_UTIL, "chatty-5d8f9-zzzzz", 5.0, t, gpu="9")],
        TTFT_BUCKETS: samples.get("ttft", []),
    }
    deployments = {("team-a", "chat"): deployment("chat", "chat")}
    deployments[("team-a", "chatty")] = deployment("chatty", "chatty")
    listed = [pod(p, "chat") for p in pods] + [pod("chatty-5d8f9-zzzzz", "chatty")]
    return ClusterRead(1, "east", found, "", deployments, {"team-a": listed})


def buckets(t: float, counts: Mapping[str, float]) -> list[Sample]:
    return [sample(TTFT_BUCKETS, "chat-5d8f9-abcde", n, t, le=le) for le, n in counts.items()]


def test_ttft_p95_is_the_loops_quantile_over_the_last_30_seconds_of_buckets():
    live = WorkloadLive(REF)
    live.observe(
        read(100.0, ttft=buckets(100.0, {"0.1": 0, "0.5": 0, "1.0": 0, "+Inf": 0})), 100.0, 2.0
    )
    assert "ttft_p95" not in live.point["values"]  # no observation yet: missing, not zero
    later = {"0.1": 50, "0.5": 90, "1.0": 100, "+Inf": 100}
    live.observe(read(110.0, ttft=buckets(110.0, later)), 110.0, 2.0)
    assert live.point["values"]["ttft_p95"] == pytest.approx(0.75)
    live.observe(read(125.0, ttft=buckets(125.0, later)), 125.0, 2.0)
    # At 150 s the readings before 120 s left the window: the 100 requests since 125 s.
    last = {"0.1": 60, "0.5": 100, "1.0": 200, "+Inf": 200}
    live.observe(read(150.0, ttft=buckets(150.0, last)), 150.0, 2.0)
    assert live.point["values"]["ttft_p95"] == pytest.approx(0.5 + 0.5 * 85 / 90)


def test_a_deployment_not_in_the_cluster_has_no_values_never_zero():
    gone = WorkloadLive(WorkloadRef(2, 1, 1, "team-a", "gone", 1, POLICY))
    gone.observe(read(100.0), 100.0, stale_after=2.0)
    assert gone.point["values"] == {}


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


def test_the_heatmap_gives_a_gpu_to_the_workload_whose_selector_matches_its_pod():
    found = read(100.0)
    samples = dict(found.samples or {})
    canary = sample(GPU_UTIL, "chat-canary-0", 50.0, 100.0, gpu="7", Hostname="node-0")
    samples[GPU_UTIL] = [*samples[GPU_UTIL], canary]
    with_canary = ClusterRead(1, "east", samples, "", found.deployments, found.pods)
    chatty = WorkloadRef(2, 2, 1, "team-a", "chatty", 1, None)
    fleet = FleetLive()
    fleet.observe([with_canary], [REF, chatty])
    cells, _ = fleet.view(100.0, stale_after=2.0)
    owners = {cell.gpu: cell.workload_id for cell in cells}
    # chat's two pods, chatty's pod, and a pod no Deployment selects (its name notwithstanding)
    assert owners == {"0": 1, "1": 1, "9": 2, "7": None}


def test_every_series_the_dashboard_reads_is_one_the_exporters_publish():
    from clusters.metrics import KNOWN_METRICS
    from dashboard import observed
    from dashboard.live import BASE_METRICS

    read = {*BASE_METRICS, observed.REQUESTS, observed.PROMPT, observed.GENERATION}
    assert read - set(KNOWN_METRICS) == set()


MIXED = WorkloadRef(
    3,
    1,
    1,
    "team-a",
    "chat",
    1,
    POLICY,
    (TypeRef("L4-24GB", "chat", 2), TypeRef("A40-48GB", "chat-a40", 1, "not pinned")),
    "2 x L4-24GB + 1 x A40-48GB: $2.10/h",
)


def test_each_gpu_type_streams_its_ready_replicas_and_goes_stale_never_zero():
    live = WorkloadLive(MIXED)
    first = read(100.0)  # lists "chat" with 1 ready; "chat-a40" is not there yet
    live.observe(first, 100.0, 2.0)
    assert live.types == [
        {
            "gpu_type": "L4-24GB",
            "ready": 1,
            "warming": 1,
            "desired": 2,
            "stale": False,
            "warning": "",
        },
        {
            "gpu_type": "A40-48GB",
            "ready": None,
            "warming": None,
            "desired": 1,
            "stale": False,
            "warning": "not pinned",
        },
    ]
    grown = read(101.0)
    a40 = DeploymentState("team-a", "chat-a40", 3, 3, 3, selector={"app": "chat-a40"})
    live.observe(
        replace(grown, deployments={**grown.deployments, ("team-a", "chat-a40"): a40}), 101.0, 2.0
    )
    assert [(t["ready"], t["stale"]) for t in live.types] == [(1, False), (3, False)]
    # The fleet row's Ready and Warming: the machines of every type, not the primary's pods.
    assert live.machines() == {"ready": 4, "warming": 1}
    row = frames._summary(live)
    assert (row["ready"], row["warming"], row["types"]) == (4, 1, live.types)
    failed = ClusterRead(1, "east", None, "timed out")  # the cluster stops answering
    live.observe(failed, 102.0, 2.0)
    assert [t["ready"] for t in live.types] == [1, 3]  # within stale_after: kept
    live.observe(failed, 104.0, 2.0)
    assert [(t["ready"], t["stale"]) for t in live.types] == [(None, True), (None, True)]
    assert live.machines() == {"ready": None, "warming": None}  # stale, never 0
    frame = json.loads(frames.workload_delta(live))
    assert frame["types"] == live.types and frame["mix"] == MIXED.mix
    assert live.snapshot()["types"] == live.types


def test_a_workload_on_one_gpu_type_carries_no_type_rows():
    live = WorkloadLive(REF)
    live.observe(read(100.0), 100.0, 2.0)
    assert live.types == []
    assert "types" not in frames._summary(live)
