"""Celery tasks of the control loop. Celery is only the trigger: tasks take ids, are
idempotent (a tick recomputes everything from observed state) and may be delivered twice."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster
from scaling.loop import tick_cluster
from scaling.models import Decision, Workload

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def tick_all_clusters() -> None:
    """Beat's entry point: one tick task per enabled cluster (they run in parallel)."""
    for cluster_id in Cluster.objects.filter(enabled=True).values_list("pk", flat=True):
        tick.delay(cluster_id)


@shared_task(ignore_result=True, expires=30)
def tick(cluster_id: int) -> None:
    report = tick_cluster(cluster_id)
    if report is None:
        log.info("cluster %s: previous tick still running, skipped", cluster_id)
    elif report.error:
        log.warning("cluster %s tick: %s", report.cluster, report.error)


@shared_task(ignore_result=True)
def reconcile_workload(workload_id: int) -> None:
    """Reconcile now (after a policy edit): a tick of the workload's cluster."""
    cluster_id = Workload.objects.filter(pk=workload_id).values_list("cluster_id", flat=True)
    for pk in cluster_id:
        tick_cluster(pk)


def request_reconcile(workload: Workload) -> None:
    """Reconcile ``workload`` once the current transaction commits (so the tick sees the
    saved policy)."""
    workload_id = workload.pk
    transaction.on_commit(lambda: reconcile_workload.delay(workload_id))


@shared_task(ignore_result=True)
def prune_decisions() -> int:
    """Delete decisions older than DECISION_RETENTION_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.DECISION_RETENTION_DAYS)
    deleted, _ = Decision.objects.filter(at__lt=cutoff).delete()
    return deleted
