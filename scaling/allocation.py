"""Quota-checked grants for one tick: the autoscaler's wishes for this cluster's workloads,
allocated with every other workload of the same cohorts and GPU types (on any cluster) by the
quota maths.

Each cluster's tick computes the same allocation from the same stored state, so a reclaim
decided here for a workload on another cluster is carried out by that cluster's own tick:
level-triggered, with no message between ticks. Two queries, whatever the fleet size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Q

from clusters.models import Cluster
from quotas.maths import Demand, Grant, TenantQuota, allocate
from quotas.models import Quota
from scaling.models import ScalingPolicy, Workload


@dataclass(frozen=True)
class Wish:
    """What this tick observed of one workload and what its autoscaler wants."""

    workload: Workload
    holding: int  # replicas that exist (running or warming): they hold GPUs
    wanted: int


def grant_all(cluster: Cluster, wishes: list[Wish], now: float) -> dict[int, Grant]:
    """Grants for this cluster's workloads, keyed by workload id."""
    if not wishes:
        return {}
    quotas = _quotas(wishes)
    demands = _demands(cluster, wishes, quotas, now)
    grants: dict[int, Grant] = {}
    for gpu_type_id, group in demands.items():
        grants.update(allocate(quotas.get(gpu_type_id, {}), group))
    mine = {w.workload.pk for w in wishes}
    return {pk: grant for pk, grant in grants.items() if pk in mine}


def _quotas(wishes: list[Wish]) -> dict[int, dict[str, TenantQuota]]:
    """Quotas of the tenants involved and of their cohort siblings, per GPU type."""
    tenants = {w.workload.tenant_id for w in wishes}
    parents = {w.workload.tenant.parent_id for w in wishes} - {None}
    gpu_types = {w.workload.gpu_type_id for w in wishes}
    rows = (
        Quota.objects.filter(gpu_type_id__in=gpu_types)
        .filter(Q(tenant_id__in=tenants) | Q(tenant__parent_id__in=parents))
        .select_related("tenant", "tenant__parent", "gpu_type")
    )
    quotas: dict[int, dict[str, TenantQuota]] = defaultdict(dict)
    for q in rows:
        quotas[q.gpu_type_id][q.tenant.slug] = TenantQuota(
            tenant=q.tenant.slug,
            gpu_type=q.gpu_type.name,
            nominal=q.nominal,
            borrowing_limit=q.borrowing_limit,
            lending_limit=q.lending_limit,
            cohort=q.tenant.parent.slug if q.tenant.parent else None,
            priority=q.tenant.priority,
            weight=q.tenant.fair_share_weight,
            max_replicas_per_workload=q.max_replicas_per_workload,
        )
    return quotas


def _demands(
    cluster: Cluster,
    wishes: list[Wish],
    quotas: dict[int, dict[str, TenantQuota]],
    now: float,
) -> dict[int, list[Demand]]:
    """Every workload competing for the same quotas: fresh for this cluster, as last
    observed for the others (their own ticks keep that current)."""
    slugs = {slug for per_type in quotas.values() for slug in per_type}
    fresh = {w.workload.pk: w for w in wishes}
    others = (
        Workload.objects.filter(gpu_type_id__in=quotas.keys(), tenant__slug__in=slugs)
        .exclude(cluster=cluster)
        .select_related("tenant", "policy")
        .order_by("pk")
    )
    demands: dict[int, list[Demand]] = defaultdict(list)
    for wish in wishes:
        demands[wish.workload.gpu_type_id].append(_demand(wish.workload, wish, now))
    for workload in others:
        if workload.pk not in fresh:
            demands[workload.gpu_type_id].append(_demand(workload, None, now))
    return demands


def _demand(workload: Workload, wish: Wish | None, now: float) -> Demand:
    status = workload.status or {}
    holding = wish.holding if wish else workload.ready_replicas + workload.warming_replicas
    wanted = wish.wanted if wish else int(status.get("wanted", holding))
    try:
        policy: ScalingPolicy | None = workload.policy
    except ScalingPolicy.DoesNotExist:
        policy = None
    return Demand(
        workload=workload.pk,
        tenant=workload.tenant.slug,
        gpus_per_replica=workload.gpus_per_replica,
        current=holding,
        wanted=wanted,
        minimum=min(policy.min_replicas if policy else 0, holding),
        grown_at=float(status.get("grown_at", 0.0)),
        waiting_since=float(status.get("waiting_since", now)),
    )
