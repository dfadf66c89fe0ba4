"""One simulated Kubernetes cluster: the object store plus the controllers that matter.

Objects are kept as the JSON dicts kube-apiserver would return. Alongside the store run,
in miniature, the controllers a real GPU cluster relies on: the Deployment/ReplicaSet
controller (pods toward ``spec.replicas``, ResourceQuota admission, deletion order), the
scheduler (GPU type by ``nodeSelector``, free ``nvidia.com/gpu`` per node), the kubelet
(cold start, readiness) and an inference pool per Deployment (a :class:`ServingPool`, the same
model the back-tester uses) whose replicas are the pods.

Every method expects the caller to hold ``cluster.lock``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from performance import GPU_PROFILES, PRODUCT_LABELS, model_spec
from simulator import controllers
from simulator.config import ClusterConfig, WorkloadConfig
from simulator.kube_status import ApiError, already_exists, conflict, not_found
from simulator.load import LoadSource, make_load
from simulator.pool import ServingPool
from simulator.selectors import Matcher, format_selector
from simulator.validation import validate_deployment, validate_quota

GPU = "nvidia.com/gpu"
QUOTA_GPU = "requests.nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"
MODEL_ANNOTATION = "simulator.gpu/model"
COLD_START_ANNOTATION = "simulator.gpu/cold-start-seconds"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.SafeEncodeString alphabet


@dataclass
class PodInfo:
    """What the controllers know about a pod beyond its JSON."""

    namespace: str
    name: str
    deployment: str
    gpus: int
    seq: int
    created_s: float
    node: str | None = None
    state: str = "unscheduled"  # unscheduled | warming | ready | terminating
    unschedulable: str = ""
    ip: str = ""
    gpu_ids: list[int] = field(default_factory=list)  # device indices on the node


@dataclass
class DeploymentInfo:
    pool: ServingPool
    gpu_type: str
    model: str
    gpus: int
    cold_start_s: float
    template_hash: str
    load: LoadSource | None = None
    load_clock: float = 0.0
    failure: str | None = None
    next_pod: int = 0  # number behind the next pod name


class Cluster:
    """The API objects and controllers of one cluster, advanced by :meth:`tick`."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        now: float = 0.0,
        wall_origin: float | None = None,
        speed: float = 1.0,
        index: int = 0,
    ) -> None:
        self.name = config.name
        self.tokens = dict(config.tokens)
        self.admins = frozenset(config.admins)
        self.lock = threading.RLock()
        self.now = now
        self.speed = speed
        self.index = index
        self.wall_origin = time.time() if wall_origin is None else wall_origin
        self.rv = 0
        # Writes through the pool admin protocol: they change what /metrics shows without
        # changing an API object (so without moving rv).
        self.pool_writes = 0
        self.nodes: dict[str, dict[str, Any]] = {}
        self.failed_nodes: set[str] = set()
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.quotas: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.pod_info: dict[tuple[str, str], PodInfo] = {}
        # GPUs held by the pods of each namespace, kept by create_pod/remove_pod: quota
        # admission and status read it for every pod and quota, so it is not recounted.
        self.gpus_by_namespace: dict[str, int] = defaultdict(int)
        self.dep_info: dict[tuple[str, str], DeploymentInfo] = {}
        self._pod_seq = itertools.count()
        self._loading = False
        for node in config.nodes:
            self._add_node(node.name, node.gpu_type, node.gpus)
        for namespace in config.namespaces:
            self.create_namespace({"metadata": {"name": namespace}})
        for quota in config.quotas:
            body = {
                "metadata": {"name": quota.name},
                "spec": {"hard": {QUOTA_GPU: str(quota.gpus)}},
            }
            self.create_quota(quota.namespace, body)
        # Loading a fleet reconciles once at the end, not once per Deployment.
        self._loading = True
        for workload in config.workloads:
            self._create_workload(workload)
        self._loading = False
        self._reconcile_all()

    # --- bookkeeping ---------------------------------------------------------------------

    def stamp(self, sim_s: float | None = None) -> str:
        wall = self.wall_origin + (self.now if sim_s is None else sim_s) / self.speed
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def _new_meta(self, name: str, namespace: str | None, meta: dict[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in meta.items() if k in ("labels", "annotations")}
        out.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=self.stamp())
        if namespace is not None:
            out["namespace"] = namespace
        return out

    @staticmethod
    def check_version(current: dict[str, Any], body: dict[str, Any], kind: str, group: str) -> None:
        """409 when a write names a resourceVersion that is no longer current."""
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise conflict(kind, group, current["metadata"]["name"])

    # --- nodes and namespaces ------------------------------------------------------------

    def _add_node(self, name: str, gpu_type: str, gpus: int) -> None:
        profile = GPU_PROFILES[gpu_type]
        number = len(self.nodes)
        capacity = {"cpu": "96", "memory": "1056Gi", "pods": "110", GPU: str(gpus)}
        node: dict[str, Any] = {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": self._new_meta(name, None, {}),
            "spec": {},
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "addresses": [
                    {"type": "InternalIP", "address": f"10.{self.index}.0.{number + 10}"},
                    {"type": "Hostname", "address": name},
                ],
                "conditions": [],
            },
        }
        node["metadata"]["labels"] = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            PRODUCT: profile.product_label,
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.memory": str(profile.memory_mib),
            "nvidia.com/gpu.present": "true",
        }
        self.nodes[name] = node
        self._set_node_ready(name, True)

    def _set_node_ready(self, name: str, ready: bool) -> None:
        node = self.nodes[name]
        if ready:
            condition = {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        else:
            condition = {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
            }
        condition.update(lastHeartbeatTime=self.stamp(), lastTransitionTime=self.stamp())
        node["status"]["conditions"] = [condition]
        node["spec"] = (
            {}
            if ready
            else {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]}
        )
        self._bump(node)

    def node_gpu_product(self, name: str) -> str:
        return PRODUCT_LABELS[self.nodes[name]["metadata"]["labels"][PRODUCT]]

    def create_namespace(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            raise ApiError(422, "Invalid", "Namespace is invalid: metadata.name: Required value")
        if name in self.namespaces:
            raise already_exists("namespaces", "", name)
        meta = self._new_meta(name, None, body.get("metadata") or {})
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        namespace = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self._bump(namespace)
        self.namespaces[name] = namespace
        return namespace

    def require_namespace(self, namespace: str) -> None:
        if namespace not in self.namespaces:
            raise not_found("namespaces", "", namespace)

    # --- deployments ---------------------------------------------------------------------

    def _create_workload(self, workload: WorkloadConfig) -> None:
        profile = GPU_PROFILES[workload.gpu_type]
        labels = {"app": workload.name}
        container = {
            "name": "vllm",
            "image": "vllm/vllm-openai:v0.11.0",
            "args": ["--model", workload.model, "--max-num-seqs", str(workload.max_concurrency)],
            "ports": [{"containerPort": 8000, "name": "http"}],
            "resources": {
                "requests": {GPU: str(workload.gpus_per_replica)},
                "limits": {GPU: str(workload.gpus_per_replica)},
            },
        }
        body = {
            "metadata": {
                "name": workload.name,
                "labels": dict(labels),
                "annotations": {MODEL_ANNOTATION: workload.model},
            },
            "spec": {
                "replicas": workload.replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {
                        "labels": dict(labels),
                        "annotations": {COLD_START_ANNOTATION: str(workload.cold_start_s)},
                    },
                    "spec": {
                        "nodeSelector": {PRODUCT: profile.product_label},
                        "containers": [container],
                    },
                },
            },
        }
        self.create_deployment(workload.namespace, body)
        info = self.dep_info[(workload.namespace, workload.name)]
        info.pool.set_routing(workload.routing)
        info.load = make_load(workload.load)
        info.load_clock = self.now

    def create_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.require_namespace(namespace)
        name = (body.get("metadata") or {}).get("name", "")
        validate_deployment(body, name)
        if (namespace, name) in self.deployments:
            raise already_exists("deployments", "apps", name)
        deployment: dict[str, Any] = {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": self._new_meta(name, namespace, body["metadata"]),
            "spec": _deployment_spec(body["spec"]),
            "status": {},
        }
        deployment["metadata"]["generation"] = 1
        self.dep_info[(namespace, name)] = self._deployment_info(deployment)
        self.deployments[(namespace, name)] = deployment
        self._bump(deployment)
        self._reconcile((namespace, name))
        return deployment

    def _deployment_info(self, deployment: dict[str, Any]) -> DeploymentInfo:
        template = deployment["spec"]["template"]
        product = (template["spec"].get("nodeSelector") or {}).get(PRODUCT, "")
        gpu_type = PRODUCT_LABELS.get(product, "A100-80GB")
        gpus = pod_gpus(template)
        model = _model_name(deployment)
        annotations = template.get("metadata", {}).get("annotations") or {}
        cold_start = float(annotations.get(COLD_START_ANNOTATION, 60.0))
        pool = ServingPool(
            GPU_PROFILES[gpu_type],
            model_spec(model),
            gpus_per_replica=max(1, gpus),
            cold_start_s=cold_start,
            now=self.now,
            keep_completed=1000,
        )
        digest = hashlib.sha256(repr(template).encode()).digest()
        template_hash = "".join(_SAFE[b % len(_SAFE)] for b in digest[:10])
        return DeploymentInfo(pool, gpu_type, model, gpus, cold_start, template_hash)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        self.require_namespace(namespace)
        deployment = self.deployments.get((namespace, name))
        if deployment is None:
            raise not_found("deployments", "apps", name)
        return deployment

    def write_deployment(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace a Deployment's spec, labels and annotations (PUT, or PATCH once merged)."""
        current = self.get_deployment(namespace, name)
        validate_deployment(body, name)
        self.check_version(current, body, "deployments", "apps")
        spec = _deployment_spec(body["spec"])
        if spec != current["spec"]:
            current["metadata"]["generation"] += 1
        current["spec"] = spec
        for key in ("labels", "annotations"):
            if key in body["metadata"]:
                current["metadata"][key] = copy.deepcopy(body["metadata"][key])
        self._bump(current)
        self._reconcile((namespace, name))
        return current

    def delete_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        deployment = self.get_deployment(namespace, name)
        for key, info in list(self.pod_info.items()):
            if info.namespace == namespace and info.deployment == name:
                self._remove_pod(key)
        del self.deployments[(namespace, name)]
        del self.dep_info[(namespace, name)]
        self.rv += 1  # a deletion is a change too (list answers are cached by rv)
        return deployment

    def list_deployments(self, namespace: str | None, match: Matcher) -> list[dict[str, Any]]:
        return _select(self.deployments, namespace, match)

    def scale_of(self, deployment: dict[str, Any]) -> dict[str, Any]:
        meta = deployment["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {
                "replicas": deployment["status"].get("replicas", 0),
                "selector": format_selector(deployment["spec"]["selector"]["matchLabels"]),
            },
        }

    # --- resource quotas -----------------------------------------------------------------

    def create_quota(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.require_namespace(namespace)
        name = (body.get("metadata") or {}).get("name", "")
        validate_quota(body, name)
        if (namespace, name) in self.quotas:
            raise already_exists("resourcequotas", "", name)
        quota: dict[str, Any] = {
            "kind": "ResourceQuota",
            "apiVersion": "v1",
            "metadata": self._new_meta(name, namespace, body["metadata"]),
            "spec": {"hard": {k: str(v) for k, v in body["spec"]["hard"].items()}},
            "status": {},
        }
        self.quotas[(namespace, name)] = quota
        self._bump(quota)
        self._refresh_quotas()
        self._reconcile_namespace(namespace)
        return quota

    def get_quota(self, namespace: str, name: str) -> dict[str, Any]:
        self.require_namespace(namespace)
        quota = self.quotas.get((namespace, name))
        if quota is None:
            raise not_found("resourcequotas", "", name)
        return quota

    def write_quota(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        current = self.get_quota(namespace, name)
        validate_quota(body, name)
        self.check_version(current, body, "resourcequotas", "")
        current["spec"] = {"hard": {k: str(v) for k, v in body["spec"]["hard"].items()}}
        for key in ("labels", "annotations"):
            if key in body["metadata"]:
                current["metadata"][key] = copy.deepcopy(body["metadata"][key])
        self._bump(current)
        self._refresh_quotas()
        self._reconcile_namespace(namespace)
        return current

    def delete_quota(self, namespace: str, name: str) -> dict[str, Any]:
        quota = self.get_quota(namespace, name)
        del self.quotas[(namespace, name)]
        self.rv += 1
        self._reconcile_namespace(namespace)
        return quota

    def list_quotas(self, namespace: str | None, match: Matcher) -> list[dict[str, Any]]:
        return _select(self.quotas, namespace, match)

    def gpus_used(self, namespace: str) -> int:
        # Quota counts every pod that exists, Pending or terminating, as Kubernetes does.
        return self.gpus_by_namespace.get(namespace, 0)

    def _refresh_quotas(self) -> None:
        for (namespace, _), quota in self.quotas.items():
            hard = quota["spec"]["hard"]
            used = {k: (str(self.gpus_used(namespace)) if k == QUOTA_GPU else "0") for k in hard}
            status = {"hard": dict(hard), "used": used}
            if status != quota["status"]:
                quota["status"] = status
                self._bump(quota)

    def _quota_refusal(self, namespace: str, pod_name: str, gpus: int) -> str | None:
        """The admission message if creating this pod would exceed a GPU quota."""
        used = self.gpus_used(namespace)
        for (ns, name), quota in sorted(self.quotas.items()):
            hard = quota["spec"]["hard"].get(QUOTA_GPU) if ns == namespace else None
            if hard is None or used + gpus <= parse_quantity(hard):
                continue
            return (
                f'pods "{pod_name}" is forbidden: exceeded quota: {name}, '
                f"requested: {QUOTA_GPU}={gpus}, used: {QUOTA_GPU}={used}, "
                f"limited: {QUOTA_GPU}={hard}"
            )
        return None

    # --- pods ----------------------------------------------------------------------------

    def list_pods(self, namespace: str | None, match: Matcher) -> list[dict[str, Any]]:
        return _select(self.pods, namespace, match)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        self.require_namespace(namespace)
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise not_found("pods", "", name)
        return pod

    def pods_on(self, node: str) -> list[PodInfo]:
        return [i for i in self.pod_info.values() if i.node == node]

    # --- controllers (simulator.controllers keeps this module about the store) ------------

    def tick(self, now: float) -> None:
        """Advance traffic, pools, pods and statuses to simulated time ``now``."""
        controllers.tick(self, now)

    def fail_node(self, name: str) -> None:
        controllers.fail_node(self, name)

    def heal_node(self, name: str) -> None:
        controllers.heal_node(self, name)

    def _reconcile(self, key: tuple[str, str]) -> None:
        if self._loading:
            return
        controllers.reconcile(self, key)
        controllers.schedule(self)
        controllers.update_statuses(self, only={key})

    def _reconcile_all(self) -> None:
        pods = controllers.pods_by_deployment(self)
        for key in list(self.deployments):
            controllers.reconcile(self, key, pods[key])
        controllers.schedule(self)
        controllers.update_statuses(self)

    def _reconcile_namespace(self, namespace: str) -> None:
        """After a quota of ``namespace`` changed: only its Deployments can be affected."""
        if self._loading:
            return
        keys = {key for key in self.deployments if key[0] == namespace}
        pods = controllers.pods_by_deployment(self)
        for key in sorted(keys):
            controllers.reconcile(self, key, pods[key])
        controllers.schedule(self)
        controllers.update_statuses(self, only=keys)

    def _remove_pod(self, key: tuple[str, str]) -> None:
        controllers.remove_pod(self, key)


def parse_quantity(value: str | int) -> int:
    """Whole-number quantities as used for GPUs ("4", 4, "4k" is not a GPU count)."""
    return int(str(value).strip())


def pod_gpus(template: dict[str, Any]) -> int:
    """GPUs one pod asks for: requests, else limits (limits imply requests for GPUs)."""
    total = 0
    for container in template.get("spec", {}).get("containers", []):
        resources = container.get("resources") or {}
        amount = (resources.get("requests") or {}).get(GPU)
        if amount is None:
            amount = (resources.get("limits") or {}).get(GPU, 0)
        total += parse_quantity(amount)
    return total


def _model_name(deployment: dict[str, Any]) -> str:
    annotations = deployment["metadata"].get("annotations") or {}
    if MODEL_ANNOTATION in annotations:
        return str(annotations[MODEL_ANNOTATION])
    for container in deployment["spec"]["template"]["spec"].get("containers", []):
        args = [*(container.get("command") or []), *(container.get("args") or [])]
        for position, arg in enumerate(args):
            if arg == "--model" and position + 1 < len(args):
                return str(args[position + 1])
            if str(arg).startswith("--model="):
                return str(arg).split("=", 1)[1]
    return "unknown-8b"


def _deployment_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out.setdefault("replicas", 1)
    out.setdefault(
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
    )
    out.setdefault("revisionHistoryLimit", 10)
    out.setdefault("progressDeadlineSeconds", 600)
    return out


def _select(
    store: dict[tuple[str, str], dict[str, Any]], namespace: str | None, match: Matcher
) -> list[dict[str, Any]]:
    return [
        obj
        for (ns, _), obj in sorted(store.items())
        if (namespace is None or ns == namespace) and match(obj["metadata"].get("labels") or {})
    ]
