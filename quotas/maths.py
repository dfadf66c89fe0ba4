"""Quota maths: who may use how many GPUs of one type, following Kueue's cohorts.

Pure functions of quotas and usage: usage is an input, nothing here reaches for workloads.

Notation per tenant and GPU type: nominal N, borrowing limit B (None = no limit of its own),
lending limit L (None = lends all), usage U (GPUs of its running and warming replicas).
An organisation is a cohort: its teams share what they lend.

- A tenant's private part is N - L (0 when L is None); nobody else may use it.
- Cohort pool = sum of (N - private); pool used = sum of max(0, U - private).
- What a tenant may still take = its unused private part + what is free in the pool, capped
  by its own N + B. A tenant outside any cohort may use exactly its N.
- No quota row for a tenant and GPU type means quotas do not limit it (like a namespace
  without a ResourceQuota in Kubernetes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class TenantQuota:
    """One tenant's quota for one GPU type, with what the allocation needs to know of it."""

    tenant: str
    gpu_type: str
    nominal: int
    borrowing_limit: int | None = None
    lending_limit: int | None = None
    cohort: str | None = None  # the organisation; None outside any
    priority: int = 0
    weight: float = 1.0
    max_replicas_per_workload: int | None = None

    @property
    def private(self) -> int:
        """GPUs of its nominal that it never lends."""
        if self.cohort is None:
            return self.nominal
        return self.nominal - self.lending_limit if self.lending_limit is not None else 0

    @property
    def lendable(self) -> int:
        return self.nominal - self.private

    @property
    def ceiling(self) -> int | None:
        """Most GPUs it may ever use: N + B; None when only the cohort's pool bounds it."""
        if self.cohort is None:
            return self.nominal
        return None if self.borrowing_limit is None else self.nominal + self.borrowing_limit

    def describe(self, used: int) -> str:
        if self.cohort is None:
            limit = "no borrowing outside an organisation"
        elif self.borrowing_limit is None:
            limit = "no borrowing limit"
        else:
            limit = f"borrowing limit {self.borrowing_limit}"
        return f"{self.tenant} {self.gpu_type} used {used}, nominal {self.nominal}, {limit}"


@dataclass(frozen=True)
class Usage:
    """What a tenant uses of one GPU type, split as the admin and the API show it."""

    used: int
    borrowed: int  # beyond nominal, from the cohort's pool
    lent: int  # of its lendable part, in use by others
    available: int | None  # what it may still take now; None = unlimited


def cohort_pool(quotas: Iterable[TenantQuota], usage: dict[str, int]) -> tuple[int, int]:
    """(pool size, pool used) of one cohort and GPU type."""
    members = list(quotas)
    size = sum(q.lendable for q in members)
    used = sum(max(0, usage.get(q.tenant, 0) - q.private) for q in members)
    return size, used


def available(quota: TenantQuota, cohort: Iterable[TenantQuota], usage: dict[str, int]) -> int:
    """GPUs ``quota.tenant`` may still take: unused private part + free pool, capped."""
    used = usage.get(quota.tenant, 0)
    if quota.cohort is None:
        return max(0, quota.nominal - used)
    size, pool_used = cohort_pool(cohort, usage)
    room = max(0, quota.private - used) + max(0, size - pool_used)
    if quota.ceiling is not None:
        room = min(room, max(0, quota.ceiling - used))
    return room


def usage_of(quota: TenantQuota, cohort: list[TenantQuota], usage: dict[str, int]) -> Usage:
    """Used, borrowed, lent and still available for one tenant and GPU type."""
    used = usage.get(quota.tenant, 0)
    borrowed = max(0, used - quota.nominal)
    lent = 0
    if quota.cohort is not None and quota.lendable > 0:
        # Others' use beyond their own nominal comes out of lenders' unused lendable GPUs,
        # shared in proportion to what each has unused.
        demand = sum(max(0, usage.get(q.tenant, 0) - q.nominal) for q in cohort)
        unused = {
            q.tenant: max(0, q.lendable - max(0, usage.get(q.tenant, 0) - q.private))
            for q in cohort
        }
        total_unused = sum(unused.values())
        if total_unused:
            lent = min(unused[quota.tenant], round(demand * unused[quota.tenant] / total_unused))
    return Usage(used, borrowed, lent, available(quota, cohort, usage))


# --- allocation of one GPU type in one tick ------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """One workload: what it runs now and what its autoscaler wants."""

    workload: int
    tenant: str
    gpus_per_replica: int
    current: int  # replicas running or warming (they hold GPUs)
    wanted: int  # replicas the autoscaler asks for
    minimum: int = 0  # its policy's min replicas: reclaim never goes below
    grown_at: float = 0.0  # when it last grew (reclaim takes the most recent growth first)
    waiting_since: float = 0.0  # when it started wanting more (older requests first)


@dataclass(frozen=True)
class Grant:
    """Replicas a workload may have; ``kind`` is ok, cut (growth blocked) or reclaimed."""

    workload: int
    replicas: int
    kind: str = "ok"
    reason: str = ""


@dataclass
class _State:
    quotas: dict[str, TenantQuota]
    usage: dict[str, int]
    cohorts: dict[str | None, list[TenantQuota]] = field(default_factory=dict)

    def cohort_of(self, tenant: str) -> list[TenantQuota]:
        quota = self.quotas[tenant]
        return self.cohorts.get(quota.cohort, [quota]) if quota.cohort else [quota]


def allocate(quotas: dict[str, TenantQuota], demands: list[Demand]) -> dict[int, Grant]:
    """Decide how many replicas each workload of one GPU type may have this tick.

    1. Shrinking is free: a workload that wants fewer replicas gets them.
    2. Growth requests are served in order: within nominal before borrowing, then higher
       tenant priority, then lowest fair share (borrowed / cohort lendable / weight), then
       the oldest request, then workload id. Each is cut to what fits (whole replicas).
    3. Reclaim: a tenant at or under nominal whose growth was cut takes back from cohort
       members borrowing beyond their nominal: their workloads shrink, lowest priority and
       most recently grown first, never below their policy minimum and never taking a
       borrower below its own nominal. The freed GPUs arrive as those replicas drain; the
       next tick serves the request (within-nominal requests go first).
    """
    usage: dict[str, int] = defaultdict(int)
    for d in demands:
        usage[d.tenant] += d.current * d.gpus_per_replica
    state = _State(quotas, usage)
    for quota in quotas.values():
        if quota.cohort is not None:
            state.cohorts.setdefault(quota.cohort, []).append(quota)
    grants: dict[int, Grant] = {}
    growing: list[Demand] = []
    for d in demands:
        own = quotas.get(d.tenant)
        wanted = _capped(d, own)
        if wanted <= d.current or own is None:
            grants[d.workload] = Grant(d.workload, wanted)
            usage[d.tenant] -= max(0, d.current - wanted) * d.gpus_per_replica
        else:
            growing.append(replace(d, wanted=wanted))
    unmet: list[Demand] = []
    for d in sorted(growing, key=lambda d: _order(d, state)):
        grants[d.workload] = _grow(d, state)
        if grants[d.workload].replicas < d.wanted:
            unmet.append(d)
    _reclaim(unmet, demands, grants, state)
    return grants


def _capped(demand: Demand, quota: TenantQuota | None) -> int:
    if quota is not None and quota.max_replicas_per_workload is not None:
        return min(demand.wanted, max(demand.current, quota.max_replicas_per_workload))
    return demand.wanted


def _order(d: Demand, state: _State) -> tuple[bool, int, float, float, int]:
    quota = state.quotas[d.tenant]
    used = state.usage[d.tenant]
    growth = (d.wanted - d.current) * d.gpus_per_replica
    borrowing = used + growth > quota.nominal
    pool = sum(q.lendable for q in state.cohort_of(d.tenant)) or 1
    share = max(0, used - quota.nominal) / pool / quota.weight
    return (borrowing, -quota.priority, share, d.waiting_since, d.workload)


def _grow(d: Demand, state: _State) -> Grant:
    quota = state.quotas[d.tenant]
    room = available(quota, state.cohort_of(d.tenant), state.usage)
    fits = min(d.wanted - d.current, room // d.gpus_per_replica)
    state.usage[d.tenant] += fits * d.gpus_per_replica
    if d.current + fits == d.wanted:
        return Grant(d.workload, d.wanted)
    used = state.usage[d.tenant]
    return Grant(d.workload, d.current + fits, "cut", f"blocked by quota: {quota.describe(used)}")


def _reclaim(
    unmet: list[Demand], demands: list[Demand], grants: dict[int, Grant], state: _State
) -> None:
    by_id = {d.workload: d for d in demands}
    for d in unmet:
        quota = state.quotas[d.tenant]
        used = state.usage[d.tenant]
        if quota.cohort is None or used >= quota.nominal:
            continue
        missing = (grants[d.workload].replicas, d.wanted)
        need = min((missing[1] - missing[0]) * d.gpus_per_replica, quota.nominal - used)
        victims = [
            v
            for v in demands
            if v.tenant != d.tenant
            and state.quotas.get(v.tenant) is not None
            and state.quotas[v.tenant].cohort == quota.cohort
        ]
        victims.sort(key=lambda v: (state.quotas[v.tenant].priority, -v.grown_at, v.workload))
        for victim in victims:
            if need <= 0:
                break
            need -= _take_back(by_id[victim.workload], grants, state, need, d.tenant)


def _take_back(
    victim: Demand, grants: dict[int, Grant], state: _State, need: int, for_tenant: str
) -> int:
    """Shrink one borrower's workload by up to ``need`` GPUs; returns GPUs freed."""
    quota = state.quotas[victim.tenant]
    over = state.usage[victim.tenant] - quota.nominal
    granted = grants[victim.workload].replicas
    spare = granted - victim.minimum
    gpr = victim.gpus_per_replica
    replicas = min(spare, over // gpr, -(-need // gpr))
    if replicas <= 0:
        return 0
    state.usage[victim.tenant] -= replicas * gpr
    reason = (
        f"reclaimed by quota: {replicas * gpr} {quota.gpu_type} GPUs returned to {for_tenant} "
        f"(at or under its nominal); {quota.describe(state.usage[victim.tenant])}"
    )
    grants[victim.workload] = Grant(victim.workload, granted - replicas, "reclaimed", reason)
    return replicas * gpr
