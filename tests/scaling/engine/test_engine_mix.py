"""The GPU mix: the cheapest replicas per type that serve each request class within its TTFT,
checked against an exhaustive search over every replica count on small cases."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import linprog

from scaling.engine import ReplicaCapacity
from scaling.engine.mix import (
    GpuOption,
    Mix,
    MixMemory,
    RequestClass,
    alternatives,
    buckets_of,
    dwell,
    explain,
    histogram_classes,
    plan,
    restricted,
    routed,
)

FAST = GpuOption("A100-80GB", 4.0, ReplicaCapacity(20_000.0, 2_000.0, 256), 40_000)
SLOW = GpuOption("L4-24GB", 0.8, ReplicaCapacity(3_000.0, 400.0, 256), 6_000)
SHORT = RequestClass("short", 4.0, 500.0, 100.0, 2_000)
LONG = RequestClass("long", 0.5, 20_000.0, 200.0, 30_000)


def test_short_requests_go_to_the_cheaper_type_and_long_ones_to_the_one_that_meets_ttft():
    mix = plan([FAST, SLOW], [SHORT, LONG])
    # long only meets its TTFT on the A100: 0.5/s x (20000/20000 + 200/2000) s = 0.55 busy;
    # the A100's slack to 80 % takes 3.33/s of short (0.075 s each), one L4 the other 0.67/s.
    assert mix.replicas == {"A100-80GB": 1, "L4-24GB": 1}
    assert {k for k, gpu in mix.served if gpu == "L4-24GB"} == {"short"}
    assert mix.served[("long", "A100-80GB")] == pytest.approx(0.5)
    assert mix.served[("short", "A100-80GB")] + mix.served[("short", "L4-24GB")] == pytest.approx(4)
    assert mix.cost_per_hour == pytest.approx(4.0 + 0.8)
    singles = alternatives([FAST, SLOW], [SHORT, LONG])
    # L4s alone cost less ($5.60/h) but serve the long prompts beyond their TTFT: no rival.
    assert singles["L4-24GB"].unserved_per_s == pytest.approx(0.0)
    assert singles["L4-24GB"].beyond_ttft == ("long",)
    assert singles["L4-24GB"].cost_per_hour == pytest.approx(5.6)
    assert (
        explain(mix, singles)
        == "1 x A100-80GB + 1 x L4-24GB: $4.80/h; all A100-80GB would be $8.00/h"
    )


def test_bounds_move_demand_to_the_dearer_type_and_say_what_does_not_fit():
    # 4/s of short requests: 1.67 busy L4s, so 3 L4s ($2.40/h) beat an A100 ($4.00/h)...
    assert plan([FAST, SLOW], [SHORT]).replicas == {"A100-80GB": 0, "L4-24GB": 3}
    # ... but with room for only 2 L4s, the rest needs an A100, which then carries it all.
    two = GpuOption(SLOW.name, 0.8, SLOW.capacity, 6_000, max_replicas=2)
    assert plan([FAST, two], [SHORT]).replicas == {"A100-80GB": 1, "L4-24GB": 0}
    nowhere = plan([GpuOption(FAST.name, 4.0, FAST.capacity, 40_000, max_replicas=0), SLOW], [LONG])
    assert nowhere.replicas["A100-80GB"] == 0 and nowhere.beyond_ttft == ()
    assert nowhere.unserved_per_s == pytest.approx(0.5)
    assert "0.50 req/s do not fit the bounds" in explain(nowhere, {})


def test_no_demand_keeps_the_minimum_at_the_least_cost():
    assert plan([FAST, SLOW], [], min_total=2).replicas == {"A100-80GB": 0, "L4-24GB": 2}
    assert plan([FAST, SLOW], []).text() == "no replicas: $0.00/h"
    with pytest.raises(ValueError):
        plan([], [SHORT])


def exhaustive(options, classes, utilization, min_total) -> tuple[float, float]:
    """(least unserved, least cost) by trying every replica count; each count's best
    assignment of classes to types is a linear program."""
    best: tuple[float, float] | None = None
    ranges = [range(o.min_replicas, o.max_replicas + 1) for o in options]
    for counts in itertools.product(*ranges):
        if sum(counts) < min_total:
            continue
        unserved = least_unserved(options, classes, counts, utilization)
        cost = sum(o.price_per_hour * n for o, n in zip(options, counts, strict=True))
        key = (round(unserved, 6), cost)
        if best is None or key < best:
            best = key
    assert best is not None
    return best


def least_unserved(options, classes, counts, utilization) -> float:
    meets = [[c.longest_prompt_tokens <= o.longest_prompt_tokens for o in options] for c in classes]
    allowed = [
        (t, k)
        for k in range(len(classes))
        for t in range(len(options))
        if meets[k][t] or not any(meets[k])
    ]
    n = len(allowed)
    # maximise what is served: sum of x, each class at most its rate, each type its capacity
    a_ub, b_ub = [], []
    for k, c in enumerate(classes):
        a_ub.append([1.0 if kk == k else 0.0 for _, kk in allowed])
        b_ub.append(c.rate_per_s)
    for t, o in enumerate(options):
        a_ub.append([classes[kk].work_s(o.capacity) if tt == t else 0.0 for tt, kk in allowed])
        b_ub.append(utilization * counts[t])
    found = linprog(-np.ones(n), A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * n)
    assert found.success
    return sum(c.rate_per_s for c in classes) + found.fun


@pytest.mark.parametrize("seed", range(40))
def test_the_mix_is_as_cheap_as_an_exhaustive_search(seed: int):
    rng = random.Random(seed)
    options = [
        GpuOption(
            f"gpu{t}",
            round(rng.uniform(0.5, 5.0), 2),
            ReplicaCapacity(rng.uniform(2_000, 30_000), rng.uniform(300, 3_000), 256),
            rng.choice([4_000, 16_000, 64_000]),
            min_replicas=rng.choice([0, 0, 1]),
            max_replicas=rng.randint(2, 5),
        )
        for t in range(rng.randint(1, 3))
    ]
    classes = [
        RequestClass(
            f"c{k}",
            rng.uniform(0.1, 6.0),
            prompt := rng.uniform(200, 20_000),
            rng.uniform(50, 500),
            int(prompt * rng.uniform(1.0, 3.0)),
        )
        for k in range(rng.randint(1, 3))
    ]
    min_total = rng.choice([0, 1, 2])
    if sum(o.max_replicas for o in options) < min_total:
        return
    mix: Mix = plan(options, classes, utilization=0.8, min_total=min_total)
    unserved, cost = exhaustive(options, classes, 0.8, min_total)
    assert mix.unserved_per_s == pytest.approx(unserved, abs=1e-6)
    assert mix.cost_per_hour == pytest.approx(cost)
    for o in options:
        assert o.min_replicas <= mix.replicas[o.name] <= o.max_replicas


def test_cumulative_buckets_become_counts_per_bucket_with_the_last_beyond_the_bounds():
    cumulative = {"+Inf": 9.0, "1000.0": 2.0, "2000.0": 7.0, "5000.0": 7.0}
    assert buckets_of(cumulative) == ([1000, 2000, 5000], [2.0, 5.0, 0.0, 2.0])
    assert buckets_of({"10.0": 3.0}) == ([10], [3.0, 0.0])  # no +Inf read: none beyond


def test_a_histogram_without_a_prompt_sum_keeps_the_bucket_midpoints():
    classes = histogram_classes((1000, 2000), [2, 2, 0], None, 4.0, 50.0, 9000)
    assert [(c.prompt_tokens, c.shortest_prompt_tokens) for c in classes] == [
        (500, 0),
        (1500, 1000),
    ]


def test_the_reason_names_the_prompts_only_some_types_serve():
    long = replace(LONG, longest_prompt_tokens=30_000, shortest_prompt_tokens=20_000)
    assert restricted([FAST, SLOW], [SHORT, long]) == "prompts over 20k tokens only on A100-80GB"
    assert restricted([FAST, SLOW], [SHORT]) == ""
    assert restricted([FAST, replace(SLOW, max_replicas=0)], [SHORT, long]) == ""  # one offered


def test_the_router_guard_keeps_the_types_an_expected_delay_router_reaches_in_time():
    fast, slow = replace(FAST, step_s=0.013), replace(SLOW, step_s=0.035)
    # 2 s TTFT: 0.5 s left after prefill; 10 tokens x 22 ms more is within it, 100 are not.
    assert routed([fast, slow], "A100-80GB", 10.0, 2.0) == [fast, slow]
    assert routed([fast, slow], "A100-80GB", 100.0, 2.0) == [fast]


def test_a_change_of_types_waits_a_cold_start_unless_it_serves_more():
    memory = MixMemory({"A100-80GB": 2, "L4-24GB": 0}, 2)
    cheap = plan([FAST, SLOW], [SHORT])  # the L4s alone
    assert cheap.replicas == {"A100-80GB": 0, "L4-24GB": 3}
    held, wanted, since = dwell(cheap, [FAST, SLOW], [SHORT], memory, 10.0, 60.0)
    assert held.replicas == {"A100-80GB": 1, "L4-24GB": 0} and (wanted, since) == (
        ("L4-24GB",),
        10.0,
    )
    later = replace(memory, wanted=wanted, wanted_since=since)
    assert dwell(cheap, [FAST, SLOW], [SHORT], later, 70.0, 60.0)[0] == cheap
    # The A100s capped at 0 extra: they cannot hold the demand, so the change does not wait.
    capped = [replace(FAST, max_replicas=0), SLOW]
    assert dwell(cheap, capped, [SHORT], memory, 10.0, 60.0)[0] == cheap
