"""Quota maths: Kueue's cohort examples (docs/concepts/cluster_queue.md, "Borrowing example",
"BorrowingLimit", and the lendingLimit KEP-1224), written from our rules, with GPUs for CPUs,
plus the allocation order, reclaim, and a stateful property test."""

from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from quotas.maths import Demand, TenantQuota, allocate, available, cohort_pool, usage_of

A100 = "A100-80GB"


def team(name, nominal, borrowing=None, lending=None, priority=0, weight=1.0):
    return TenantQuota(name, A100, nominal, borrowing, lending, "org", priority, weight)


def test_kueue_borrowing_example_team_a_takes_all_idle_quota():
    a, b = team("team-a", 9), team("team-b", 12)
    assert available(a, [a, b], {}) == 21  # 12 + 9 when team-b is idle
    # team-b still gets its nominal back first: its request is within nominal.
    grants = allocate(
        {"team-a": a, "team-b": b},
        [Demand(1, "team-a", 1, current=9, wanted=15), Demand(2, "team-b", 1, 0, 12)],
    )
    assert grants[2].replicas == 12
    assert grants[1].replicas == 9 and grants[1].kind == "cut"
    assert grants[1].reason == (
        "team-a uses 9 A100-80GB GPUs of its nominal 9; nothing left to borrow: the cohort "
        "org's unused nominal is 0"
    )


def test_kueue_borrowing_limit_example():
    a, b = team("team-a", 9, borrowing=1), team("team-b", 12)
    assert available(a, [a, b], {}) == 10  # 9 + 1
    assert available(b, [a, b], {}) == 21  # no limit: 12 + 9


def test_lending_limit_keeps_a_private_part():
    a, b = team("team-a", 9), team("team-b", 12, lending=1)
    assert b.private == 11
    assert available(a, [a, b], {}) == 10  # 9 + the 1 team-b lends
    assert cohort_pool([a, b], {}) == (10, 0)
    # team-a cannot reach team-b's private 11 even when team-b is idle.
    grants = allocate({"team-a": a, "team-b": b}, [Demand(1, "team-a", 1, 0, 20)])
    assert grants[1].replicas == 10


def test_outside_a_cohort_nominal_is_the_limit():
    solo = TenantQuota("solo", A100, 4)
    assert available(solo, [solo], {"solo": 3}) == 1
    grants = allocate({"solo": solo}, [Demand(1, "solo", 2, current=1, wanted=4)])
    assert grants[1].replicas == 2 and grants[1].kind == "cut"


def test_no_quota_means_no_limit():
    grants = allocate({}, [Demand(1, "free", 1, current=1, wanted=50)])
    assert grants[1].replicas == 50


def test_usage_split_borrowed_and_lent():
    a, b = team("team-a", 4), team("team-b", 8)
    used = {"team-a": 7, "team-b": 2}
    ua, ub = usage_of(a, [a, b], used), usage_of(b, [a, b], used)
    assert (ua.used, ua.borrowed, ua.lent) == (7, 3, 0)
    assert (ub.used, ub.borrowed, ub.lent) == (2, 0, 3)
    assert ua.available == 12 - 9 and ub.available == 3


def test_requests_within_nominal_go_first_then_priority_then_fair_share():
    quotas = {
        "low": team("low", 2, priority=0),
        "high": team("high", 2, priority=5),
        "owner": team("owner", 4),
    }
    demands = [
        Demand(1, "low", 1, current=2, wanted=4, waiting_since=1),  # borrowing
        Demand(2, "high", 1, current=2, wanted=4, waiting_since=2),  # borrowing, higher prio
        Demand(3, "owner", 1, current=2, wanted=4, waiting_since=3),  # within nominal
    ]
    grants = allocate(quotas, demands)
    # pool 8, used 6: owner (within nominal) gets 2, then high takes nothing left.
    assert grants[3].replicas == 4
    assert grants[2].replicas == 2 and grants[1].replicas == 2
    quotas["owner"] = team("owner", 6)
    grants = allocate(quotas, demands)  # pool 10, used 6: owner +2, then high +2, low none
    assert (grants[3].replicas, grants[2].replicas, grants[1].replicas) == (4, 4, 2)


def test_reclaim_from_borrowers_lowest_priority_most_recent_first():
    quotas = {"lender": team("lender", 6), "a": team("a", 1, priority=1), "b": team("b", 1)}
    demands = [
        Demand(1, "lender", 1, current=2, wanted=6),
        Demand(2, "a", 1, current=3, wanted=3, minimum=1, grown_at=50),
        Demand(3, "b", 1, current=3, wanted=3, minimum=1, grown_at=10),
        Demand(4, "b", 1, current=0, wanted=0, grown_at=99),
    ]
    grants = allocate(quotas, demands)
    assert grants[1].replicas == 2 and grants[1].kind == "cut"  # nothing free this tick
    # b (priority 0) gives back first, down to its nominal 1 (2 GPUs), then a gives 2.
    assert (grants[3].replicas, grants[3].kind) == (1, "reclaimed")
    assert (grants[2].replicas, grants[2].kind) == (1, "reclaimed")
    assert grants[3].reason == (
        "lender needs its own nominal back: b borrowed beyond its nominal 1 A100-80GB GPUs "
        "and returns 2"
    )


def test_nobody_at_or_under_nominal_is_reclaimed_from_and_minimums_hold():
    quotas = {"lender": team("lender", 4), "borrower": team("borrower", 2)}
    demands = [
        Demand(1, "lender", 1, current=0, wanted=4),
        Demand(2, "borrower", 1, current=4, wanted=4, minimum=3),
    ]
    grants = allocate(quotas, demands)
    assert grants[2].replicas == 3  # never below its policy minimum
    quotas = {"lender": team("lender", 4), "other": team("other", 4)}
    grants = allocate(quotas, [Demand(1, "lender", 1, 0, 8), Demand(2, "other", 1, 4, 4)])
    assert grants[2].kind == "ok" and grants[2].replicas == 4


def test_a_lowered_quota_blocks_growth_but_kills_nothing():
    quotas = {"t": team("t", 2, borrowing=0), "u": team("u", 2)}
    grants = allocate(quotas, [Demand(1, "t", 1, current=5, wanted=6)])
    assert grants[1].replicas == 5 and grants[1].kind == "cut"


def test_excess_over_a_lowered_quota_is_reclaimed_after_its_grace_period():
    # Quota lowered to 2 + 0 while the team holds 6 GPUs on two workloads.
    lowered = team("t", 2, borrowing=0)
    demands = [
        Demand(1, "t", 1, current=2, wanted=2, minimum=1, grown_at=10),
        Demand(2, "t", 2, current=2, wanted=2, minimum=0, grown_at=50),
    ]
    quotas = {"t": replace(lowered, reclaim_grace_s=600, over_since=1_000.0)}
    waiting = allocate(quotas, demands, now=1_599.0)
    assert [(g.replicas, g.kind) for g in waiting.values()] == [(2, "ok"), (2, "ok")]
    due = allocate(quotas, demands, now=1_600.0)
    # 4 GPUs over: the most recently grown workload (2 GPUs per replica) goes first.
    assert (due[2].replicas, due[2].kind) == (0, "reclaimed")
    assert (due[1].replicas, due[1].kind) == (2, "ok")  # 2 GPUs left: within the quota
    assert due[2].reason == (
        "t held 6 A100-80GB GPUs, over its lowered quota of 2, for 600 s "
        "(reclaim grace 600 s): 4 GPUs returned"
    )


def test_excess_reclaim_keeps_policy_minimums_and_needs_a_grace_period():
    demands = [Demand(1, "t", 1, current=5, wanted=5, minimum=4)]
    at_once = {"t": TenantQuota("t", A100, 2, reclaim_grace_s=0)}  # outside a cohort: N
    assert allocate(at_once, demands, now=5.0)[1].replicas == 4  # not below min 4
    never = {"t": TenantQuota("t", A100, 2, over_since=0.0)}  # no grace period: never
    assert allocate(never, demands, now=1e9)[1].replicas == 5
    within = {"t": TenantQuota("t", A100, 8, reclaim_grace_s=0)}
    assert allocate(within, demands, now=5.0)[1].kind == "ok"  # not over: nothing to do


def test_max_replicas_per_workload():
    quota = TenantQuota("t", A100, 100, max_replicas_per_workload=3)
    grants = allocate({"t": quota}, [Demand(1, "t", 1, current=1, wanted=10)])
    assert grants[1].replicas == 3


class QuotaMachine(RuleBasedStateMachine):
    """Random quota edits, demand changes and ticks; the invariants hold after every step."""

    TENANTS = ("t0", "t1", "t2")

    @initialize(
        nominals=st.lists(st.integers(0, 8), min_size=3, max_size=3),
        priorities=st.lists(st.integers(0, 3), min_size=3, max_size=3),
    )
    def start(self, nominals, priorities):
        self.quotas = {
            name: team(name, n, priority=p)
            for name, n, p in zip(self.TENANTS, nominals, priorities, strict=True)
        }
        # Each tenant runs two workloads: one of 1 GPU per replica, one of 2.
        self.current = {(name, k): 0 for name in self.TENANTS for k in (1, 2)}
        self.wanted = dict(self.current)
        self.minimum = dict.fromkeys(self.current, 0)
        self.before = dict.fromkeys(self.TENANTS, 0)
        self.at_tick = dict(self.quotas)  # the quotas the last tick allocated with
        self.last_grants = {}
        self.time = 0.0
        self.over_since: dict[str, float | None] = dict.fromkeys(self.TENANTS)
        self.floors = dict(self.minimum)

    def used(self, tenant):
        return sum(n * k for (t, k), n in self.current.items() if t == tenant)

    def usage(self):
        return {t: self.used(t) for t in self.TENANTS}

    @rule(
        name=st.sampled_from(TENANTS),
        nominal=st.integers(0, 8),
        borrowing=st.none() | st.integers(0, 6),
        lending=st.none() | st.integers(0, 8),
        grace=st.none() | st.integers(0, 3),
    )
    def edit_quota(self, name, nominal, borrowing, lending, grace):
        lending = None if lending is None else min(lending, nominal)
        edited = team(name, nominal, borrowing, lending, self.quotas[name].priority)
        self.quotas[name] = replace(edited, reclaim_grace_s=grace)

    @rule(
        key=st.sampled_from([(t, k) for t in TENANTS for k in (1, 2)]),
        wanted=st.integers(0, 10),
        minimum=st.integers(0, 2),
    )
    def change_demand(self, key, wanted, minimum):
        self.wanted[key] = wanted
        self.minimum[key] = min(minimum, wanted)

    @rule()
    def tick(self):
        self.time += 1
        self.before = {t: self.used(t) for t in self.TENANTS}
        for t, quota in self.quotas.items():  # the grace clock, as the loop keeps it
            over = quota.ceiling is not None and self.before[t] > quota.ceiling
            self.over_since[t] = (self.over_since[t] or self.time) if over else None
        self.at_tick = {
            t: replace(q, over_since=self.over_since[t]) for t, q in self.quotas.items()
        }
        keys = sorted(self.current)
        self.floors = {key: min(self.minimum[key], self.current[key]) for key in keys}
        demands = [
            Demand(
                i,
                t,
                k,
                self.current[(t, k)],
                self.wanted[(t, k)],
                self.floors[(t, k)],
                grown_at=self.time,
            )
            for i, (t, k) in enumerate(keys)
        ]
        grants = allocate(self.at_tick, demands, now=self.time)
        self.last_grants = {keys[g.workload]: g for g in grants.values()}
        for key, grant in self.last_grants.items():
            self.current[key] = grant.replicas

    # Quotas may be lowered below usage (nothing running is killed), so the invariants are
    # about what the last tick granted, under the quotas it allocated with.
    @invariant()
    def growth_stays_within_nominal_plus_borrowing(self):
        for t in self.TENANTS:
            ceiling = self.at_tick[t].ceiling
            if ceiling is not None and self.used(t) > self.before.get(t, 0):
                assert self.used(t) <= ceiling

    @invariant()
    def nobody_uses_another_tenants_private_part(self):
        # Growth never takes from a private part: pool use stays within the pool (or, after
        # a lending limit was lowered under borrowers, does not get worse).
        size, pool_after = cohort_pool(self.at_tick.values(), self.usage())
        _, pool_before = cohort_pool(self.at_tick.values(), self.before)
        assert pool_after <= max(size, pool_before)

    @invariant()
    def nobody_at_or_under_nominal_is_reclaimed_from(self):
        reclaimed: dict[str, list[str]] = {}
        for (t, _), grant in self.last_grants.items():
            if grant.kind == "reclaimed":
                reclaimed.setdefault(t, []).append(grant.reason)
        for t, reasons in reclaimed.items():
            assert self.before[t] > self.at_tick[t].nominal
            if any(r.startswith(f"{t} held ") for r in reasons):
                # Over its own ceiling past the grace: whole replicas, most recently grown
                # first, may take back less than one replica of its largest GPUs-per-replica
                # more than the excess (also after a cohort reclaim in the same tick).
                ceiling = self.at_tick[t].ceiling
                assert ceiling is not None and self.before[t] > ceiling
                largest = max(gpus for tenant, gpus in self.current if tenant == t)
                assert self.used(t) > ceiling - largest
            else:
                assert self.used(t) >= self.at_tick[t].nominal

    @invariant()
    def excess_past_its_grace_is_reclaimed_down_to_minimums(self):
        for t, quota in self.at_tick.items():
            if quota.ceiling is None or not quota.reclaims_excess(self.time):
                continue
            at_floor = all(n == self.floors[key] for key, n in self.current.items() if key[0] == t)
            assert self.used(t) <= quota.ceiling or at_floor

    @invariant()
    def cohort_usage_never_exceeds_its_capacity_through_growth(self):
        capacity = sum(q.nominal for q in self.at_tick.values())
        assert sum(self.usage().values()) <= max(capacity, sum(self.before.values()))


QuotaMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
test_quota_invariants = QuotaMachine.TestCase
