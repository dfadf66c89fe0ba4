"""The loop applies a policy's routing to the pool through the pool protocol."""

import json
import urllib.request
from typing import Any

import pytest

from clusters.models import Cluster
from scaling.loop import tick_cluster
from scaling.models import ScalingPolicy, Workload
from simulator.pool import DEFAULT_ROUTING

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHAT: dict[str, Any] = {
    "namespace": "team-a",
    "name": "chat",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "gpu_type": "A100-80GB",
    "replicas": 1,
    "cold_start_s": 2.0,
}
FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [{"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 8}],
            "workloads": [CHAT],
        }
    ]
}


def pool_routing(url: str) -> str:
    with urllib.request.urlopen(f"{url}/east/pool/workloads/team-a/chat") as response:
        return str(json.loads(response.read())["routing"])


def policy_on(url: str, gpu_type: Any, tenant: Any, routing: str) -> tuple[Cluster, ScalingPolicy]:
    base = f"{url}/east"
    cluster = Cluster.objects.create(
        name="east",
        api_url=base,
        metrics_source="exporter",
        metrics_url=f"{base}/metrics",
        pool_url=f"{base}/pool",
    )
    workload = Workload.objects.create(
        tenant=tenant,
        cluster=cluster,
        namespace="team-a",
        deployment="chat",
        model_name=CHAT["model"],
        gpu_type=gpu_type,
        gpus_per_replica=1,
    )
    policy = ScalingPolicy.objects.create(
        workload=workload,
        algorithm="hpa",
        metric="vllm:num_requests_running",
        target=8,
        min_replicas=1,
        max_replicas=2,
        mode="enforce",
        routing=routing,
    )
    return cluster, policy


def test_the_loop_sets_the_policys_routing_and_empty_keeps_the_length_aware_default(
    start_simulator: Any, gpu_type: Any, team_a: Any
) -> None:
    url = start_simulator(FLEET)
    cluster, policy = policy_on(url, gpu_type, team_a, routing="")
    tick_cluster(cluster.pk)
    assert pool_routing(url) == DEFAULT_ROUTING == "shortest-expected-delay"
    policy.routing = "prefix-aware"
    policy.save()
    tick_cluster(cluster.pk)
    assert pool_routing(url) == "prefix-aware"
