"""Periodic cluster housekeeping (Celery tasks take ids and are idempotent)."""

import logging

from celery import shared_task

from clusters.inventory import sync_inventory
from clusters.kubernetes import ClusterError
from clusters.models import Cluster

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sync_all_inventories() -> None:
    for cluster_id in Cluster.objects.filter(enabled=True).values_list("pk", flat=True):
        sync_cluster_inventory.delay(cluster_id)


@shared_task(ignore_result=True)
def sync_cluster_inventory(cluster_id: int) -> None:
    cluster = Cluster.objects.filter(pk=cluster_id, enabled=True).first()
    if cluster is None:
        return
    try:
        sync_inventory(cluster)
    except ClusterError as exc:
        log.warning("inventory sync of %s failed: %s", cluster, exc)
