"""The Kubernetes adapter: everything the control plane asks of a cluster, on the official
``kubernetes`` client (the only module that imports it).

Every call carries a timeout. Failures become ``ClusterError`` with ``transient`` set when a
retry at the next tick may succeed (timeouts, connection errors, 5xx, 429, conflicts) and
unset when it will not (403, 404, 422, ...). Writes are idempotent "set to N" operations that
read first, write only on a difference, and retry conflicts from a fresh read with bounded
backoff.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import urllib3
from django.conf import settings
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from clusters.models import Cluster

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
QUOTA_RESOURCE = "requests.nvidia.com/gpu"
CONFLICT_RETRIES = 3
CONFLICT_BACKOFF_S = 0.1

T = TypeVar("T")


class ClusterError(Exception):
    """A cluster call failed. ``transient``: the next tick may well succeed.

    ``kind`` (timeout, unreachable, http, bad answer, error) and ``call`` (what was asked,
    e.g. "list deployments") name the cause: the same cause on every tick is one incident,
    whatever ports or retry counts the client's text carries. ``sentence`` says it for
    operators.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        kind: str = "error",
        call: str = "",
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.kind = kind
        self.call = call or message.split(":", 1)[0]
        self.detail = detail

    @property
    def cause(self) -> tuple[str, str]:
        kind = f"HTTP {self.status}" if self.kind == "http" else self.kind
        return kind, self.call

    def sentence(self, cluster: str) -> str:
        """The failure in plain words, e.g. "cluster west's API did not answer within 10 s
        (list deployments)"."""
        api = f"cluster {cluster}'s API"
        if self.kind == "timeout":
            return f"{api} did not answer within {self.detail} ({self.call})"
        if self.kind == "unreachable" and self.detail == "connection refused":
            return f"{api} refused the connection ({self.call})"
        if self.kind == "unreachable":
            return f"{api} could not be reached: {self.detail} ({self.call})"
        if self.kind == "http":
            return f"{api} answered HTTP {self.status} {self.detail} ({self.call})".replace(
                "  ", " "
            )
        if self.kind == "bad answer":
            return f"{api} sent an answer that is not a Kubernetes list ({self.call})"
        return f"{api} failed: {self.detail or self.kind} ({self.call})"


@dataclass(frozen=True)
class NodeInventory:
    name: str
    gpu_product: str
    gpu_capacity: int
    gpu_allocatable: int
    ready: bool


@dataclass(frozen=True)
class DeploymentState:
    """A Deployment as the cluster reports it. ``replicas`` counts pods that exist;
    ``spec_replicas - replicas`` could not be created (``failure`` says why, e.g. quota)."""

    namespace: str
    name: str
    spec_replicas: int
    replicas: int
    ready_replicas: int
    selector: dict[str, str] = field(default_factory=dict)
    failure: str | None = None
    # The GPU products its pods may be scheduled on (nodeSelector and required node affinity
    # on GPU_PRODUCT_LABEL); None: not restricted, any GPU node will do.
    gpu_products: frozenset[str] | None = None

    @property
    def warming_replicas(self) -> int:
        return max(0, self.replicas - self.ready_replicas)

    def pins_to(self, product: str) -> bool:
        """Whether its pods can only land on nodes of this GPU product."""
        return self.gpu_products == frozenset({product})

    def pin_warning(self, gpu_type: str, product: str) -> str:
        """Why its pods may run on (and be counted as) another GPU type than ``gpu_type``,
        whose nodes carry ``product``; empty when they are pinned to those nodes."""
        if self.pins_to(product):
            return ""
        allowed = self.gpu_products
        where = "any GPU node" if allowed is None else " or ".join(sorted(allowed))
        if allowed is not None and not allowed:  # nodeSelector and affinity disagree
            where = "no node (its nodeSelector and node affinity allow no product in common)"
        return (
            f"Deployment {self.name} is not pinned to {gpu_type} nodes: its pods may "
            f"run on {where}; set nodeSelector {GPU_PRODUCT_LABEL}: {product}"
        )


@dataclass(frozen=True)
class PodState:
    namespace: str
    name: str
    labels: dict[str, str]
    phase: str
    ready: bool
    node: str | None
    gpus: int = 0  # nvidia.com/gpu its containers request (scheduler's view, see pod_gpus)
    unschedulable: str = ""  # the scheduler's message while PodScheduled is False

    @property
    def holds_gpus(self) -> bool:
        """Whether its GPUs count as taken on its node (a finished pod frees them)."""
        return self.node is not None and self.phase not in ("Succeeded", "Failed")


@dataclass(frozen=True)
class QuotaSync:
    """What ensure_resource_quota found and did: created, updated (drift corrected) or ok."""

    action: str
    previous_hard: int | None
    hard: int
    used: int | None


# --- clients -------------------------------------------------------------------------------------

_clients: dict[str, k8s.ApiClient] = {}
_clients_lock = threading.Lock()


def api_client(cluster: Cluster) -> k8s.ApiClient:
    """One ApiClient per cluster (and per credential: a rotated token gets a new client)."""
    key = hashlib.sha256(
        repr(
            (
                cluster.pk,
                cluster.api_url,
                cluster.kubeconfig_context,
                bytes(cluster.credential_ciphertext),
                cluster.verify_tls,
            )
        ).encode()
    ).hexdigest()
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _new_client(cluster)
        return _clients[key]


def _new_client(cluster: Cluster) -> k8s.ApiClient:
    if cluster.kubeconfig_context:
        api = k8s_config.new_client_from_config(
            context=cluster.kubeconfig_context, persist_config=False
        )
        configuration = api.configuration
    else:
        configuration = k8s.Configuration()
        configuration.host = cluster.api_url.rstrip("/")
        configuration.verify_ssl = cluster.verify_tls
        if cluster.has_credential:
            configuration.api_key = {"authorization": cluster.credential}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        api = None
    if cluster.api_url and cluster.kubeconfig_context:
        configuration.host = cluster.api_url.rstrip("/")
    # Retries are ours (bounded, per call kind); urllib3's would multiply every timeout.
    configuration.retries = 0
    return api if api is not None else k8s.ApiClient(configuration)


def _timeout() -> tuple[float, float]:
    return (settings.KUBERNETES_CONNECT_TIMEOUT_S, settings.KUBERNETES_TIMEOUT_S)


def _call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one client call with a timeout, turning every failure into a ClusterError."""
    try:
        return fn(*args, _request_timeout=_timeout(), **kwargs)
    except ApiException as exc:
        status = int(exc.status or 0)
        transient = status >= 500 or status in (0, 409, 429)
        message = _status_message(exc)
        raise ClusterError(
            f"{what}: HTTP {status} {message}",
            transient=transient,
            status=status,
            kind="http",
            call=what,
            detail=message,
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        kind, detail = _classify(exc)
        raise ClusterError(
            f"{what}: {type(exc).__name__}: {exc}",
            transient=True,
            kind=kind,
            call=what,
            detail=detail,
        ) from exc


def _classify(exc: BaseException) -> tuple[str, str]:
    """(kind, detail) of a transport failure, without the client's ports and retry counts."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    connect_s, read_s = _timeout()
    # First: urllib3 2 makes NewConnectionError (refused, no route) a ConnectTimeoutError.
    if isinstance(exc, urllib3.exceptions.NewConnectionError | ConnectionError):
        refused = "refused" in str(exc).lower()
        return "unreachable", "connection refused" if refused else "no connection"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "timeout", f"{connect_s:g} s"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
        return "timeout", f"{read_s:g} s"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "unreachable", "the connection broke"
    return "error", type(exc).__name__


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _retry_conflicts(what: str, attempt: Callable[[], T]) -> T:
    """Run a read-modify-write ``attempt``; on 409 read again, up to CONFLICT_RETRIES times."""
    for retry in range(CONFLICT_RETRIES + 1):
        try:
            return attempt()
        except ClusterError as exc:
            if exc.status != 409 or retry == CONFLICT_RETRIES:
                raise
            time.sleep(CONFLICT_BACKOFF_S * 2**retry)
    raise AssertionError(f"unreachable: {what}")


# --- reads ---------------------------------------------------------------------------------------


def list_gpu_nodes(cluster: Cluster) -> list[NodeInventory]:
    core = k8s.CoreV1Api(api_client(cluster))
    nodes = _call("list nodes", core.list_node)
    inventory = []
    for node in nodes.items:
        capacity = _quantity((node.status.capacity or {}).get(GPU_RESOURCE))
        if capacity == 0:
            continue
        conditions = node.status.conditions or []
        inventory.append(
            NodeInventory(
                name=node.metadata.name,
                gpu_product=(node.metadata.labels or {}).get(GPU_PRODUCT_LABEL, ""),
                gpu_capacity=capacity,
                gpu_allocatable=_quantity((node.status.allocatable or {}).get(GPU_RESOURCE)),
                ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
            )
        )
    return inventory


def _list_items(what: str, fn: Callable[..., Any], *args: Any) -> list[dict[str, Any]]:
    """A list call's items as plain JSON: the client's model objects cost ~0.3 ms each to
    build, which is most of a tick for a cluster of thousands of pods."""
    response = _call(what, fn, *args, _preload_content=False)
    try:
        items: list[dict[str, Any]] = json.loads(response.data)["items"] or []
    except (ValueError, KeyError, TypeError) as exc:
        raise ClusterError(
            f"{what}: the answer is not a Kubernetes list",
            transient=True,
            kind="bad answer",
            call=what,
        ) from exc
    return items


def list_deployments(cluster: Cluster) -> dict[tuple[str, str], DeploymentState]:
    """Every Deployment of the cluster in one list call, keyed by (namespace, name)."""
    apps = k8s.AppsV1Api(api_client(cluster))
    states = {}
    for item in _list_items("list deployments", apps.list_deployment_for_all_namespaces):
        meta, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
        failure = next(
            (
                c.get("message")
                for c in status.get("conditions") or []
                if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
            ),
            None,
        )
        states[(meta["namespace"], meta["name"])] = DeploymentState(
            namespace=meta["namespace"],
            name=meta["name"],
            spec_replicas=spec.get("replicas") or 0,
            replicas=status.get("replicas") or 0,
            ready_replicas=status.get("readyReplicas") or 0,
            selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
            failure=failure,
            gpu_products=_gpu_products((spec.get("template") or {}).get("spec") or {}),
        )
    return states


def _gpu_products(pod_spec: dict[str, Any]) -> frozenset[str] | None:
    """The GPU products a pod template allows: its nodeSelector's value, narrowed by a
    required node affinity's ``In`` on the label (every term must allow a product: terms
    are ORed). None when neither restricts the label."""
    allowed: frozenset[str] | None = None
    selected = (pod_spec.get("nodeSelector") or {}).get(GPU_PRODUCT_LABEL)
    if selected is not None:
        allowed = frozenset({selected})
    required = (
        ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    per_term = [_term_products(term) for term in required]
    if per_term and all(t is not None for t in per_term):
        union = frozenset().union(*(t for t in per_term if t is not None))
        allowed = union if allowed is None else allowed & union
    return allowed


def _term_products(term: dict[str, Any]) -> frozenset[str] | None:
    """The products one nodeSelectorTerm allows (its expressions are ANDed)."""
    allowed: frozenset[str] | None = None
    for expression in term.get("matchExpressions") or []:
        if expression.get("key") == GPU_PRODUCT_LABEL and expression.get("operator") == "In":
            values = frozenset(expression.get("values") or [])
            allowed = values if allowed is None else allowed & values
    return allowed


def list_pods(cluster: Cluster, namespace: str | None = None) -> list[PodState]:
    core = k8s.CoreV1Api(api_client(cluster))
    if namespace is None:
        items = _list_items("list pods", core.list_pod_for_all_namespaces)
    else:
        items = _list_items("list pods", core.list_namespaced_pod, namespace)
    return [_pod_state(pod) for pod in items]


def _pod_state(pod: dict[str, Any]) -> PodState:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    conditions = status.get("conditions") or []
    return PodState(
        namespace=pod["metadata"]["namespace"],
        name=pod["metadata"]["name"],
        labels=dict(pod["metadata"].get("labels") or {}),
        phase=status.get("phase") or "Unknown",
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        node=spec.get("nodeName"),
        gpus=pod_gpus(spec),
        unschedulable=next(
            (
                c.get("message") or "unschedulable"
                for c in conditions
                if c.get("type") == "PodScheduled"
                and c.get("status") == "False"
                and c.get("reason") == "Unschedulable"
            ),
            "",
        ),
    )


def pod_gpus(spec: dict[str, Any]) -> int:
    """GPUs the scheduler reserves for the pod: the app containers' sum, or the largest init
    container's if larger (init containers run one at a time). An extended resource's
    request, when unset, equals its limit (Kubernetes requires the two to match)."""

    def need(container: dict[str, Any]) -> int:
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            value = (resources.get(kind) or {}).get(GPU_RESOURCE)
            if value is not None:
                return _quantity(value)
        return 0

    app = sum(need(c) for c in spec.get("containers") or [])
    init = max((need(c) for c in spec.get("initContainers") or []), default=0)
    return max(app, init)


def list_namespaces(cluster: Cluster) -> set[str]:
    core = k8s.CoreV1Api(api_client(cluster))
    return {ns.metadata.name for ns in _call("list namespaces", core.list_namespace).items}


def list_resource_quotas(cluster: Cluster, name: str) -> dict[str, tuple[int | None, int | None]]:
    """The GPU ``hard`` and ``used`` of every ResourceQuota called ``name``, by namespace, in
    one list call."""
    core = k8s.CoreV1Api(api_client(cluster))
    listed = _call(
        "list resource quotas",
        core.list_resource_quota_for_all_namespaces,
        field_selector=f"metadata.name={name}",
    )
    found = {}
    for quota in listed.items:
        if quota.metadata.name != name:  # a server that ignores the field selector
            continue
        hard = (quota.spec.hard or {}).get(QUOTA_RESOURCE)
        used = ((quota.status.used or {}) if quota.status else {}).get(QUOTA_RESOURCE)
        found[quota.metadata.namespace] = (
            _quantity(hard) if hard is not None else None,
            _quantity(used) if used is not None else None,
        )
    return found


def read_scale(cluster: Cluster, namespace: str, name: str) -> int:
    apps = k8s.AppsV1Api(api_client(cluster))
    scale = _call(
        f"read scale of {namespace}/{name}", apps.read_namespaced_deployment_scale, name, namespace
    )
    return int(scale.spec.replicas or 0)


def deployment_exists(cluster: Cluster, namespace: str, name: str) -> bool:
    """Whether the Deployment exists; ClusterError when the cluster cannot say (unreachable,
    timeout, a server error): the caller saves anyway and says it could not be checked."""
    try:
        read_scale(cluster, namespace, name)
    except ClusterError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def missing_deployment(cluster: Cluster, namespace: str, name: str) -> str:
    return f"Deployment {name} not found in namespace {namespace} on cluster {cluster.name}"


# --- writes --------------------------------------------------------------------------------------


def set_scale(cluster: Cluster, namespace: str, name: str, replicas: int) -> bool:
    """Set the Deployment's replicas to ``replicas``; True if it changed anything.

    Reads the Scale first and writes it back with its resourceVersion, so a concurrent change
    is detected (409) and the write retried from a fresh read rather than overwriting it.
    """
    apps = k8s.AppsV1Api(api_client(cluster))
    what = f"scale {namespace}/{name} to {replicas}"

    def attempt() -> bool:
        scale = _call(what, apps.read_namespaced_deployment_scale, name, namespace)
        if scale.spec.replicas == replicas:
            return False
        scale.spec.replicas = replicas
        _call(what, apps.replace_namespaced_deployment_scale, name, namespace, scale)
        return True

    return _retry_conflicts(what, attempt)


def ensure_namespace(cluster: Cluster, namespace: str) -> bool:
    """Create ``namespace`` unless it exists; True if it was created."""
    core = k8s.CoreV1Api(api_client(cluster))
    try:
        _call(f"read namespace {namespace}", core.read_namespace, namespace)
        return False
    except ClusterError as exc:
        if exc.status != 404:
            raise
    body = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace))
    try:
        _call(f"create namespace {namespace}", core.create_namespace, body)
    except ClusterError as exc:
        if exc.status != 409:  # created meanwhile by someone else: fine
            raise
    return True


def ensure_resource_quota(cluster: Cluster, namespace: str, name: str, hard: int) -> QuotaSync:
    """Make the ResourceQuota ``name`` hold ``requests.nvidia.com/gpu: hard``; report drift."""
    core = k8s.CoreV1Api(api_client(cluster))
    what = f"resource quota {namespace}/{name}"

    def attempt() -> QuotaSync:
        try:
            quota = _call(what, core.read_namespaced_resource_quota, name, namespace)
        except ClusterError as exc:
            if exc.status != 404:
                raise
            body = k8s.V1ResourceQuota(
                metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
                spec=k8s.V1ResourceQuotaSpec(hard={QUOTA_RESOURCE: str(hard)}),
            )
            _call(what, core.create_namespaced_resource_quota, namespace, body)
            return QuotaSync("created", None, hard, None)
        current = (quota.spec.hard or {}).get(QUOTA_RESOURCE)
        used = (quota.status.used or {}).get(QUOTA_RESOURCE) if quota.status else None
        used_n = _quantity(used) if used is not None else None
        if current is not None and _quantity(current) == hard:
            return QuotaSync("ok", hard, hard, used_n)
        quota.spec.hard = {**(quota.spec.hard or {}), QUOTA_RESOURCE: str(hard)}
        _call(what, core.replace_namespaced_resource_quota, name, namespace, quota)
        previous = _quantity(current) if current is not None else None
        return QuotaSync("updated", previous, hard, used_n)

    return _retry_conflicts(what, attempt)


def _quantity(value: Any) -> int:
    """A Kubernetes quantity of whole devices ("4", "0") as an int; absent means 0."""
    if value is None or value == "":
        return 0
    try:
        return int(str(value))
    except ValueError:
        return int(float(str(value)))
