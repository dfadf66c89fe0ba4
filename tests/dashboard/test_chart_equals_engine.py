"""The chart of a policy's metric shows what the engine acts on: at a control-loop tick, the
dashboard's value equals the engine's input for that tick, for each aggregation.

A real simulator serves the Deployments, the pods and the exporter text. The metrics adapter
(``clusters.metrics.read_samples``, the outermost one) is frozen at the tick's instant, so
that the loop and the dashboard read the same samples, with three things a naive reading gets
wrong added: four DCGM series per 4-GPU replica, series of a pod that is not the Deployment's
although its name starts like it, and a replica of the Deployment with no series at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from clusters import metrics
from clusters.metrics import Sample
from dashboard.live import BASE_METRICS
from scaling.loop import tick_cluster
from scaling.models import ScalingPolicy, Workload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [{"gpu_type": "A100-80GB", "count": 2, "gpus_per_node": 8}],
            "workloads": [
                {
                    "namespace": "team-a",
                    "name": name,
                    "model": MODEL,
                    "gpu_type": "A100-80GB",
                    "replicas": replicas,
                    "gpus_per_replica": gpus,
                    "cold_start_s": 0.2,
                    "load": {"kind": "constant", "rate_rps": 4.0},
                }
                for name, replicas, gpus in (("chat", 3, 4), ("chat-v2", 1, 1))
            ],
        }
    ]
}
# Not a pod of Deployment "chat" (a StatefulSet "chat-canary"'s), but "chat-canary-0" read as
# <deployment>-<template hash>-<suffix> gives "chat".
NOT_CHATS = "chat-canary-0"


@pytest.fixture(scope="module")
def sim_url(start_module_simulator: Any) -> str:
    return str(start_module_simulator(FLEET))


@pytest.fixture
def chat(sim_url: str, team_a: Any, gpu_type: Any) -> Workload:
    from clusters.models import Cluster

    base = f"{sim_url}/east"
    cluster = Cluster.objects.create(
        name="east", api_url=base, metrics_source="exporter", metrics_url=f"{base}/metrics"
    )
    return Workload.objects.create(
        tenant=team_a,
        cluster=cluster,
        namespace="team-a",
        deployment="chat",
        model_name=MODEL,
        gpu_type=gpu_type,
        gpus_per_replica=4,
    )


def serving_pods(cluster: Any, now: float) -> dict[str, list[Sample]]:
    """Chat's GPU series once all three replicas hold their GPUs and report load."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = metrics.read_samples(cluster, [GPU_UTIL], now)[GPU_UTIL]
        by_pod: dict[str, list[Sample]] = {}
        for sample in found:
            if sample.label("pod").startswith("chat-") and sample.value > 0:
                by_pod.setdefault(sample.label("pod"), []).append(sample)
        chats = {pod: s for pod, s in by_pod.items() if not pod.startswith("chat-v2-")}
        if len(chats) == 3:
            return chats
        time.sleep(0.2)
    raise AssertionError("chat's three replicas never reported GPU utilisation")


@dataclass
class Frozen:
    now: float
    read: dict[str, list[Sample]]  # what the metrics source answers (a test may edit it)
    chats: list[str]  # chat's replicas that have series


@pytest.fixture
def frozen(chat: Workload, monkeypatch: pytest.MonkeyPatch) -> Iterator[Frozen]:
    """Freeze what the cluster's metrics source says at ``now``, with a foreign pod's series
    added and one replica's series taken away."""
    real = metrics.read_samples
    now = time.time()
    chats = serving_pods(chat.cluster, now)
    missing = sorted(chats)[0]  # a replica of chat whose series are not there (yet)
    names = [GPU_UTIL, *BASE_METRICS]
    read = real(chat.cluster, names, now)
    foreign = [
        Sample(GPU_UTIL, (("gpu", str(i)), ("namespace", "team-a"), ("pod", NOT_CHATS)), 5.0, now)
        for i in range(4)
    ]
    read[GPU_UTIL] = [s for s in read[GPU_UTIL] if s.label("pod") != missing] + foreign
    assert len(chats[sorted(chats)[1]]) == 4  # four DCGM series per 4-GPU replica

    def frozen_read(cluster: Any, wanted: Any, at: float) -> dict[str, list[Sample]]:
        return {name: list(read.get(name, [])) for name in set(wanted)}

    monkeypatch.setattr(metrics, "read_samples", frozen_read)
    monkeypatch.setattr("dashboard.poller.read_samples", frozen_read)
    yield Frozen(now, read, sorted(chats)[1:])


async def ticks(workload: Workload, now: float) -> dict[str, Any]:
    """The loop's tick and the dashboard's tick at the same instant; the chart's point."""
    from dashboard.poller import Poller

    await sync_to_async(tick_cluster)(workload.cluster_id, now=now)
    poller = Poller()
    await poller.tick(now)
    await sync_to_async(workload.refresh_from_db)()
    return poller.workloads[workload.pk].point


async def chart_and_engine(workload: Workload, now: float) -> tuple[float, float, list[Any]]:
    """(the chart's value, the series point the loop recorded for the engine, the metric
    values the engine reports) at one tick."""
    chart = (await ticks(workload, now))["values"]["metric"]
    t, engine_input = workload.loop_state["history"]["metric"][-1]
    assert t == now
    used = [m["value"] for m in workload.status["metrics"]]
    return chart, engine_input, used


def policy(workload: Workload, aggregation: str, target: float) -> None:
    ScalingPolicy.objects.create(
        workload=workload,
        algorithm="hpa",
        metric=GPU_UTIL,
        aggregation=aggregation,
        target=target,
        min_replicas=1,
        max_replicas=4,
        mode=ScalingPolicy.Mode.DRY_RUN,
    )


async def test_the_total_chart_is_the_engines_input_not_four_times_it(chat, frozen):
    await sync_to_async(policy)(chat, "total", 150.0)
    chart, engine_input, used = await chart_and_engine(chat, frozen.now)
    assert math.isclose(chart, engine_input)
    # Two replicas with series, each counted once (its GPUs averaged), not once per GPU.
    assert engine_input < 2 * 100.0
    # The third ready replica has no series: the engine does not compare a partial sum with
    # the target (it would read that replica as idle), it holds and says why.
    assert used == [] and "incomplete: no fresh sample from 1 ready pod" in chat.status["reason"]


async def test_the_average_chart_is_the_engines_input_per_replica(chat, frozen):
    await sync_to_async(policy)(chat, "average", 60.0)
    chart, engine_input, used = await chart_and_engine(chat, frozen.now)
    assert math.isclose(chart, engine_input)
    assert len(used) == 2  # one value per replica with series: not the foreign pod's, not missing
    assert math.isclose(chart, math.fsum(used) / len(used))


async def test_a_stale_replica_makes_the_chart_stale_as_it_makes_the_engines_input(chat, frozen):
    await sync_to_async(policy)(chat, "total", 150.0)
    old = frozen.now - 600.0  # one replica's series were last scraped ten minutes ago
    frozen.read[GPU_UTIL] = [
        replace(s, timestamp=old) if s.label("pod") == frozen.chats[0] else s
        for s in frozen.read[GPU_UTIL]
    ]
    point = await ticks(chat, frozen.now)
    # The series point the loop records for the engine carries the stale replica's time.
    assert chat.loop_state["history"]["metric"][-1][0] == old
    # The chart draws a gap, never the fresh replica's value alone and never zero.
    assert point["values"]["metric"] is None and "metric" in point["stale"]
