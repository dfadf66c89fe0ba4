"""The inference-pool admin protocol (docs/pool-protocol.md) for one cluster.

Paths are relative to ``/<cluster>/pool``:

- ``GET  /workloads``                                   every pool and its settings
- ``GET  /workloads/<ns>/<deployment>``                 one pool's settings and counts
- ``PUT  /workloads/<ns>/<deployment>``                 set ``max_concurrency`` and ``routing``
- ``GET  /workloads/<ns>/<deployment>/replicas``        replicas with in-flight counts
- ``POST /workloads/<ns>/<deployment>/replicas/<pod>/drain``  stop routing to one replica
"""

from __future__ import annotations

import json
import re
from typing import Any

from simulator import controllers
from simulator.cluster import Cluster, DeploymentInfo
from simulator.pool import ROUTING_STRATEGIES
from simulator.replica import ReplicaState

Response = tuple[int, dict[str, Any]]
MAX_CONCURRENCY_LIMIT = 4096

_WORKLOAD = re.compile(r"/workloads/(?P<ns>[^/]+)/(?P<name>[^/]+)")
_REPLICAS = re.compile(r"/workloads/(?P<ns>[^/]+)/(?P<name>[^/]+)/replicas")
_DRAIN = re.compile(r"/workloads/(?P<ns>[^/]+)/(?P<name>[^/]+)/replicas/(?P<pod>[^/]+)/drain")


def handle(cluster: Cluster, method: str, path: str, raw: bytes) -> Response:
    path = path.rstrip("/") or "/"
    with cluster.lock:
        if path in ("/", "/workloads"):
            return _only(method, "GET") or (200, {"workloads": _all(cluster)})
        if match := _DRAIN.fullmatch(path):
            return _only(method, "POST") or _drain(
                cluster, match["ns"], match["name"], match["pod"]
            )
        if match := _REPLICAS.fullmatch(path):
            return _only(method, "GET") or _replicas(cluster, match["ns"], match["name"])
        if match := _WORKLOAD.fullmatch(path):
            key = (match["ns"], match["name"])
            if key not in cluster.dep_info:
                return _error(404, f"no pool for workload {key[0]}/{key[1]}")
            if method == "GET":
                return 200, _settings(cluster, key)
            if method in ("PUT", "PATCH"):
                return _update(cluster, key, raw, partial=method == "PATCH")
            return _error(405, f"{method} is not allowed here", allow="GET, PUT, PATCH")
    return _error(404, f"unknown pool path {path}")


def _only(method: str, allowed: str) -> Response | None:
    return (
        None if method == allowed else _error(405, f"{method} is not allowed here", allow=allowed)
    )


def _error(code: int, message: str, **extra: Any) -> Response:
    return code, {"message": message, **extra}


def _all(cluster: Cluster) -> list[dict[str, Any]]:
    return [_settings(cluster, key) for key in sorted(cluster.dep_info)]


def _settings(cluster: Cluster, key: tuple[str, str]) -> dict[str, Any]:
    info: DeploymentInfo = cluster.dep_info[key]
    pool = info.pool
    return {
        "namespace": key[0],
        "deployment": key[1],
        "model": info.model,
        "gpu_type": info.gpu_type,
        "gpus_per_replica": info.gpus,
        "max_concurrency": pool.max_concurrency,
        "routing": pool.routing,
        "routing_strategies": list(ROUTING_STRATEGIES),
        "replicas": {
            state.value: pool.count(state)
            for state in ReplicaState
            if state is not ReplicaState.GONE
        },
        "held_requests": len(pool._held),
    }


def _update(cluster: Cluster, key: tuple[str, str], raw: bytes, partial: bool) -> Response:
    """Validate every field first, then apply all or nothing; repeating a PUT is a no-op."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return _error(400, "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error(422, "the body must be a JSON object", errors={})
    errors: dict[str, list[str]] = {}
    unknown = set(body) - {"max_concurrency", "routing"}
    for field in sorted(unknown):
        errors[field] = ["unknown field"]
    concurrency = body.get("max_concurrency")
    if concurrency is None and not partial:
        errors["max_concurrency"] = ["this field is required"]
    elif concurrency is not None and (
        not isinstance(concurrency, int)
        or isinstance(concurrency, bool)
        or not 1 <= concurrency <= MAX_CONCURRENCY_LIMIT
    ):
        errors["max_concurrency"] = [f"must be an integer from 1 to {MAX_CONCURRENCY_LIMIT}"]
    routing = body.get("routing")
    if routing is None and not partial:
        errors["routing"] = ["this field is required"]
    elif routing is not None and routing not in ROUTING_STRATEGIES:
        errors["routing"] = [f"must be one of {', '.join(ROUTING_STRATEGIES)}"]
    if errors:
        return _error(422, "invalid pool settings", errors=errors)
    pool = cluster.dep_info[key].pool
    if concurrency is not None:
        pool.set_max_concurrency(concurrency)
    if routing is not None:
        pool.set_routing(routing)
    return 200, _settings(cluster, key)


def _replicas(cluster: Cluster, namespace: str, name: str) -> Response:
    info = cluster.dep_info.get((namespace, name))
    if info is None:
        return _error(404, f"no pool for workload {namespace}/{name}")
    out = []
    for replica in info.pool.replicas.values():
        pod = cluster.pod_info.get((namespace, replica.name))
        out.append(
            {
                "name": replica.name,
                "state": replica.state.value,
                "node": pod.node if pod else None,
                "in_flight": replica.outstanding,
                "running": len(replica.running),
                "waiting": len(replica.waiting),
                "kv_cache_usage": round(replica.kv_usage, 4),
                "gpu_utilization": round(replica.util, 4),
                "ready_at_s": replica.ready_s,
            }
        )
    return 200, {"namespace": namespace, "deployment": name, "replicas": out}


def _drain(cluster: Cluster, namespace: str, name: str, pod: str) -> Response:
    """Drain one replica: no new requests, in-flight ones finish, then the pod is deleted
    (and, as after any pod deletion, the Deployment controller replaces it)."""
    info = cluster.dep_info.get((namespace, name))
    if info is None or pod not in info.pool.replicas:
        return _error(404, f"no replica {pod} in pool {namespace}/{name}")
    replica = info.pool.replicas[pod]
    if replica.state is not ReplicaState.DRAINING and (namespace, pod) in cluster.pod_info:
        controllers.delete_pod(cluster, (namespace, pod))
        cluster._reconcile((namespace, name))
    state = replica.state.value
    return 202, {"name": pod, "state": state, "in_flight": replica.outstanding}
