"""Quotas enforced by the control loop on a running simulator: borrowing, reclaim, and the
ResourceQuota backstop in the cluster."""

import time

import pytest
from kubernetes import client as k8s

from clusters.models import Cluster
from quotas.models import Quota
from quotas.sync import RESOURCE_QUOTA_NAME
from scaling.allocation import namespace_limits
from scaling.loop import tick_cluster
from scaling.models import ControlLoopState, Decision, ScalingPolicy, Workload
from tests.scaling.test_loop import Clock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BUSY = {"kind": "constant", "rate_rps": 60.0, "input_mean": 300, "output_mean": 200}
# The lender is quiet for 15 wall seconds (60 simulated at 4x), then as busy as the borrower.
RISING = BUSY | {"kind": "step", "rate_rps": 0.3, "high_rps": 60.0, "period_s": 240.0}


def workload(namespace, name, load):
    return {
        "namespace": namespace,
        "name": name,
        "model": MODEL,
        "gpu_type": "A100-80GB",
        "replicas": 1,
        "cold_start_s": 2.0,
        "load": load,
    }


FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [{"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 8}],
            "workloads": [
                workload("team-a", "lender", RISING),
                workload("team-b", "borrower", BUSY),
            ],
        }
    ]
}


def resource_quota_hard(url, namespace):
    core = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=f"{url}/east")))
    quota = core.read_namespaced_resource_quota(RESOURCE_QUOTA_NAME, namespace)
    return int(quota.spec.hard["requests.nvidia.com/gpu"])


def east(url):
    base = f"{url}/east"
    return Cluster.objects.create(
        name="east", api_url=base, metrics_source="exporter", metrics_url=f"{base}/metrics"
    )


def register(cluster, tenant, name, gpu_type, *, with_policy=True, **policy):
    """The tenant's workload ``name`` (in the namespace named after it), with an hpa policy
    in enforce mode (``policy`` overrides its fields) unless ``with_policy`` is False."""
    workload = Workload.objects.create(
        tenant=tenant,
        cluster=cluster,
        namespace=tenant.slug,
        deployment=name,
        model_name=MODEL,
        gpu_type=gpu_type,
    )
    if with_policy:
        fields = {
            "algorithm": "hpa",
            "metric": "vllm:num_requests_running",
            "target": 8,
            "min_replicas": 1,
            "max_replicas": 8,
            "mode": "enforce",
        }
        ScalingPolicy.objects.create(workload=workload, **(fields | policy))
    return workload


def test_the_lender_gets_its_gpus_back_from_the_borrower(start_simulator, gpu_type, team_a, team_b):
    url = start_simulator(FLEET, speed=4.0)
    cluster = east(url)
    Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=6)
    Quota.objects.create(tenant=team_b, gpu_type=gpu_type, nominal=2)
    fast = {"scale_up_period_s": 2, "scale_down_stabilization_s": 2}
    lender = register(cluster, team_a, "lender", gpu_type, **fast)
    borrower = register(cluster, team_b, "borrower", gpu_type, **fast)

    def tick():
        tick_cluster(cluster.pk)
        lender.refresh_from_db()
        borrower.refresh_from_db()
        time.sleep(1.0)

    # While the lender idles, the borrower takes the idle GPUs: beyond its nominal 2.
    deadline = time.monotonic() + 12
    while borrower.desired_replicas <= 2:
        assert time.monotonic() < deadline, "the borrower never borrowed"
        tick()
    assert borrower.desired_replicas + lender.desired_replicas <= 8
    # The lender's load rises: within a bounded number of ticks it holds its nominal 6.
    ticks = 0
    while lender.desired_replicas < 6:
        tick()
        ticks += 1
        assert ticks <= 40, f"lender still at {lender.desired_replicas} after {ticks} ticks"
    reclaims = Decision.objects.filter(
        workload=borrower, reason__contains="needs its own nominal back"
    )
    assert reclaims.exists()
    assert borrower.desired_replicas <= 2
    # Never below the borrower's nominal, never past the cohort's 8 GPUs.
    assert borrower.desired_replicas + lender.desired_replicas <= 8

    # The ResourceQuotas in the cluster mirror the effective limits.
    tick_cluster(cluster.pk)
    limits = namespace_limits(cluster)
    assert resource_quota_hard(url, "team-a") == limits["team-a"]
    assert resource_quota_hard(url, "team-b") == limits["team-b"]
    assert limits["team-a"] >= 6 and limits["team-b"] >= borrower.desired_replicas


def test_a_hand_edited_resource_quota_is_restored_and_reported(
    start_simulator, gpu_type, team_a, settings
):
    settings.INVENTORY_SYNC_INTERVAL = 300  # a full read-back every 5 minutes of the tick's clock
    fleet = {
        "clusters": [
            FLEET["clusters"][0]
            | {"workloads": [workload("team-a", "lender", BUSY | {"rate_rps": 1.0})]}
        ]
    }
    url = start_simulator(fleet, speed=4.0)
    cluster = east(url)
    Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=3)
    register(cluster, team_a, "lender", gpu_type, with_policy=False)
    clock = Clock()
    tick_cluster(cluster.pk, now=clock.now())  # the first tick reads everything
    tick_cluster(cluster.pk, now=clock.now())
    expected = namespace_limits(cluster)["team-a"]
    assert resource_quota_hard(url, "team-a") == expected
    core = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=f"{url}/east")))
    core.patch_namespaced_resource_quota(
        RESOURCE_QUOTA_NAME, "team-a", {"spec": {"hard": {"requests.nvidia.com/gpu": "50"}}}
    )
    clock.skip(299)
    tick_cluster(cluster.pk, now=clock.now())  # no full read yet: the edit is not seen
    assert resource_quota_hard(url, "team-a") == 50
    clock.skip(2)
    tick_cluster(cluster.pk, now=clock.now())
    assert resource_quota_hard(url, "team-a") == expected
    state = ControlLoopState.objects.get(cluster=cluster).resource_quotas["namespaces"]["team-a"]
    assert state["drift"] == f"found 50 set by hand, restored {expected}"


def test_a_lowered_quota_reclaims_the_excess_after_its_grace_period(
    start_simulator, gpu_type, team_a
):
    chat = workload("team-a", "chat", BUSY) | {"replicas": 4}
    fleet = {"clusters": [FLEET["clusters"][0] | {"workloads": [chat]}]}
    url = start_simulator(fleet, speed=4.0)
    cluster = east(url)
    quota = Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=8, borrowing_limit=0)
    chat = register(cluster, team_a, "chat", gpu_type)
    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=f"{url}/east")))

    def replicas() -> int:
        return apps.read_namespaced_deployment("chat", "team-a").spec.replicas

    clock = Clock()
    tick_cluster(cluster.pk, now=clock.now())
    assert replicas() >= 4
    # Lowered under what it holds: growth stops at once, the excess is kept for 3 s.
    Quota.objects.filter(pk=quota.pk).update(nominal=2, reclaim_grace_s=3)
    tick_cluster(cluster.pk, now=clock.now())
    quota.refresh_from_db()
    assert quota.over_since is not None and quota.used_gpus >= 4
    assert abs(quota.over_since.timestamp() - clock.now()) < 1  # the tick's clock started it
    held = replicas()
    assert held >= 4
    clock.skip(2.5)  # inside the grace, by the control plane's clock: still held
    tick_cluster(cluster.pk, now=clock.now())
    assert replicas() == held
    assert not Decision.objects.filter(reason__startswith="reclaim: ").exists()
    clock.skip(0.7)  # past it
    tick_cluster(cluster.pk, now=clock.now())
    assert replicas() == 2
    reclaim = Decision.objects.get(workload=chat, reason__startswith="reclaim: ")
    assert f"held {held} A100-80GB GPUs, over its lowered quota of 2" in reclaim.reason
    assert "(reclaim grace 3 s)" in reclaim.reason
    # Once usage fits again the clock stops.
    deadline = time.monotonic() + 20
    while quota.over_since is not None:
        assert time.monotonic() < deadline, "the grace clock never stopped"
        time.sleep(0.5)  # the simulator stops the reclaimed pods in its own (real) time
        tick_cluster(cluster.pk, now=clock.now())
        quota.refresh_from_db()
