"""The controllers of a simulated cluster: ReplicaSet, scheduler, kubelet, status writers.

Level-triggered like the real ones: each call looks at the whole store and converges it, so
calling them again changes nothing. Functions take the :class:`~simulator.cluster.Cluster`
and expect its lock to be held.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from simulator.replica import ReplicaState

if TYPE_CHECKING:
    from simulator.cluster import Cluster, PodInfo

_STATE_RANK = {"unscheduled": 0, "warming": 1, "ready": 2}
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def tick(cluster: Cluster, now: float) -> None:
    """1. Feed each workload's arrivals up to ``now`` into its pool and advance the pool.
    2. Let pods follow their replicas (warm -> Ready, drained -> gone).
    3. Reconcile Deployments (retrying quota-refused and unschedulable pods), then statuses.
    """
    cluster.now = max(cluster.now, now)
    for info in cluster.dep_info.values():
        if info.load is not None and now > info.load_clock:
            info.pool.submit_many(info.load.arrivals(info.load_clock, now))
            info.load_clock = now
        info.pool.advance(now)
        info.pool.sample_utilisation(now)
    _sync_pods(cluster)
    pods = pods_by_deployment(cluster)
    for key in list(cluster.deployments):
        reconcile(cluster, key, pods[key])
    schedule(cluster)
    update_statuses(cluster)


def pods_by_deployment(cluster: Cluster) -> defaultdict[tuple[str, str], list[PodInfo]]:
    """Every pod grouped by its Deployment, in one pass (fleets have thousands of each)."""
    grouped: defaultdict[tuple[str, str], list[PodInfo]] = defaultdict(list)
    for pod in cluster.pod_info.values():
        grouped[(pod.namespace, pod.deployment)].append(pod)
    return grouped


def reconcile(cluster: Cluster, key: tuple[str, str], pods: list[PodInfo] | None = None) -> None:
    """Create or delete pods toward ``spec.replicas`` (the ReplicaSet controller).

    ``pods``: the Deployment's pods when the caller grouped them already. The caller then
    runs update_statuses, which refreshes the ResourceQuotas' usage.
    """
    namespace, name = key
    deployment, info = cluster.deployments[key], cluster.dep_info[key]
    desired = deployment["spec"]["replicas"]
    if pods is None:
        pods = [p for p in cluster.pod_info.values() if (p.namespace, p.deployment) == key]
    active = [p for p in pods if p.state != "terminating"]
    info.failure = None
    for _ in range(desired - len(active)):
        # The name is only used up by a created pod, so a refusal repeated every step
        # carries the same message and does not bump the Deployment's resourceVersion.
        pod_name = _pod_name(name, info.template_hash, info.next_pod)
        refusal = cluster._quota_refusal(namespace, pod_name, info.gpus)
        if refusal is not None:
            info.failure = refusal
            break
        info.next_pod += 1
        create_pod(cluster, key, pod_name)
    # Deletion order of the ReplicaSet controller: unscheduled, then not ready, then newest.
    victims = sorted(active, key=lambda p: (_STATE_RANK[p.state], -p.seq))
    for pod in victims[: max(0, len(active) - desired)]:
        delete_pod(cluster, (namespace, pod.name))


def _pod_name(deployment: str, template_hash: str, number: int) -> str:
    digest = hashlib.sha256(f"{deployment}/{number}".encode()).digest()
    return f"{deployment}-{template_hash}-" + "".join(_SAFE[b % len(_SAFE)] for b in digest[:5])


def create_pod(cluster: Cluster, key: tuple[str, str], pod_name: str) -> None:
    from simulator.cluster import PodInfo

    namespace, name = key
    info = cluster.dep_info[key]
    seq = next(cluster._pod_seq)
    pod_info = PodInfo(namespace, pod_name, name, info.gpus, seq, cluster.now)
    pod_info.ip = f"10.{100 + cluster.index}.{(seq // 250) % 250}.{seq % 250 + 2}"
    cluster.pod_info[(namespace, pod_name)] = pod_info
    cluster.gpus_by_namespace[namespace] += info.gpus
    template = cluster.deployments[key]["spec"]["template"]
    labels = dict(template.get("metadata", {}).get("labels") or {})
    labels["pod-template-hash"] = info.template_hash
    pod: dict[str, Any] = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": cluster._new_meta(pod_name, namespace, template.get("metadata") or {}),
        "spec": dict(template["spec"]),
        "status": {},
    }
    pod["metadata"]["labels"] = labels
    pod["metadata"]["generateName"] = f"{name}-{info.template_hash}-"
    pod["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"{name}-{info.template_hash}",
            "uid": cluster.deployments[key]["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    cluster.pods[(namespace, pod_name)] = pod
    render_pod(cluster, (namespace, pod_name))


def delete_pod(cluster: Cluster, key: tuple[str, str]) -> None:
    """Scale-down: pods that never served go at once, serving ones drain first."""
    info = cluster.pod_info[key]
    pool = cluster.dep_info[(info.namespace, info.deployment)].pool
    if info.state != "ready":
        if info.name in pool.replicas:
            pool.drain_replica(info.name, cluster.now)
        remove_pod(cluster, key)
        return
    pool.drain_replica(info.name, cluster.now)
    info.state = "terminating"
    cluster.pods[key]["metadata"]["deletionTimestamp"] = cluster.stamp()
    cluster.pods[key]["metadata"]["deletionGracePeriodSeconds"] = 30
    render_pod(cluster, key)


def remove_pod(cluster: Cluster, key: tuple[str, str]) -> None:
    info = cluster.pod_info.pop(key)
    cluster.gpus_by_namespace[info.namespace] -= info.gpus
    cluster.pods.pop(key, None)
    cluster.rv += 1  # a deletion is a change too (list answers are cached by rv)
    dep = cluster.dep_info.get((info.namespace, info.deployment))
    if dep is not None and info.name in dep.pool.replicas:
        dep.pool.remove_replica(info.name, cluster.now)


def schedule(cluster: Cluster) -> None:
    """Bind unscheduled pods, oldest first, to the first Ready node with room (first fit)."""
    pending = sorted(
        (p for p in cluster.pod_info.values() if p.state == "unscheduled"), key=lambda p: p.seq
    )
    if not pending:
        return
    # GPU ids in use per node, built once per pass (not per pod: fleets have thousands).
    taken: dict[str, set[int]] = defaultdict(set)
    for other in cluster.pod_info.values():
        if other.node is not None:
            taken[other.node].update(other.gpu_ids)
    for pod in pending:
        node, reason = _find_node(cluster, pod, taken)
        key = (pod.namespace, pod.name)
        if node is None:
            if reason != pod.unschedulable:
                pod.unschedulable = reason
                render_pod(cluster, key)
            continue
        capacity = _allocatable(cluster, node)
        pod.gpu_ids = [i for i in range(capacity) if i not in taken[node]][: pod.gpus]
        taken[node].update(pod.gpu_ids)
        pod.node, pod.state, pod.unschedulable = node, "warming", ""
        dep = cluster.dep_info[(pod.namespace, pod.deployment)]
        dep.pool.add_replica(cluster.now, name=pod.name, cold_start_s=dep.cold_start_s)
        render_pod(cluster, key)


def _find_node(
    cluster: Cluster, pod: PodInfo, taken: dict[str, set[int]]
) -> tuple[str | None, str]:
    selector = cluster.pods[(pod.namespace, pod.name)]["spec"].get("nodeSelector") or {}
    mismatch = tainted = short = 0
    for name, node in sorted(cluster.nodes.items()):
        labels = node["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            mismatch += 1
        elif name in cluster.failed_nodes:
            tainted += 1
        elif _allocatable(cluster, name) - len(taken[name]) < pod.gpus:
            short += 1
        else:
            return name, ""
    parts = []
    if short:
        parts.append(f"{short} Insufficient nvidia.com/gpu")
    if mismatch:
        parts.append(f"{mismatch} node(s) didn't match Pod's node affinity/selector")
    if tainted:
        parts.append(
            f"{tainted} node(s) had untolerated taint {{node.kubernetes.io/unreachable: }}"
        )
    total = len(cluster.nodes)
    return None, f"0/{total} nodes are available: {', '.join(parts)}."


def _allocatable(cluster: Cluster, node: str) -> int:
    return int(cluster.nodes[node]["status"]["allocatable"]["nvidia.com/gpu"])


def _sync_pods(cluster: Cluster) -> None:
    """Kubelet: a replica past its cold start makes its pod Ready; a drained one leaves."""
    for key, info in list(cluster.pod_info.items()):
        pool = cluster.dep_info[(info.namespace, info.deployment)].pool
        replica = pool.replicas.get(info.name)
        if info.state == "terminating" and replica is None:
            remove_pod(cluster, key)
        elif (
            info.state == "warming" and replica is not None and replica.state is ReplicaState.READY
        ):
            info.state = "ready"
            render_pod(cluster, key)


def render_pod(cluster: Cluster, key: tuple[str, str]) -> None:
    """Rewrite the pod's spec.nodeName and status from its PodInfo; bump if it changed."""
    info, pod = cluster.pod_info[key], cluster.pods[key]
    old = (pod["spec"].get("nodeName"), pod["status"])
    if info.node:
        pod["spec"]["nodeName"] = info.node
    pod["status"] = _pod_status(cluster, info, pod)
    if (pod["spec"].get("nodeName"), pod["status"]) != old or "resourceVersion" not in pod[
        "metadata"
    ]:
        cluster._bump(pod)


def _pod_status(cluster: Cluster, info: PodInfo, pod: dict[str, Any]) -> dict[str, Any]:
    created = pod["metadata"]["creationTimestamp"]
    if info.state == "unscheduled":
        scheduled = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": info.unschedulable,
            "lastTransitionTime": created,
        }
        return {"phase": "Pending", "conditions": [scheduled], "qosClass": "Burstable"}
    ready = info.state == "ready"
    flag = "True" if ready else "False"
    conditions = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
        {"type": "Initialized", "status": "True", "lastTransitionTime": created},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": created},
        {"type": "Ready", "status": flag, "lastTransitionTime": created},
    ]
    if not ready:
        for condition in conditions[2:]:
            condition["reason"] = "ContainersNotReady"
    running = info.state in ("ready", "terminating")
    host_ip = cluster.nodes[info.node]["status"]["addresses"][0]["address"] if info.node else ""
    containers = pod["spec"].get("containers") or []
    state: dict[str, Any] = (
        {"running": {"startedAt": created}}
        if running
        else {"waiting": {"reason": "ContainerCreating"}}
    )
    statuses = [
        {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": running,
            "restartCount": 0,
            "state": state,
        }
        for c in containers
    ]
    return {
        "phase": "Running" if running else "Pending",
        "conditions": conditions,
        "hostIP": host_ip,
        "podIP": info.ip,
        "podIPs": [{"ip": info.ip}],
        "startTime": created,
        "containerStatuses": statuses,
        "qosClass": "Burstable",
    }


def update_statuses(cluster: Cluster, only: set[tuple[str, str]] | None = None) -> None:
    """Recompute Deployment statuses (all, or those in ``only``) from their pods."""
    live: dict[tuple[str, str], list[PodInfo]] = defaultdict(list)
    terminating: dict[tuple[str, str], int] = defaultdict(int)
    # One pass over the pods, not one per Deployment: fleets have thousands of each.
    for pod in cluster.pod_info.values():
        key = (pod.namespace, pod.deployment)
        if pod.state == "terminating":
            terminating[key] += 1
        else:
            live[key].append(pod)
    for key in cluster.deployments if only is None else only & cluster.deployments.keys():
        _update_deployment_status(cluster, key, live[key], terminating[key])
    cluster._refresh_quotas()


def _update_deployment_status(
    cluster: Cluster, key: tuple[str, str], pods: list[PodInfo], terminating: int
) -> None:
    deployment, info = cluster.deployments[key], cluster.dep_info[key]
    desired = deployment["spec"]["replicas"]
    ready = sum(1 for p in pods if p.state == "ready")
    counts = {
        "replicas": len(pods),
        "updatedReplicas": len(pods),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": max(0, desired - ready),
    }
    counts["terminatingReplicas"] = terminating
    # Real kube-apiserver omits zero counts (omitempty); clients see them as absent.
    status: dict[str, Any] = {k: v for k, v in counts.items() if v}
    status["observedGeneration"] = deployment["metadata"]["generation"]
    status["conditions"] = _conditions(cluster, deployment, info.failure, ready, desired)
    if status != deployment["status"]:
        deployment["status"] = status
        cluster._bump(deployment)


def _conditions(
    cluster: Cluster, deployment: dict[str, Any], failure: str | None, ready: int, desired: int
) -> list[dict[str, Any]]:
    name = deployment["metadata"]["name"]
    available = ready >= desired - desired // 4  # maxUnavailable 25%, rounded down
    wanted = [
        (
            "Available",
            "True" if available else "False",
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
        ),
        (
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{name}-{cluster.dep_info[_key(deployment)].template_hash}" '
            "has successfully progressed.",
        ),
    ]
    if failure:
        wanted.append(("ReplicaFailure", "True", "FailedCreate", failure))
    previous = {c["type"]: c for c in deployment["status"].get("conditions", [])}
    out = []
    for kind, status, reason, message in wanted:
        old = previous.get(kind)
        same = old is not None and old["status"] == status
        stamp = old["lastTransitionTime"] if same and old else cluster.stamp()
        updated = old["lastUpdateTime"] if same and old and old["message"] == message else stamp
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": updated,
                "lastTransitionTime": stamp,
            }
        )
    return out


def _key(deployment: dict[str, Any]) -> tuple[str, str]:
    return deployment["metadata"]["namespace"], deployment["metadata"]["name"]


def fail_node(cluster: Cluster, name: str) -> None:
    """The node stops reporting: its pods die with their in-flight requests and are
    recreated elsewhere if there is room (Pending otherwise); its GPUs leave the pool."""
    if name not in cluster.nodes or name in cluster.failed_nodes:
        return
    cluster.failed_nodes.add(name)
    cluster._set_node_ready(name, False)
    for pod in cluster.pods_on(name):
        remove_pod(cluster, (pod.namespace, pod.name))
    cluster._reconcile_all()


def heal_node(cluster: Cluster, name: str) -> None:
    if name not in cluster.failed_nodes:
        return
    cluster.failed_nodes.discard(name)
    cluster._set_node_ready(name, True)
    cluster._reconcile_all()
