"""Whole control-loop ticks against a real kube-apiserver and kube-controller-manager
(tests/kube_control_plane.py), as admin and as the least-privilege identity of deploy/rbac;
metrics come from a simulator's exporter, as they may in a cluster whose Prometheus is
elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import utils
from kubernetes.client.rest import ApiException

from clusters import kubernetes
from clusters.inventory import sync_inventory
from clusters.kubernetes import GPU_PRODUCT_LABEL, GPU_RESOURCE, ClusterError
from clusters.models import Cluster
from quotas.models import Quota
from quotas.sync import RESOURCE_QUOTA_NAME
from scaling.loop import tick_cluster
from scaling.models import ControlLoopState, Decision, ScalingPolicy, Workload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    # The adapter verifies TLS only through a kubeconfig context; this row uses a token.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac"
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


def admin_client(plane: Any) -> k8s.ApiClient:
    from tests.kube_control_plane import ADMIN_TOKEN

    configuration = k8s.Configuration(host=plane.url)
    configuration.api_key = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    configuration.ssl_ca_cert = str(plane.ca_file)
    return k8s.ApiClient(configuration)


def register(plane: Any, metrics_url: str, tenant: Any, gpu_type: Any, token: str) -> Workload:
    """A namespace named after ``tenant`` with Deployment chat (1 replica) on the real server,
    and the rows that make the loop scale it to 2 and keep a 6-GPU quota there."""
    admin = admin_client(plane)
    k8s.CoreV1Api(admin).create_namespace({"metadata": {"name": tenant.slug}})
    k8s.AppsV1Api(admin).create_namespaced_deployment(tenant.slug, chat_deployment())
    cluster = Cluster(
        name=f"real-{tenant.slug}",
        api_url=plane.url,
        verify_tls=False,
        metrics_source="exporter",
        metrics_url=metrics_url,
    )
    cluster.credential = token
    cluster.save()
    workload = Workload.objects.create(
        tenant=tenant,
        cluster=cluster,
        namespace=tenant.slug,
        deployment="chat",
        model_name=MODEL,
        gpu_type=gpu_type,
        gpus_per_replica=1,
    )
    # No replica reports the metric here (the exporter's pods are the simulator's): the
    # engine holds, and a hold below min_replicas moves the Deployment to its bounds.
    ScalingPolicy.objects.create(
        workload=workload,
        algorithm="hpa",
        metric="vllm:num_requests_running",
        target=8,
        min_replicas=2,
        max_replicas=4,
        mode="enforce",
    )
    Quota.objects.create(tenant=tenant, gpu_type=gpu_type, nominal=6, borrowing_limit=0)
    return workload


def assert_one_tick_acts(plane: Any, workload: Workload) -> None:
    apps = k8s.AppsV1Api(admin_client(plane))
    core = k8s.CoreV1Api(admin_client(plane))
    namespace = workload.namespace

    report = tick_cluster(workload.cluster_id)

    assert report is not None and report.error == "", report
    assert apps.read_namespaced_deployment_scale("chat", namespace).spec.replicas == 2
    quota = core.read_namespaced_resource_quota(RESOURCE_QUOTA_NAME, namespace)
    assert quota.spec.hard == {"requests.nvidia.com/gpu": "6"}
    synced = ControlLoopState.objects.get(cluster_id=workload.cluster_id).resource_quotas
    assert synced["namespaces"][namespace]["action"] == "created"
    decision = Decision.objects.get(workload=workload)
    assert (decision.outcome, decision.current_replicas, decision.final_replicas) == (
        Decision.Outcome.APPLIED,
        1,
        2,
    )


def test_a_tick_scales_writes_the_quota_and_records_a_decision_on_a_real_server(
    kube_control_plane: Any, start_simulator: Any, org: Any, gpu_type: Any
) -> None:
    from tests.kube_control_plane import ADMIN_TOKEN

    metrics_url = start_simulator(METRICS_FLEET) + "/east/metrics"
    workload = register(kube_control_plane, metrics_url, org, gpu_type, ADMIN_TOKEN)
    assert_one_tick_acts(kube_control_plane, workload)


def install_rbac(admin: k8s.ApiClient) -> str:
    """deploy/rbac/control-plane.yaml as shipped; returns a token of the control plane's
    ServiceAccount from the TokenRequest API."""
    for document in yaml.safe_load_all((RBAC / "control-plane.yaml").read_text()):
        utils.create_from_dict(admin, document)
    request = {"spec": {"expirationSeconds": 600}}
    issued = k8s.CoreV1Api(admin).create_namespaced_service_account_token(
        "gpu-control-plane", "gpu-control-plane", request
    )
    return str(issued.status.token)


def bind_tenant_namespace(admin: k8s.ApiClient, namespace: str) -> None:
    binding = yaml.safe_load((RBAC / "tenant-rolebinding.yaml").read_text())
    binding["metadata"]["namespace"] = namespace
    utils.create_from_dict(admin, binding)


def test_the_least_privilege_identity_ticks_and_may_do_nothing_else(
    kube_control_plane: Any, start_simulator: Any, other_org: Any, gpu_type: Any
) -> None:
    plane = kube_control_plane
    admin = admin_client(plane)
    token = install_rbac(admin)
    metrics_url = start_simulator(METRICS_FLEET) + "/east/metrics"
    workload = register(plane, metrics_url, other_org, gpu_type, token)
    bind_tenant_namespace(admin, workload.namespace)
    assert sync_inventory(workload.cluster) >= 0  # nodes are listed
    assert_one_tick_acts(plane, workload)

    # A namespace no tenant owns: the same Deployment, refused.
    k8s.CoreV1Api(admin).create_namespace({"metadata": {"name": "bystander"}})
    k8s.AppsV1Api(admin).create_namespaced_deployment("bystander", chat_deployment())
    refusals = {}
    for what, write in {
        "scale": lambda: kubernetes.set_scale(workload.cluster, "bystander", "chat", 3),
        "quota": lambda: kubernetes.ensure_resource_quota(workload.cluster, "bystander", "q", 1),
    }.items():
        with pytest.raises(ClusterError) as refused:
            write()
        assert refused.value.status == 403 and not refused.value.transient
        refusals[what] = str(refused.value)
    sa = 'User "system:serviceaccount:gpu-control-plane:gpu-control-plane"'
    assert f'{sa} cannot get resource "deployments/scale"' in refusals["scale"]
    assert 'in the namespace "bystander"' in refusals["scale"]
    assert f'{sa} cannot get resource "resourcequotas"' in refusals["quota"]

    # In its own tenant namespace: no delete, no Secrets, no Deployment edits, no namespaces.
    as_sa = kubernetes.api_client(workload.cluster)
    apps, core = k8s.AppsV1Api(as_sa), k8s.CoreV1Api(as_sa)
    namespace = other_org.slug
    for call in (
        lambda: apps.delete_namespaced_deployment("chat", namespace),
        lambda: apps.patch_namespaced_deployment("chat", namespace, {"spec": {"replicas": 4}}),
        lambda: core.list_namespaced_secret(namespace),
        lambda: core.read_namespaced_secret("anything", namespace),
        lambda: core.create_namespace({"metadata": {"name": "made-by-the-loop"}}),
        lambda: core.delete_namespaced_resource_quota(RESOURCE_QUOTA_NAME, namespace),
    ):
        with pytest.raises(ApiException) as forbidden:
            call()
        assert forbidden.value.status == 403, forbidden.value.body
    assert k8s.AppsV1Api(admin).read_namespaced_deployment("chat", namespace).spec.replicas == 2
