"""Quotas in the clusters: each tenant namespace carries a ResourceQuota on
``requests.nvidia.com/gpu`` mirroring its effective limit, as a backstop should anything
scale behind the control plane's back. Reconciled idempotently; a value someone edited by
hand (drift) is put back and reported."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clusters import kubernetes
from clusters.kubernetes import ClusterError
from clusters.models import Cluster

RESOURCE_QUOTA_NAME = "gpu-control-plane"


def sync_resource_quotas(
    cluster: Cluster, limits: dict[str, int], known: dict[str, Any], *, full: bool, at: datetime
) -> dict[str, Any]:
    """Make each namespace's ResourceQuota hold its limit; returns the results by namespace,
    stamped ``at`` (the control loop tick's clock).

    Without ``full``, only namespaces whose limit changed since ``known`` (the last results)
    are written, so a steady fleet costs no calls. ``full`` lists every namespace and quota
    of the cluster (two calls) and corrects whatever differs: that is how drift is found.
    """
    if full:
        try:
            namespaces = kubernetes.list_namespaces(cluster)
            current = kubernetes.list_resource_quotas(cluster, RESOURCE_QUOTA_NAME)
        except ClusterError as exc:
            error = {"error": str(exc), "at": at.isoformat()}
            return {ns: (known.get(ns) or {}) | error for ns in limits}
    results = {}
    for namespace, hard in sorted(limits.items()):
        previous = known.get(namespace) or {}
        if full:
            found = current.get(namespace)
            if found is not None and found[0] == hard:
                results[namespace] = previous | {"hard": hard, "used": found[1], "action": "ok"}
                results[namespace].pop("error", None)
                continue
            exists = namespace in namespaces
        elif previous.get("hard") == hard and not previous.get("error"):
            results[namespace] = previous
            continue
        else:
            exists = False
        results[namespace] = _write(cluster, namespace, hard, previous, exists, at.isoformat())
    return results


def _write(
    cluster: Cluster, namespace: str, hard: int, previous: dict[str, Any], exists: bool, at: str
) -> dict[str, Any]:
    try:
        if not exists:
            kubernetes.ensure_namespace(cluster, namespace)
        synced = kubernetes.ensure_resource_quota(cluster, namespace, RESOURCE_QUOTA_NAME, hard)
    except ClusterError as exc:
        return {"hard": previous.get("hard"), "error": str(exc), "at": at}
    result: dict[str, Any] = {"hard": hard, "used": synced.used, "action": synced.action, "at": at}
    # A differing value we did not ask for since the last sync is someone else's edit.
    if synced.action == "updated" and synced.previous_hard != previous.get("hard"):
        result["drift"] = f"found {synced.previous_hard} set by hand, restored {hard}"
    elif previous.get("drift"):
        result["drift"] = previous["drift"]
    return result
