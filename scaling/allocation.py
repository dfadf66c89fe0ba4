"""Quota-checked grants for one tick: the autoscaler's wishes for this cluster's workloads,
allocated with every other workload of the same cohorts and GPU types (on any cluster) by the
quota maths.

Each cluster's tick computes the same allocation from the same stored state, so a reclaim
decided here for a workload on another cluster is carried out by that cluster's own tick:
level-triggered, with no message between ticks. Two queries and one write, whatever the
fleet size; the write leaves each quota's observed usage and demands on it for the admin,
the API and the quota preview.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from django.db.models import Q
from django.utils import timezone

from clusters.models import Cluster
from quotas.maths import Demand, Grant, TenantQuota, allocate, available
from quotas.models import Quota
from scaling.models import ScalingPolicy, Workload


@dataclass(frozen=True)
class Wish:
    """What this tick observed of one workload and what its autoscaler wants."""

    workload: Workload
    holding: int  # replicas that exist (running or warming): they hold GPUs
    warming: int  # of which not ready yet
    wanted: int


def grant_all(cluster: Cluster, wishes: list[Wish], now: float) -> dict[int, Grant]:
    """Grants for this cluster's workloads, keyed by workload id."""
    if not wishes:
        return {}
    rows = _quota_rows(wishes)
    quotas: dict[int, dict[str, TenantQuota]] = defaultdict(dict)
    for q in rows:
        quotas[q.gpu_type_id][q.tenant.slug] = _tenant_quota(q)
    demands, seen = _demands(cluster, wishes, quotas, now)
    grants: dict[int, Grant] = {}
    for gpu_type_id, group in demands.items():
        grants.update(allocate(quotas.get(gpu_type_id, {}), group))
    _record_usage(rows, demands, seen)
    mine = {w.workload.pk for w in wishes}
    return {pk: grant for pk, grant in grants.items() if pk in mine}


def _record_usage(
    rows: list[Quota], demands: dict[int, list[Demand]], seen: dict[int, tuple[str, int]]
) -> None:
    """Write what each quota's tenant uses and wants, for the admin, the API and the quota
    preview (one statement)."""
    at = timezone.now()
    for quota in rows:
        mine = [d for d in demands.get(quota.gpu_type_id, []) if d.tenant == quota.tenant.slug]
        quota.used_gpus = sum(d.current * d.gpus_per_replica for d in mine)
        quota.warming_gpus = sum(seen[d.workload][1] * d.gpus_per_replica for d in mine)
        quota.demands = [asdict(d) | {"name": seen[d.workload][0]} for d in mine]
        quota.usage_at = at
    Quota.objects.bulk_update(rows, ["used_gpus", "warming_gpus", "demands", "usage_at"])


def _quota_rows(wishes: list[Wish]) -> list[Quota]:
    """Quotas of the tenants involved and of their cohort siblings, per GPU type."""
    tenants = {w.workload.tenant_id for w in wishes}
    parents = {w.workload.tenant.parent_id for w in wishes if w.workload.tenant.parent_id}
    gpu_types = {w.workload.gpu_type_id for w in wishes}
    return list(
        Quota.objects.filter(gpu_type_id__in=gpu_types)
        .filter(Q(tenant_id__in=tenants) | Q(tenant__parent_id__in=parents))
        .select_related("tenant", "tenant__parent", "gpu_type")
    )


def _tenant_quota(q: Quota) -> TenantQuota:
    return TenantQuota(
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


def _demands(
    cluster: Cluster,
    wishes: list[Wish],
    quotas: dict[int, dict[str, TenantQuota]],
    now: float,
) -> tuple[dict[int, list[Demand]], dict[int, tuple[str, int]]]:
    """Every workload competing for the same quotas: fresh for this cluster, as last
    observed for the others (their own ticks keep that current); and each one's name and
    warming replicas."""
    slugs = {slug for per_type in quotas.values() for slug in per_type}
    fresh = {w.workload.pk: w for w in wishes}
    others = (
        Workload.objects.filter(gpu_type_id__in=quotas.keys(), tenant__slug__in=slugs)
        .exclude(cluster=cluster)
        .select_related("tenant", "policy", "cluster")
        .order_by("pk")
    )
    demands: dict[int, list[Demand]] = defaultdict(list)
    seen: dict[int, tuple[str, int]] = {}
    for wish in wishes:
        demands[wish.workload.gpu_type_id].append(_demand(wish.workload, wish, now))
        seen[wish.workload.pk] = (str(wish.workload), wish.warming)
    for workload in others:
        if workload.pk not in fresh:
            demands[workload.gpu_type_id].append(_demand(workload, None, now))
            seen[workload.pk] = (str(workload), workload.warming_replicas)
    return demands, seen


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


def namespace_limits(cluster: Cluster) -> dict[str, int]:
    """The GPU limit each namespace of ``cluster`` should carry in its ResourceQuota: what its
    tenant holds there plus what its quotas still let it take, summed over GPU types.

    Usage comes from the quotas' observed usage (written by the ticks). Namespaces of tenants
    with no quota for some GPU type they use are left out: quotas do not limit them, so no
    backstop is written.
    """
    here = list(Workload.objects.filter(cluster=cluster).select_related("tenant", "tenant__parent"))
    tenants = {w.tenant_id for w in here}
    parents = {w.tenant.parent_id for w in here if w.tenant.parent_id is not None}
    quotas: dict[int, dict[str, TenantQuota]] = defaultdict(dict)
    usage: dict[int, dict[str, int]] = defaultdict(dict)
    rows = Quota.objects.filter(
        Q(tenant_id__in=tenants) | Q(tenant__parent_id__in=parents)
    ).select_related("tenant", "tenant__parent", "gpu_type")
    for q in rows:
        quotas[q.gpu_type_id][q.tenant.slug] = _tenant_quota(q)
        usage[q.gpu_type_id][q.tenant.slug] = q.used_gpus
    limits: dict[str, int] = defaultdict(int)
    unlimited: set[str] = set()
    counted: set[tuple[str, int]] = set()
    for w in here:
        quota = quotas.get(w.gpu_type_id, {}).get(w.tenant.slug)
        if quota is None:
            unlimited.add(w.namespace)
            continue
        limits[w.namespace] += (w.ready_replicas + w.warming_replicas) * w.gpus_per_replica
        if (w.namespace, w.gpu_type_id) not in counted:
            counted.add((w.namespace, w.gpu_type_id))
            cohort = [q for q in quotas[w.gpu_type_id].values() if q.cohort == quota.cohort]
            limits[w.namespace] += available(quota, cohort, usage[w.gpu_type_id])
    return {ns: gpus for ns, gpus in limits.items() if ns not in unlimited}
