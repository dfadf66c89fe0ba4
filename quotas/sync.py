"""Quotas in the clusters: each tenant namespace carries a ResourceQuota on
``requests.nvidia.com/gpu`` mirroring its effective limit on that cluster, as a backstop
should anything scale behind the control plane's back. Reconciled idempotently; a value
someone edited by hand (drift) is put back and reported."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from clusters import kubernetes
from clusters.kubernetes import ClusterError
from clusters.models import Cluster

RESOURCE_QUOTA_NAME = "gpu-control-plane"


def sync_resource_quotas(
    cluster: Cluster, limits: dict[str, int], known: dict[str, Any], *, full: bool
) -> dict[str, Any]:
    """Make each namespace's ResourceQuota hold its limit. Without ``full``, only namespaces
    whose limit changed since ``known`` (the last results) are touched; ``full`` also reads
    the others, which finds drift. Returns the new results per namespace."""
    results = dict(known)
    for namespace, hard in sorted(limits.items()):
        previous = known.get(namespace) or {}
        if not full and previous.get("hard") == hard and not previous.get("error"):
            continue
        results[namespace] = _sync_one(cluster, namespace, hard, previous)
    for gone in set(results) - set(limits):
        del results[gone]
    return results


def _sync_one(cluster: Cluster, namespace: str, hard: int, previous: dict[str, Any]) -> Any:
    at = timezone.now().isoformat()
    try:
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
