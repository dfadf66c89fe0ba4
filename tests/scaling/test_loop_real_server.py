"""One whole control-loop tick against a real kube-apiserver and kube-controller-manager
(tests/kube_control_plane.py); metrics come from a simulator's exporter, as they may in a
cluster whose Prometheus is elsewhere."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from clusters.kubernetes import GPU_PRODUCT_LABEL, GPU_RESOURCE
from clusters.models import Cluster
from quotas.models import Quota
from quotas.sync import RESOURCE_QUOTA_NAME
from scaling.loop import tick_cluster
from scaling.models import Decision, ScalingPolicy, Workload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    # The adapter verifies TLS only through a kubeconfig context; this row uses a token.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
METRICS_FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [{"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 8}],
            "workloads": [
                {"namespace": "acme", "name": "chat", "model": MODEL, "gpu_type": "A100-80GB"}
            ],
        }
    ]
}


def chat_deployment() -> dict[str, Any]:
    labels = {"app": "chat"}
    gpus = {GPU_RESOURCE: "1"}
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.11.0",
        "args": ["--model", MODEL],
        "resources": {"requests": gpus, "limits": gpus},
    }
    return {
        "metadata": {"name": "chat", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-80GB"},
                    "containers": [container],
                },
            },
        },
    }


def test_a_tick_scales_writes_the_quota_and_records_a_decision_on_a_real_server(
    kube_control_plane: Any, start_simulator: Any, org: Any, gpu_type: Any
) -> None:
    from tests.kube_control_plane import ADMIN_TOKEN

    configuration = k8s.Configuration(host=kube_control_plane.url)
    configuration.api_key = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    configuration.ssl_ca_cert = str(kube_control_plane.ca_file)
    admin = k8s.ApiClient(configuration)
    core, apps = k8s.CoreV1Api(admin), k8s.AppsV1Api(admin)
    core.create_namespace({"metadata": {"name": "acme"}})
    apps.create_namespaced_deployment("acme", chat_deployment())

    metrics_url = start_simulator(METRICS_FLEET) + "/east/metrics"
    cluster = Cluster(
        name="real",
        api_url=kube_control_plane.url,
        verify_tls=False,
        metrics_source="exporter",
        metrics_url=metrics_url,
    )
    cluster.credential = ADMIN_TOKEN
    cluster.save()
    workload = Workload.objects.create(
        tenant=org,
        cluster=cluster,
        namespace="acme",
        deployment="chat",
        model_name=MODEL,
        gpu_type=gpu_type,
        gpus_per_replica=1,
    )
    # No kubelet runs here, so no replica is ever ready and the metric is missing: the engine
    # holds, and a hold below min_replicas moves the Deployment to its bounds.
    ScalingPolicy.objects.create(
        workload=workload,
        algorithm="hpa",
        metric="vllm:num_requests_running",
        target=8,
        min_replicas=2,
        max_replicas=4,
        mode="enforce",
    )
    Quota.objects.create(tenant=org, gpu_type=gpu_type, nominal=6, borrowing_limit=0)

    report = tick_cluster(cluster.pk)

    assert report is not None and report.error == "", report
    assert apps.read_namespaced_deployment_scale("chat", "acme").spec.replicas == 2
    quota = core.read_namespaced_resource_quota(RESOURCE_QUOTA_NAME, "acme")
    assert quota.spec.hard == {"requests.nvidia.com/gpu": "6"}
    decision = Decision.objects.get(workload=workload)
    assert (decision.outcome, decision.current_replicas, decision.final_replicas) == (
        Decision.Outcome.APPLIED,
        1,
        2,
    )
