"""A workload on several GPU types counts each Deployment's pods as its type: the status (and
the API) warns when a Deployment is not pinned to its type's nodes (simulator)."""

from typing import Any

import pytest
from kubernetes import client as k8s
from rest_framework.test import APIClient

from quotas.models import GpuType
from scaling.loop import tick_cluster
from scaling.models import Workload, WorkloadVariant
from tests.scaling.test_loop import CHAT, register

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PRODUCT = "nvidia.com/gpu.product"


@pytest.fixture
def a40(db: Any) -> GpuType:
    return GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.30", node_label="NVIDIA-A40"
    )


def fleet_without_the_a40_deployment() -> dict[str, Any]:
    return {
        "clusters": [
            {
                "name": "east",
                "nodes": [
                    {"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 8},
                    {"gpu_type": "A40-48GB", "count": 1, "gpus_per_node": 8},
                ],
                "workloads": [CHAT | {"load": {"kind": "constant", "rate_rps": 1.0}}],
            }
        ]
    }


def create_deployment(url: str, name: str, pod_spec: dict[str, Any]) -> None:
    """A Deployment written as an operator would, through the Kubernetes API."""
    labels = {"app": name}
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.11.0",
        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
    }
    body = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec | {"containers": [container]},
            },
        },
    }
    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=f"{url}/east")))
    apps.create_namespaced_deployment("team-a", body)


def mixed(url: str, gpu_type: Any, a40: Any, tenant: Any) -> tuple[Any, Workload]:
    cluster, workload = register(url, gpu_type, tenant, target=1000, min_replicas=1)
    WorkloadVariant.objects.create(
        workload=workload, gpu_type=a40, deployment="chat-a40", max_replicas=4
    )
    return cluster, workload


def api_status(user: Any, workload: Workload) -> dict[str, Any]:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(f"/api/v1/workloads/{workload.pk}/")
    assert response.status_code == 200, response.content
    return dict(response.json()["status"])


def test_a_variant_deployment_without_a_node_selector_is_warned_about(
    start_simulator, gpu_type, a40, team_a, make_user
):
    url = start_simulator(fleet_without_the_a40_deployment(), speed=4.0)
    create_deployment(url, "chat-a40", {})
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    tick_cluster(cluster.pk)

    status = api_status(make_user("viewer", team_a), workload)
    primary, variant = status["types"]
    assert (primary["gpu_type"], primary["deployment"], primary["warning"]) == (
        "A100-80GB",
        "chat",
        "",
    )
    assert (variant["gpu_type"], variant["deployment"]) == ("A40-48GB", "chat-a40")
    assert variant["warning"] == (
        "Deployment chat-a40 is not pinned to A40-48GB nodes: its pods may run on any GPU "
        f"node; set nodeSelector {PRODUCT}: NVIDIA-A40"
    )
    assert status["mix"] and status["reason"].startswith(status["mix"])


def test_a_variant_pinned_by_required_node_affinity_is_not_warned_about(
    start_simulator, gpu_type, a40, team_a, make_user
):
    url = start_simulator(fleet_without_the_a40_deployment(), speed=4.0)
    term = {"matchExpressions": [{"key": PRODUCT, "operator": "In", "values": ["NVIDIA-A40"]}]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    create_deployment(url, "chat-a40", {"affinity": affinity})
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    tick_cluster(cluster.pk)

    assert [t["warning"] for t in api_status(make_user("viewer", team_a), workload)["types"]] == [
        "",
        "",
    ]


A100_ONLY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": PRODUCT, "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]}
                    ]
                }
            ]
        }
    }
}


@pytest.mark.parametrize(
    ("pod_spec", "where"),
    [
        ({"nodeSelector": {PRODUCT: "NVIDIA-A100-SXM4-80GB"}}, "NVIDIA-A100-SXM4-80GB"),
        # The A40 selected, but an affinity only for A100s: no node can take the pods.
        ({"nodeSelector": {PRODUCT: "NVIDIA-A40"}, "affinity": A100_ONLY}, "no node"),
    ],
)
def test_a_variant_selecting_another_gpu_type_is_warned_about(
    start_simulator, gpu_type, a40, team_a, make_user, pod_spec, where
):
    url = start_simulator(fleet_without_the_a40_deployment(), speed=4.0)
    create_deployment(url, "chat-a40", pod_spec)
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    tick_cluster(cluster.pk)

    warning = api_status(make_user("viewer", team_a), workload)["types"][1]["warning"]
    assert f"its pods may run on {where}" in warning
