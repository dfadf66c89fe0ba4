"""The adapter's contract with a Kubernetes API server, on two backends: the simulator and a
real kube-apiserver with kube-controller-manager (tests/kube_control_plane.py). The same test
bodies run on both; where the simulator answered differently from the real server, the
simulator was fixed (docs/kube-tests.md lists what it still does not do)."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from clusters import kubernetes
from clusters.inventory import sync_inventory
from clusters.kubernetes import GPU_PRODUCT_LABEL, GPU_RESOURCE, ClusterError
from clusters.models import Cluster, GpuNode
from tests.kube_control_plane import ADMIN_TOKEN, NOBODY_TOKEN

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db,
    # The adapter verifies TLS only through a kubeconfig context; these rows use a token.
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

A100 = "NVIDIA-A100-SXM4-80GB"
COLD_START = "simulator.gpu/cold-start-seconds"
L4 = "NVIDIA-L4"
NODES = [("a100-0", A100, 4), ("a100-1", A100, 4), ("l4-0", L4, 2)]
NAMESPACES = ["team-a", "team-b", "team-c"]
# (namespace, name, replicas): listed in storage-key order, as both servers list them.
DEPLOYMENTS = [
    ("team-a", "chat", 1),
    ("team-a", "summarize", 0),
    ("team-b", "embed", 1),
    ("team-b", "rerank", 0),
    ("team-b", "vision", 0),
]
FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 2, "gpus_per_node": 4, "name_prefix": "a100"},
                {"gpu_type": "L4-24GB", "count": 1, "gpus_per_node": 2, "name_prefix": "l4"},
            ],
            "namespaces": NAMESPACES,
            # The same identities the real server's static token file has.
            "tokens": {ADMIN_TOKEN: "admin", NOBODY_TOKEN: "nobody"},
            "admins": ["admin"],
        }
    ]
}


@dataclass
class Backend:
    """One API server under contract: how the adapter reaches it (a Cluster row's fields) and
    an admin client for setting the scene."""

    name: str
    api_url: str
    admin: k8s.ApiClient
    admin_token: str = ""
    nobody_token: str = ""
    plane: Any = None

    def cluster(self, token: str | None = None) -> Cluster:
        name = f"contract-{self.name}-{Cluster.objects.count()}"
        row = Cluster(name=name, api_url=self.api_url, verify_tls=False)
        row.credential = self.admin_token if token is None else token
        row.save()
        return row


def deployment_body(name: str, replicas: int, gpus: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.11.0",
        "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct"],
        "resources": {"requests": {GPU_RESOURCE: str(gpus)}, "limits": {GPU_RESOURCE: str(gpus)}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                # The simulator's model load time; a real server ignores the annotation.
                "metadata": {"labels": labels, "annotations": {COLD_START: "1"}},
                "spec": {"nodeSelector": {GPU_PRODUCT_LABEL: A100}, "containers": [container]},
            },
        },
    }


def pod_body(name: str, gpus: int) -> dict[str, Any]:
    body = deployment_body(name, 1, gpus)["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body["spec"]}


def message(exc: ApiException) -> str:
    return str(json.loads(exc.body)["message"])


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)
    return value


def create_deployments(admin: k8s.ApiClient) -> None:
    apps = k8s.AppsV1Api(admin)
    for namespace, name, replicas in DEPLOYMENTS:
        apps.create_namespaced_deployment(namespace, deployment_body(name, replicas))


def seed_real_server(admin: k8s.ApiClient) -> None:
    """What the simulator's fleet config gives, made through the API: GPU nodes (objects with a
    status, as a kubelet would post it), namespaces, Deployments."""
    from tests.kube_control_plane import KWOK_NODE_ANNOTATION

    core = k8s.CoreV1Api(admin)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kwok = dict([KWOK_NODE_ANNOTATION])  # KWOK plays their kubelet: bound Pods become Ready
    for name, product, gpus in NODES:
        meta = {"name": name, "labels": {GPU_PRODUCT_LABEL: product}, "annotations": kwok}
        core.create_node({"metadata": meta})
        capacity = {"cpu": "96", "memory": "1056Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
        ready |= {"lastHeartbeatTime": now, "lastTransitionTime": now}
        status = {"capacity": capacity, "allocatable": capacity, "conditions": [ready]}
        core.patch_node_status(name, {"status": status})
    for namespace in NAMESPACES:
        core.create_namespace({"metadata": {"name": namespace}})

    def has_default_service_account(namespace: str) -> bool:
        return bool(core.list_namespaced_service_account(namespace).items)

    for namespace in NAMESPACES:  # Pods are admitted once the namespace's default SA exists
        wait_for(partial(has_default_service_account, namespace))
    create_deployments(admin)


@pytest.fixture(scope="module", params=["simulator", "kube-apiserver"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "simulator":
        url = request.getfixturevalue("start_module_simulator")(FLEET, speed=4.0) + "/east"
        configuration = k8s.Configuration(host=url)
        configuration.api_key = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        admin = k8s.ApiClient(configuration)
        create_deployments(admin)
        yield Backend("simulator", url, admin, ADMIN_TOKEN, NOBODY_TOKEN)
        return
    plane = request.getfixturevalue("kube_control_plane")
    configuration = k8s.Configuration(host=plane.url)
    configuration.api_key = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    configuration.ssl_ca_cert = str(plane.ca_file)
    admin = k8s.ApiClient(configuration)
    seed_real_server(admin)
    yield Backend("kube-apiserver", plane.url, admin, ADMIN_TOKEN, NOBODY_TOKEN, plane)


@pytest.fixture
def cluster(backend: Backend) -> Cluster:
    return backend.cluster()


def test_gpu_nodes_report_capacity_and_product(cluster: Cluster) -> None:
    nodes = kubernetes.list_gpu_nodes(cluster)
    found = sorted((n.gpu_product, n.gpu_capacity, n.gpu_allocatable, n.ready) for n in nodes)
    assert found == [(A100, 4, 4, True), (A100, 4, 4, True), (L4, 2, 2, True)]


def test_deployments_are_listed_across_namespaces_in_pages(
    backend: Backend, cluster: Cluster
) -> None:
    apps = k8s.AppsV1Api(backend.admin)
    first = apps.list_deployment_for_all_namespaces(limit=2)
    assert first.metadata.remaining_item_count == 3 and first.metadata._continue
    pages, token = [first], first.metadata._continue
    while token:
        pages.append(apps.list_deployment_for_all_namespaces(limit=2, _continue=token))
        token = pages[-1].metadata._continue
    listed = [(d.metadata.namespace, d.metadata.name) for page in pages for d in page.items]
    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert listed == [(ns, name) for ns, name, _ in DEPLOYMENTS]
    assert sorted(kubernetes.list_deployments(cluster)) == listed
    with pytest.raises(ApiException) as garbage:
        apps.list_deployment_for_all_namespaces(limit=2, _continue="not-a-token")
    assert garbage.value.status == 400


def test_the_scale_subresource_is_read_and_patched(backend: Backend, cluster: Cluster) -> None:
    apps = k8s.AppsV1Api(backend.admin)
    assert kubernetes.read_scale(cluster, "team-a", "summarize") == 0
    assert kubernetes.set_scale(cluster, "team-a", "summarize", 2) is True
    assert kubernetes.set_scale(cluster, "team-a", "summarize", 2) is False
    apps.patch_namespaced_deployment_scale("summarize", "team-a", {"spec": {"replicas": 3}})
    assert kubernetes.read_scale(cluster, "team-a", "summarize") == 3
    assert apps.read_namespaced_deployment("summarize", "team-a").spec.replicas == 3
    assert kubernetes.set_scale(cluster, "team-a", "summarize", 0) is True
    state = kubernetes.list_deployments(cluster)[("team-a", "summarize")]
    assert (state.spec_replicas, state.selector) == (0, {"app": "summarize"})


def test_scaled_up_replicas_become_ready_on_gpu_nodes(cluster: Cluster) -> None:
    assert kubernetes.set_scale(cluster, "team-a", "chat", 3) is True
    try:
        chat = ("team-a", "chat")
        wait_for(lambda: kubernetes.list_deployments(cluster)[chat].ready_replicas == 3)
        pods = [p for p in kubernetes.list_pods(cluster, "team-a") if p.labels["app"] == "chat"]
        assert [(p.phase, p.ready) for p in pods] == [("Running", True)] * 3
        assert {p.node for p in pods} <= {"a100-0", "a100-1"}
    finally:
        kubernetes.set_scale(cluster, "team-a", "chat", 1)


def test_a_stale_resource_version_is_a_conflict_the_adapter_retries(
    backend: Backend, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = k8s.AppsV1Api(backend.admin)
    stale = apps.read_namespaced_deployment_scale("rerank", "team-b")
    apps.patch_namespaced_deployment("rerank", "team-b", {"metadata": {"labels": {"t": "1"}}})
    stale.spec.replicas = 1
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment_scale("rerank", "team-b", stale)
    assert conflict.value.status == 409
    assert message(conflict.value) == (
        'Operation cannot be fulfilled on deployments.apps "rerank": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )

    # Someone else writes between the adapter's read and its write: it reads again and wins.
    original = k8s.AppsV1Api.read_namespaced_deployment_scale
    reads: list[str] = []

    def read_then_someone_writes(self: k8s.AppsV1Api, name: str, ns: str, **kw: Any) -> Any:
        scale = original(self, name, ns, **kw)
        reads.append(scale.metadata.resource_version)
        if len(reads) == 1:
            apps.patch_namespaced_deployment(name, ns, {"metadata": {"labels": {"t": "2"}}})
        return scale

    monkeypatch.setattr(k8s.AppsV1Api, "read_namespaced_deployment_scale", read_then_someone_writes)
    monkeypatch.setattr(kubernetes, "CONFLICT_BACKOFF_S", 0.01)
    assert kubernetes.set_scale(cluster, "team-b", "rerank", 2) is True
    assert len(reads) == 2 and reads[0] != reads[1]
    assert original(apps, "rerank", "team-b").spec.replicas == 2
    kubernetes.set_scale(cluster, "team-b", "rerank", 0)


def test_a_missing_object_is_a_permanent_404(cluster: Cluster) -> None:
    with pytest.raises(ClusterError) as missing:
        kubernetes.set_scale(cluster, "team-a", "no-such-deployment", 2)
    assert missing.value.status == 404 and not missing.value.transient
    assert 'deployments.apps "no-such-deployment" not found' in str(missing.value)


def test_a_resource_quota_is_created_updated_and_read_back_with_status(
    backend: Backend, cluster: Cluster
) -> None:
    # team-b runs one Pod of one GPU (embed): the quota's status counts it, Pending or not.
    assert kubernetes.ensure_resource_quota(cluster, "team-b", "gpu-quota", 4).action == "created"
    assert kubernetes.ensure_resource_quota(cluster, "team-b", "gpu-quota", 4).action == "ok"
    updated = kubernetes.ensure_resource_quota(cluster, "team-b", "gpu-quota", 6)
    assert (updated.action, updated.previous_hard, updated.hard) == ("updated", 4, 6)
    assert kubernetes.list_resource_quotas(cluster, "gpu-quota")["team-b"][0] == 6
    # The real server's status follows the spec when the quota controller has synced it.
    core = k8s.CoreV1Api(backend.admin)
    wanted = ({"requests.nvidia.com/gpu": "6"}, {"requests.nvidia.com/gpu": "1"})
    wait_for(
        lambda: (q := core.read_namespaced_resource_quota("gpu-quota", "team-b").status)
        and (q.hard, q.used) == wanted
    )
    assert kubernetes.list_resource_quotas(cluster, "gpu-quota")["team-b"] == (6, 1)


def test_a_pod_over_quota_is_refused_with_the_admission_message(
    backend: Backend, cluster: Cluster
) -> None:
    kubernetes.ensure_resource_quota(cluster, "team-c", "gpu-quota", 2)
    # Admission needs the quota's status: until the controller computed it, the real server
    # refuses every Pod with "status unknown for quota".
    wait_for(lambda: kubernetes.list_resource_quotas(cluster, "gpu-quota").get("team-c") == (2, 0))
    with pytest.raises(ApiException) as refused:
        k8s.CoreV1Api(backend.admin).create_namespaced_pod("team-c", pod_body("greedy", 4))
    assert refused.value.status == 403
    assert (
        'pods "greedy" is forbidden: exceeded quota: gpu-quota, requested: '
        "requests.nvidia.com/gpu=4, used: requests.nvidia.com/gpu=0, limited: "
        "requests.nvidia.com/gpu=2"
    ) in message(refused.value)


def test_quota_refusals_surface_on_the_deployment(cluster: Cluster) -> None:
    kubernetes.ensure_resource_quota(cluster, "team-a", "gpu-quota", 2)
    wait_for(lambda: kubernetes.list_resource_quotas(cluster, "gpu-quota").get("team-a") == (2, 1))
    try:
        kubernetes.set_scale(cluster, "team-a", "chat", 4)
        # The status settles in steps (the ReplicaSet's pods, its condition, the Deployment's).
        state = wait_for(
            lambda: (s := kubernetes.list_deployments(cluster)[("team-a", "chat")]).failure
            and s.replicas == 2
            and s
        )
        assert "exceeded quota: gpu-quota" in state.failure
        assert "limited: requests.nvidia.com/gpu=2" in state.failure
        assert state.spec_replicas == 4
    finally:
        kubernetes.ensure_resource_quota(cluster, "team-a", "gpu-quota", 64)
        kubernetes.set_scale(cluster, "team-a", "chat", 1)


def test_an_rbac_denial_is_permanent_and_says_who_may_not_do_what(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    nobody = backend.cluster(token=backend.nobody_token)
    original = k8s.AppsV1Api.read_namespaced_deployment_scale
    reads: list[str] = []

    def counted(self: k8s.AppsV1Api, name: str, ns: str, **kw: Any) -> Any:
        reads.append(name)
        return original(self, name, ns, **kw)

    monkeypatch.setattr(k8s.AppsV1Api, "read_namespaced_deployment_scale", counted)
    with pytest.raises(ClusterError) as denied:
        kubernetes.set_scale(nobody, "team-a", "chat", 2)
    assert (denied.value.status, denied.value.transient, reads) == (403, False, ["chat"])
    assert str(denied.value) == (
        'scale team-a/chat to 2: HTTP 403 deployments.apps "chat" is forbidden: User "nobody" '
        'cannot get resource "deployments/scale" in API group "apps" in the namespace "team-a"'
    )
    with pytest.raises(ClusterError) as listing:
        kubernetes.list_deployments(nobody)
    assert str(listing.value) == (
        'list deployments: HTTP 403 deployments.apps is forbidden: User "nobody" cannot list '
        'resource "deployments" in API group "apps" at the cluster scope'
    )
    assert not listing.value.transient


def test_a_wrong_missing_or_expired_token_is_permanent(backend: Backend) -> None:
    # No credentials at all: the anonymous user, authenticated and allowed nothing.
    with pytest.raises(ClusterError) as anonymous:
        kubernetes.list_deployments(backend.cluster(token=""))
    assert (anonymous.value.status, anonymous.value.transient) == (403, False)
    assert 'User "system:anonymous" cannot list resource "deployments"' in str(anonymous.value)
    refused = ["not-a-token"]
    if backend.plane is not None:  # a real ServiceAccount token, valid and then expired
        from tests.kube_control_plane import sign_token

        core = k8s.CoreV1Api(backend.admin)
        request = {"spec": {"audiences": [], "expirationSeconds": 600}}
        issued = core.create_namespaced_service_account_token("default", "team-a", request)
        token = issued.status.token
        # While valid it authenticates (as a ServiceAccount with no rights: 403, not 401).
        with pytest.raises(ClusterError) as authenticated:
            kubernetes.list_deployments(backend.cluster(token=token))
        assert authenticated.value.status == 403
        assert 'User "system:serviceaccount:team-a:default" cannot list' in str(authenticated.value)
        header, payload, _ = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
        refused.append(sign_token(backend.plane, claims | {"exp": int(time.time()) - 60}, kid))
    for token in refused:
        with pytest.raises(ClusterError) as unauthorized:
            kubernetes.list_deployments(backend.cluster(token=token))
        assert (unauthorized.value.status, unauthorized.value.transient) == (401, False)
        assert str(unauthorized.value) == "list deployments: HTTP 401 Unauthorized"


def test_pods_say_what_gpus_they_hold_and_why_they_cannot_be_placed(
    backend: Backend, cluster: Cluster
) -> None:
    # No node has 8 GPUs: the scheduler (kube-scheduler, or the simulator's) leaves it Pending.
    # (In team-a, whose ResourceQuota, if an earlier test left one, allows 64 GPUs.)
    apps = k8s.AppsV1Api(backend.admin)
    apps.create_namespaced_deployment("team-a", deployment_body("too-big", 1, gpus=8))
    try:
        pending = wait_for(
            lambda: next(
                (p for p in kubernetes.list_pods(cluster, "team-a") if p.unschedulable), None
            )
        )
        assert (pending.gpus, pending.node, pending.phase) == (8, None, "Pending")
        assert "Insufficient nvidia.com/gpu" in pending.unschedulable
        assert not pending.holds_gpus
        placed = [p for p in kubernetes.list_pods(cluster) if p.node]
        assert placed and all(p.gpus == 1 and not p.unschedulable for p in placed)

        # The inventory counts what bound pods hold, per node; the Pending pod holds nothing.
        # (Retried: a pod still terminating from an earlier test may leave between two reads.)
        def inventory_matches_pods() -> bool:
            sync_inventory(cluster)
            held: Counter[str] = Counter()
            for pod in kubernetes.list_pods(cluster):
                if pod.holds_gpus and pod.node:
                    held[pod.node] += pod.gpus
            stored = GpuNode.objects.filter(cluster=cluster).values_list("name", "gpu_requested")
            return dict(stored) == {name: held[name] for name, _, _ in NODES}

        wait_for(inventory_matches_pods)
    finally:
        apps.delete_namespaced_deployment("too-big", "team-a")


def test_a_deployments_gpu_product_is_read_from_its_selector_and_required_affinity(
    backend: Backend, cluster: Cluster
) -> None:
    # What a workload's variant check reads (scaling.status.TypeStatus): the products a pod
    # template allows, by nodeSelector and by a required node affinity; none restricts it.
    apps = k8s.AppsV1Api(backend.admin)
    anywhere = deployment_body("anywhere", 0)
    del anywhere["spec"]["template"]["spec"]["nodeSelector"]
    either = deployment_body("either", 0)
    del either["spec"]["template"]["spec"]["nodeSelector"]
    term = {
        "matchExpressions": [{"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [L4, A100]}]
    }
    either["spec"]["template"]["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    for body in (anywhere, either):
        apps.create_namespaced_deployment("team-c", body)
    try:
        listed = kubernetes.list_deployments(cluster)
        chat, free, both = (
            listed[("team-a", "chat")],
            listed[("team-c", "anywhere")],
            listed[("team-c", "either")],
        )
        assert chat.gpu_products == frozenset({A100}) and chat.pins_to(A100)
        assert free.gpu_products is None and not free.pins_to(A100)
        assert both.gpu_products == frozenset({L4, A100}) and not both.pins_to(L4)
    finally:
        for body in (anywhere, either):
            apps.delete_namespaced_deployment(body["metadata"]["name"], "team-c")
