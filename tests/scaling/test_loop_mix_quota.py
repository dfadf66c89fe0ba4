"""A workload on several GPU types under quota, on the simulator: each type's replicas are
charged to that type's quota on every cluster's tick, and a change of types is made before it
is broken (no type shrinks until the replicas the mix moves to are ready)."""

from typing import Any

import pytest
from kubernetes import client as k8s

from clusters.models import Cluster
from dashboard.policies import usage
from quotas.models import GpuType, Quota
from scaling.loop import tick_cluster
from scaling.models import Decision, ScalingPolicy, Workload, WorkloadVariant
from tests.scaling.test_loop import CHAT, Clock, register, spec_replicas, ticks_until
from tests.scaling.test_loop_mix import BUSY, mixed, mixed_fleet, status_reason

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def a40(db: Any) -> GpuType:
    return GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.30", node_label="NVIDIA-A40"
    )


def apps(url: str, cluster: str) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=f"{url}/{cluster}")))


def scale_of(url: str, cluster: str, name: str) -> int:
    return int(apps(url, cluster).read_namespaced_deployment_scale(name, "team-a").spec.replicas)


def ready_of(url: str, name: str) -> int:
    found = apps(url, "east").read_namespaced_deployment(name, "team-a")
    return int(found.status.ready_replicas or 0)


def two_clusters() -> dict[str, Any]:
    """east: a chat workload on one A100 and three A40s; west: a workload on A40s alone."""
    east = mixed_fleet()["clusters"][0]
    east["workloads"] = [
        CHAT | {"load": BUSY},
        CHAT | {"name": "chat-a40", "gpu_type": "A40-48GB", "replicas": 3},
    ]
    west = {
        "name": "west",
        "nodes": [{"gpu_type": "A40-48GB", "count": 1, "gpus_per_node": 8}],
        "workloads": [CHAT | {"name": "solo", "gpu_type": "A40-48GB", "replicas": 0}],
    }
    return {"clusters": [east, west]}


def test_a_variants_a40s_on_one_cluster_count_against_the_a40_quota_on_another(
    start_simulator, gpu_type, a40, team_a
):
    Quota.objects.create(tenant=team_a, gpu_type=a40, nominal=4)
    url = start_simulator(two_clusters(), speed=4.0)
    east, chat = register(url, gpu_type, team_a, target=1000, min_replicas=1)
    # Three A40s, neither more nor fewer, whatever the mix would like.
    WorkloadVariant.objects.create(
        workload=chat, gpu_type=a40, deployment="chat-a40", min_replicas=3, max_replicas=3
    )
    base = f"{url}/west"
    west = Cluster.objects.create(
        name="west", api_url=base, metrics_source="exporter", metrics_url=f"{base}/metrics"
    )
    solo = Workload.objects.create(
        tenant=team_a,
        cluster=west,
        namespace="team-a",
        deployment="solo",
        model_name=CHAT["model"],
        gpu_type=a40,
        gpus_per_replica=1,
    )
    # It wants 4 A40s (its minimum): the whole quota, of which east holds 3.
    ScalingPolicy.objects.create(
        workload=solo,
        algorithm="hpa",
        metric="vllm:num_requests_running",
        target=1000,
        min_replicas=4,
        max_replicas=8,
        mode="enforce",
    )
    tick_cluster(east.pk)
    parts = Workload.objects.get(pk=chat.pk).loop_state["parts"]
    assert {(p["deployment"], p["holding"]) for p in parts} == {("chat", 1), ("chat-a40", 3)}
    assert Quota.objects.get(gpu_type=a40).used_gpus == 3
    # The dashboard's usage rows: the A40s on the A40 quota, not the pool's total on the A100.
    rows = {u.gpu_type: u.used for u in usage(Workload.objects.all())}
    assert rows == {"A40-48GB": 3}

    tick_cluster(west.pk)
    assert scale_of(url, "west", "solo") == 1  # 4 - 3 held by chat's variant on east
    decision = Decision.objects.filter(workload=solo).latest("at", "pk")
    assert decision.final_replicas == 1 and "quota" in decision.reason, decision.reason
    # West's tick charges east's A40s to the A40 quota too (solo holds none yet).
    quota = Quota.objects.get(gpu_type=a40)
    assert quota.used_gpus == 3
    assert {d["name"] for d in quota.demands} == {"east/team-a/chat-a40", "west/team-a/solo"}


def test_the_a100s_shrink_only_once_the_a40s_they_move_to_are_ready(
    start_simulator, gpu_type, a40, team_a
):
    fleet = mixed_fleet()
    # The A40s take 20 simulated seconds (5 s at 4x) to start: long enough to see the wait.
    fleet["clusters"][0]["workloads"][1]["cold_start_s"] = 20.0
    url = start_simulator(fleet, speed=4.0)
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    clock = Clock()
    ticks_until(cluster, lambda: spec_replicas(url, "chat-a40") > 0, clock=clock)
    # The mix moves some of the three A100s' work to A40s: the A40s are asked for, and the
    # A100s stay until they are ready.
    a40s = spec_replicas(url, "chat-a40")
    assert spec_replicas(url, "chat") == 3 and ready_of(url, "chat-a40") < a40s
    assert "make before break: A100-80GB kept at 3 until A40-48GB's" in status_reason(workload)
    for _ in range(3):
        tick_cluster(cluster.pk, now=clock.now())
        assert spec_replicas(url, "chat") == 3 or ready_of(url, "chat-a40") >= a40s
    ticks_until(cluster, lambda: spec_replicas(url, "chat") < 3, timeout=30.0, clock=clock)
    assert ready_of(url, "chat-a40") >= spec_replicas(url, "chat-a40")
    assert "make before break" not in status_reason(workload)
