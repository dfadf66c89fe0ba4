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


def ceiling(nominal: int, borrowing_limit: int | None, in_cohort: bool) -> int | None:
    """Most GPUs a tenant may ever use: N + B in a cohort (None when B is empty: only the
    cohort's pool bounds it), N outside any."""
    if not in_cohort:
        return nominal
    return None if borrowing_limit is None else nominal + borrowing_limit


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
    reclaim_grace_s: float | None = None  # None: usage over the ceiling is never reclaimed
    over_since: float | None = None  # when usage went over the ceiling (the loop observes it)

    def reclaims_excess(self, now: float) -> bool:
        """Whether usage over its ceiling is reclaimed at ``now``: its grace period has run
        since usage went over (a clock not started yet starts now, so 0 reclaims at once)."""
        if self.reclaim_grace_s is None:
            return False
        since = self.over_since if self.over_since is not None else now
        return now - since >= self.reclaim_grace_s

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
        return ceiling(self.nominal, self.borrowing_limit, self.cohort is not None)


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
    members = list(cohort)
    size, pool_used = cohort_pool(members, usage)
    room = max(0, quota.private - used) + max(0, size - pool_used)
    if quota.ceiling is not None:
        room = min(room, max(0, quota.ceiling - used))
    # After a lending limit was lowered, others may still hold GPUs of a private part: what
    # is physically free in the cohort bounds everyone until they are reclaimed.
    capacity = sum(q.nominal for q in members)
    return min(room, max(0, capacity - sum(usage.get(q.tenant, 0) for q in members)))


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


def allocate(
    quotas: dict[str, TenantQuota], demands: list[Demand], now: float = 0.0
) -> dict[int, Grant]:
    """Decide how many replicas each workload of one GPU type may have this tick (``now``).

    1. Shrinking is free: a workload that wants fewer replicas gets them.
    2. Growth is served in order: the parts of requests that stay within their tenant's
       nominal before any borrowing part; within each, higher tenant priority, then lowest
       fair share (borrowed / cohort lendable / weight), then the oldest request, then
       workload id. Each is cut to what fits (whole replicas).
    3. Reclaim: a tenant at or under nominal whose growth was cut takes back from cohort
       members borrowing beyond their nominal: their workloads shrink, lowest priority and
       most recently grown first, never below their policy minimum and never taking a
       borrower below its own nominal. The freed GPUs arrive as those replicas drain; the
       next tick serves the request (within-nominal requests go first).
    4. Excess: a tenant whose usage is over its own ceiling (N + B; N outside a cohort),
       after a quota was lowered, only stops growing, unless its quota has a reclaim grace
       period and usage has been over for all of it: then its workloads shrink back within
       the ceiling, most recently grown first, never below their policy minimum.
    """
    usage: dict[str, int] = defaultdict(int)
    for d in demands:
        usage[d.tenant] += d.current * d.gpus_per_replica
    before = dict(usage)
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
    unmet = _grow(sorted(growing, key=lambda d: _order(d, state)), grants, state)
    _reclaim(unmet, demands, grants, state, before)
    for quota in quotas.values():
        if quota.reclaims_excess(now) and quota.ceiling is not None:
            _reclaim_excess(
                quota, [d for d in demands if d.tenant == quota.tenant], grants, state, now
            )
    return grants


def _capped(demand: Demand, quota: TenantQuota | None) -> int:
    if quota is not None and quota.max_replicas_per_workload is not None:
        return min(demand.wanted, max(demand.current, quota.max_replicas_per_workload))
    return demand.wanted


def _order(d: Demand, state: _State) -> tuple[int, float, float, int]:
    quota = state.quotas[d.tenant]
    pool = sum(q.lendable for q in state.cohort_of(d.tenant)) or 1
    share = max(0, state.usage[d.tenant] - quota.nominal) / pool / quota.weight
    return (-quota.priority, share, d.waiting_since, d.workload)


def _grow(ordered: list[Demand], grants: dict[int, Grant], state: _State) -> list[Demand]:
    """Serve growth in two passes: first every part that keeps its tenant within nominal,
    then the borrowing parts, each pass in the given order. Returns the demands left short.

    Splitting a request matters: a tenant at 5 of its nominal 6 asking for 3 more must get
    its sixth GPU before anyone borrows, or a borrower could keep taking it back.
    """
    granted = {d.workload: d.current for d in ordered}
    for within_nominal in (True, False):
        for d in ordered:
            quota = state.quotas[d.tenant]
            used = state.usage[d.tenant]
            room = available(quota, state.cohort_of(d.tenant), state.usage)
            if within_nominal:
                room = min(room, max(0, quota.nominal - used))
            take = min(d.wanted - granted[d.workload], room // d.gpus_per_replica)
            granted[d.workload] += take
            state.usage[d.tenant] += take * d.gpus_per_replica
    unmet = []
    for d in ordered:
        if granted[d.workload] == d.wanted:
            grants[d.workload] = Grant(d.workload, d.wanted)
            continue
        reason = why_short(state.quotas[d.tenant], state, d.gpus_per_replica)
        grants[d.workload] = Grant(d.workload, granted[d.workload], "cut", reason)
        unmet.append(d)
    return unmet


def why_short(quota: TenantQuota, state: _State, gpus_per_replica: int) -> str:
    """Why a growing workload got no more: the tenant's own limit, or nothing to borrow and
    why (the operator's question after "quota allows 0 more")."""
    used = state.usage[quota.tenant]
    own = f"{quota.tenant} uses {used} {quota.gpu_type} GPUs of its nominal {quota.nominal}"
    if quota.cohort is None:
        return f"{own} and is in no organisation, so it cannot borrow"
    ceiling = quota.ceiling
    if ceiling is not None and used + gpus_per_replica > ceiling:
        return f"{own} plus borrowing limit {quota.borrowing_limit}: at its limit"
    members = state.cohort_of(quota.tenant)
    size, pool_used = cohort_pool(members, state.usage)
    unused = max(0, size - pool_used)
    free = sum(q.nominal for q in members) - sum(state.usage.get(q.tenant, 0) for q in members)
    if free < unused:
        unused = max(0, free)  # lent GPUs not yet reclaimed are still in use
    needs = f", a replica needs {gpus_per_replica}" if unused else ""
    return (
        f"{own}; nothing left to borrow: the cohort {quota.cohort}'s unused nominal is "
        f"{unused}{needs}"
    )


def _reclaim(
    unmet: list[Demand],
    demands: list[Demand],
    grants: dict[int, Grant],
    state: _State,
    before: dict[str, int],
) -> None:
    """Borrowers give back what tenants at or under nominal need. As in Kueue's
    reclaimWithinCohort, only for replicas that fit within the requester's nominal, and only
    from tenants that were borrowing before this tick."""
    for d in unmet:
        quota = state.quotas[d.tenant]
        used = state.usage[d.tenant]
        if quota.cohort is None:
            continue
        replicas = min(
            d.wanted - grants[d.workload].replicas, (quota.nominal - used) // d.gpus_per_replica
        )
        need = replicas * d.gpus_per_replica
        victims = [
            v
            for v in demands
            if v.tenant != d.tenant
            and v.tenant in state.quotas
            and state.quotas[v.tenant].cohort == quota.cohort
            and before[v.tenant] > state.quotas[v.tenant].nominal
        ]
        victims.sort(key=lambda v: (state.quotas[v.tenant].priority, -v.grown_at, v.workload))
        for victim in victims:
            if need <= 0:
                break
            need -= _take_back(victim, grants, state, need, d.tenant, before)


def _take_back(
    victim: Demand,
    grants: dict[int, Grant],
    state: _State,
    need: int,
    for_tenant: str,
    before: dict[str, int],
) -> int:
    """Shrink one borrower's workload by up to ``need`` GPUs (whole replicas, not below its
    policy minimum, not taking its tenant below nominal); returns the GPUs freed."""
    quota = state.quotas[victim.tenant]
    over = min(state.usage[victim.tenant], before[victim.tenant]) - quota.nominal
    granted = grants[victim.workload].replicas
    gpr = victim.gpus_per_replica
    replicas = min(granted - victim.minimum, over // gpr, -(-need // gpr))
    if replicas <= 0:
        return 0
    state.usage[victim.tenant] -= replicas * gpr
    reason = (
        f"{for_tenant} needs its own nominal back: {quota.tenant} borrowed beyond its nominal "
        f"{quota.nominal} {quota.gpu_type} GPUs and returns {replicas * gpr}"
    )
    grants[victim.workload] = Grant(victim.workload, granted - replicas, "reclaimed", reason)
    return replicas * gpr


def _reclaim_excess(
    quota: TenantQuota, mine: list[Demand], grants: dict[int, Grant], state: _State, now: float
) -> None:
    """Step 4: shrink ``quota.tenant``'s workloads until its usage fits its ceiling."""
    assert quota.ceiling is not None
    held = state.usage[quota.tenant]
    over = held - quota.ceiling
    if over <= 0:
        return
    since = now - (quota.over_since if quota.over_since is not None else now)
    for d in sorted(mine, key=lambda d: (-d.grown_at, d.workload)):
        granted = grants[d.workload].replicas
        replicas = min(granted - d.minimum, -(-over // d.gpus_per_replica))
        if replicas <= 0:
            continue
        over -= replicas * d.gpus_per_replica
        state.usage[quota.tenant] -= replicas * d.gpus_per_replica
        reason = (
            f"{quota.tenant} held {held} {quota.gpu_type} GPUs, over its lowered quota of "
            f"{quota.ceiling}, for {since:.0f} s (reclaim grace {quota.reclaim_grace_s:g} s): "
            f"{replicas * d.gpus_per_replica} GPUs returned"
        )
        grants[d.workload] = Grant(d.workload, granted - replicas, "reclaimed", reason)
        if over <= 0:
            return


@dataclass(frozen=True)
class Effect:
    """How a proposed quota change would treat one workload this tick."""

    workload: int
    tenant: str
    wanted: int
    current: int
    before: int  # replicas granted under the current quotas
    after: int  # replicas granted under the proposed ones
    effect: str  # "allowed to grow", "blocked", "reclaimed" or "unchanged"


def preview(
    before: dict[str, TenantQuota],
    after: dict[str, TenantQuota],
    demands: list[Demand],
    at: float = 0.0,
) -> list[Effect]:
    """Run one allocation at ``at`` under the current and the proposed quotas and say, per
    workload, what would change: growth allowed or blocked, replicas reclaimed."""
    now, then = allocate(before, demands, at), allocate(after, demands, at)
    used: dict[str, int] = defaultdict(int)
    for d in demands:
        used[d.tenant] += d.current * d.gpus_per_replica
    effects = []
    for d in demands:
        old, new = now[d.workload], then[d.workload]
        if new.replicas > old.replicas:
            effect = "allowed to grow"
        elif new.replicas < d.current:
            effect = "reclaimed"
        elif over := _over_limit(before.get(d.tenant), after.get(d.tenant), used[d.tenant]):
            effect = over
        elif new.replicas < old.replicas:
            effect = "blocked"
        else:
            effect = "unchanged"
        effects.append(
            Effect(d.workload, d.tenant, d.wanted, d.current, old.replicas, new.replicas, effect)
        )
    return effects


def _over_limit(before: TenantQuota | None, after: TenantQuota | None, used: int) -> str:
    """ "over its new limit of 6 GPUs (uses 8): can no longer grow", or "" when within it.
    A lowered quota without a reclaim grace shrinks nobody, yet its tenant is stuck: say so
    rather than "unchanged"."""
    if after is None or after.ceiling is None or used <= after.ceiling:
        return ""
    new = "new " if before is None or before.ceiling != after.ceiling else ""
    return f"over its {new}limit of {after.ceiling} GPUs (uses {used}): can no longer grow"
