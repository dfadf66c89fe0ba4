"""Inventory sync: which GPU nodes each cluster has and how many of their GPUs pods hold,
stored for the UI (placement, clusters.placement) and quota capacity."""

from __future__ import annotations

from collections import Counter

from django.db import transaction
from django.utils import timezone

from clusters import kubernetes
from clusters.models import Cluster, GpuNode


def sync_inventory(cluster: Cluster) -> int:
    """Replace the stored GPU nodes of ``cluster`` with what it reports; returns the count.

    Nodes that disappeared are removed; a failed read leaves the last inventory in place
    (raises ClusterError) rather than reporting zero GPUs.
    """
    nodes = kubernetes.list_gpu_nodes(cluster)
    requested: Counter[str] = Counter()
    for pod in kubernetes.list_pods(cluster):
        if pod.holds_gpus and pod.node is not None:
            requested[pod.node] += pod.gpus
    now = timezone.now()
    with transaction.atomic():
        GpuNode.objects.filter(cluster=cluster).exclude(name__in=[n.name for n in nodes]).delete()
        GpuNode.objects.bulk_create(
            [
                GpuNode(
                    cluster=cluster,
                    name=n.name,
                    gpu_product=n.gpu_product,
                    gpu_capacity=n.gpu_capacity,
                    gpu_allocatable=n.gpu_allocatable,
                    gpu_requested=requested[n.name],
                    ready=n.ready,
                    seen_at=now,
                )
                for n in nodes
            ],
            update_conflicts=True,
            unique_fields=["cluster", "name"],
            update_fields=[
                "gpu_product",
                "gpu_capacity",
                "gpu_allocatable",
                "gpu_requested",
                "ready",
                "seen_at",
            ],
        )
    return len(nodes)
