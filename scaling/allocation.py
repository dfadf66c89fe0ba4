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

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.db.models.fields.json import KT

from clusters.models import Cluster
from quotas.maths import Demand, Grant, TenantQuota, allocate
from quotas.models import Quota
from scaling.bulk_writes import update_columns
from scaling.models import Workload, WorkloadVariant


@dataclass(frozen=True)
class Wish:
    """What this tick observed of one workload and what its autoscaler wants."""

    workload: Workload
    holding: int  # replicas that exist (running or warming): they hold GPUs
    warming: int  # of which not ready yet
    wanted: int
    # A workload on several GPU types wishes once per type (scaling.variants): the type, and
    # the key its grant is returned under (``variant_key``); the workload's own by default.
    gpu_type_id: int | None = None
    key: int | None = None

    @property
    def type_id(self) -> int:
        return self.gpu_type_id if self.gpu_type_id is not None else self.workload.gpu_type_id

    @property
    def demand_key(self) -> int:
        return self.key if self.key is not None else self.workload.pk


def variant_key(variant_id: int) -> int:
    """The key of a variant's wish and grant: negative, so it never meets a workload id."""
    return -variant_id


def grant_all(
    cluster: Cluster, wishes: list[Wish], now: float, rows: list[Quota] | None = None
) -> dict[int, Grant]:
    """Grants for this cluster's workloads, keyed by workload id. ``rows``: quota_rows of
    (at least) the wishing workloads, when the caller has them already."""
    if not wishes:
        return {}
    if rows is None:
        rows = quota_rows([w.workload for w in wishes])
    quotas: dict[int, dict[str, TenantQuota]] = defaultdict(dict)
    for q in rows:
        quotas[q.gpu_type_id][q.tenant.slug] = q.as_limit()
    demands, seen = _demands(cluster, wishes, quotas, now)
    grants: dict[int, Grant] = {}
    for gpu_type_id, group in demands.items():
        grants.update(allocate(quotas.get(gpu_type_id, {}), group, now))
    _record_usage(rows, demands, seen, datetime.fromtimestamp(now, UTC))
    mine = {w.demand_key for w in wishes}
    return {pk: grant for pk, grant in grants.items() if pk in mine}


def _record_usage(
    rows: list[Quota],
    demands: dict[int, list[Demand]],
    seen: dict[int, tuple[str, int]],
    at: datetime,
) -> None:
    """Write what each quota's tenant uses and wants, for the admin, the API and the quota
    preview, and start or stop its reclaim grace clock at ``at``, the tick's clock (one
    statement, for the quotas whose usage changed)."""
    by_quota: dict[tuple[int, str], list[Demand]] = defaultdict(list)
    for gpu_type_id, group in demands.items():
        for d in group:
            by_quota[(gpu_type_id, d.tenant)].append(d)
    changed = []
    for quota in rows:
        mine = by_quota.get((quota.gpu_type_id, quota.tenant.slug), [])
        observed = (
            sum(d.current * d.gpus_per_replica for d in mine),
            sum(seen[d.workload][1] * d.gpus_per_replica for d in mine),
            [vars(d) | {"name": seen[d.workload][0]} for d in mine],
        )
        clock = quota.track_excess(observed[0], at)
        if clock or observed != (quota.used_gpus, quota.warming_gpus, quota.demands):
            quota.used_gpus, quota.warming_gpus, quota.demands = observed
            quota.usage_at = at
            changed.append(quota)
    # Only what changed is written: a steady fleet costs no quota writes.
    update_columns(changed, ["used_gpus", "warming_gpus", "demands", "usage_at", "over_since"])


def quota_rows(workloads: list[Workload]) -> list[Quota]:
    """Quotas of the workloads' tenants and of their cohort siblings, for the GPU types they
    run: what grant_all and namespace_limits read, in one query."""
    tenants = {w.tenant_id for w in workloads}
    parents = {w.tenant.parent_id for w in workloads if w.tenant.parent_id}
    gpu_types = {t for w in workloads for t in _gpu_types(w)}
    return list(
        Quota.objects.filter(gpu_type_id__in=gpu_types)
        .filter(Q(tenant_id__in=tenants) | Q(tenant__parent_id__in=parents))
        .select_related("tenant", "tenant__parent", "gpu_type")
    )


def _gpu_types(workload: Workload) -> set[int]:
    """The GPU types a workload runs on: its own and its variants' (prefetched by callers
    that pass many workloads)."""
    return {workload.gpu_type_id} | {v.gpu_type_id for v in workload.variants.all()}


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
    demands: dict[int, list[Demand]] = defaultdict(list)
    seen: dict[int, tuple[str, int]] = {}
    for wish in wishes:
        workload = wish.workload
        demands[wish.type_id].append(
            _demand(
                wish.demand_key,
                workload.tenant.slug,
                workload.gpus_per_replica,
                wish.holding,
                _policy_minimum(workload),
                workload.loop_state or {},
                now,
                wanted=wish.wanted,
            )
        )
        seen[wish.demand_key] = (_demand_name(wish), wish.warming)
    # The other clusters' workloads as plain values: their loop state holds minutes of signal
    # history, and only four of its keys matter here (read in the database). A workload on
    # several GPU types is charged each type's replicas as its last tick stored them
    # ("parts"), whichever of its types the quotas here are for.
    types = list(quotas.keys())
    on_variants = WorkloadVariant.objects.filter(gpu_type_id__in=types).values("workload_id")
    others = (
        Workload.objects.filter(Q(gpu_type_id__in=types) | Q(pk__in=on_variants))
        .filter(tenant__slug__in=slugs)
        .exclude(cluster=cluster)
        .order_by("pk")
        .values_list(
            "pk",
            "gpu_type_id",
            "tenant__slug",
            "gpus_per_replica",
            "ready_replicas",
            "warming_replicas",
            "policy__min_replicas",
            KT("loop_state__wanted"),
            KT("loop_state__grown_at"),
            KT("loop_state__waiting_since"),
            "cluster__name",
            "namespace",
            "deployment",
            KT("loop_state__parts"),
        )
    )
    for row in others:
        pk, gpu_type_id, slug, gpus, ready, warming, minimum = row[:7]
        wanted, grown_at, waiting_since, cluster_name, namespace, deployment = row[7:13]
        if pk in fresh:
            continue
        clocks = {"grown_at": grown_at, "waiting_since": waiting_since}
        where = f"{cluster_name}/{namespace}/"
        for part in _stored_parts(row[13]) or [
            _Part(
                gpu_type_id,
                pk,
                deployment,
                ready + warming,
                warming,
                int(float(wanted)) if wanted is not None else ready + warming,
            )
        ]:
            if part.gpu_type not in quotas:
                continue
            demands[part.gpu_type].append(
                _demand(
                    part.key,
                    slug,
                    gpus,
                    part.holding,
                    minimum or 0,  # per type, as this cluster's own wishes (_policy_minimum)
                    clocks,
                    now,
                    wanted=part.wanted,
                )
            )
            seen[part.key] = (where + part.deployment, part.warming)
    return demands, seen


def _demand_name(wish: Wish) -> str:
    """How the quota admin's preview names a demand: a variant's wish by its workload, GPU
    type and Deployment (its key is no workload's id). Variants are prefetched by the loop."""
    key = wish.demand_key
    if key == wish.workload.pk:
        return str(wish.workload)
    found = (v for v in wish.workload.variants.all() if variant_key(v.pk) == key)
    return str(next(found, wish.workload))


@dataclass(frozen=True)
class _Part:
    """One GPU type of another cluster's workload, as its last tick stored it."""

    gpu_type: int
    key: int  # the workload's id for its primary type, variant_key for a variant
    deployment: str
    holding: int
    warming: int
    wanted: int


def _stored_parts(text: str | None) -> list[_Part]:
    """A mixed workload's ``loop_state["parts"]`` (scaling.variants.parts_state), read as
    JSON text; [] for a workload with one type or none stored yet (its totals stand in)."""
    if not text:
        return []
    try:
        found = json.loads(text)
    except ValueError:
        return []
    if not isinstance(found, list):
        return []
    return [
        _Part(
            int(p["gpu_type"]),
            int(p["key"]),
            str(p["deployment"]),
            int(p["holding"]),
            int(p["warming"]),
            int(p["wanted"]),
        )
        for p in found
        if isinstance(p, dict)
    ]


def _policy_minimum(workload: Workload) -> int:
    policy = workload.policy_or_none
    return policy.min_replicas if policy else 0


def _demand(
    workload: int,
    tenant: str,
    gpus_per_replica: int,
    holding: int,
    policy_minimum: int,
    clocks: dict[str, Any],
    now: float,
    *,
    wanted: int,
) -> Demand:
    """One workload's demand; ``clocks``: its loop state's grown_at and waiting_since."""
    grown_at, waiting_since = clocks.get("grown_at"), clocks.get("waiting_since")
    return Demand(
        workload=workload,
        tenant=tenant,
        gpus_per_replica=gpus_per_replica,
        current=holding,
        wanted=wanted,
        minimum=min(policy_minimum, holding),
        grown_at=float(grown_at) if grown_at is not None else 0.0,
        # Only a request for more has an age (it orders competing growth).
        waiting_since=(float(waiting_since) if waiting_since is not None else now)
        if wanted > holding
        else 0.0,
    )


def namespace_limits(
    cluster: Cluster, workloads: list[Workload] | None = None, rows: list[Quota] | None = None
) -> dict[str, int]:
    """The GPU limit each namespace of ``cluster`` carries in its ResourceQuota: the most its
    tenant may hold of each GPU type it runs there (N + B, or the whole cohort when B is
    empty; the quota spans clusters, so all of it may be on this one), summed.

    It changes only when quotas do, so the backstop costs no writes as replicas come and go.
    Namespaces of tenants with no quota for some GPU type they use are left out: quotas do
    not limit them, so no backstop is written. A tick passes the cluster's ``workloads``
    (with tenants) and their quota_rows, loaded already; without them they are read here.
    """
    if workloads is None:
        workloads = list(
            Workload.objects.filter(cluster=cluster)
            .select_related("tenant")
            .prefetch_related("variants")
        )
    if rows is None:
        rows = quota_rows(workloads)
    cohort_nominal: dict[tuple[int, int], int] = defaultdict(int)
    ceilings: dict[tuple[int, int], int | None] = {}
    for q in rows:
        if q.tenant.parent_id is not None:
            cohort_nominal[(q.tenant.parent_id, q.gpu_type_id)] += q.nominal
        ceilings[(q.tenant_id, q.gpu_type_id)] = q.as_limit().ceiling
    limits: dict[str, int] = defaultdict(int)
    unlimited: set[str] = set()
    here = {
        (w.namespace, w.tenant_id, w.tenant.parent_id, gpu_type)
        for w in workloads
        for gpu_type in _gpu_types(w)
    }
    for namespace, tenant, parent, gpu_type in here:
        if (tenant, gpu_type) not in ceilings:
            unlimited.add(namespace)
            continue
        ceiling = ceilings[(tenant, gpu_type)]
        limits[namespace] += (
            ceiling if ceiling is not None else cohort_nominal[(parent or 0, gpu_type)]
        )
    return {ns: gpus for ns, gpus in limits.items() if ns not in unlimited}
