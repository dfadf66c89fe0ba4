"""The oracle: a clairvoyant lower bound on the GPU-hours any schedule needs to meet the SLO.

It knows the whole trace in advance and the performance model exactly. The goal is the one a
policy is judged by: at least ``target_attainment`` (99 %) of the trace's feasible requests
within the SLO, so the misses are one budget over the whole trace (1 % of its feasible
requests), spent where they save the most GPU-time. Computed as follows:

1. Cut the replay into windows of ``window_s`` (5 s by default: the back-test's tick, so a
   policy's schedule changes at window edges too).
2. Miss curves: per window w and replica count n, ``m_w(n)`` = the window's feasible
   requests that miss the SLO when the window's requests alone are replayed on n warm,
   empty replicas of the same deployment and routing (run until they finish). With no
   replica, every feasible request that arrives more than the TTFT bound before the
   window's end misses. The fewest n with no miss is found by doubling then bisection; the
   counts below it are filled by splitting (equal ends fill the interval).
3. Choose a count per window by dynamic programming over (window, count): holding n
   replicas costs ``n x window x GPUs``, every replica started after time 0 costs a cold
   start (``cold_start_s x GPUs``: it is billed while it warms), and each miss costs a price
   ``lambda``. Bisecting ``lambda`` finds the cheapest plan whose misses fit the budget
   (its cost is ``schedule_gpu_hours``), and every ``lambda`` tried gives a Lagrangian bound
   ``min_schedule (GPU-s + lambda x misses) - lambda x budget``, which no schedule meeting
   the goal beats; the best of them is ``gpu_hours``.
4. The ceiling is not the policy's ``max_replicas`` unless the caller passes one: without it
   the counts go as high as a window needs. With one, the share of time the schedule sits
   at it is ``capped_share``, and when the goal cannot be met under it the bound is for
   the fewest misses possible (``goal_met`` False, ``bound_attainment`` what it reaches).
5. What is achievable: the plan is replayed through the pool, carry-over included (a
   replica started one cold start ahead of the window that needs it and kept while it
   warms, removals at window edges). While its misses exceed the budget, the windows whose
   requests missed more than they did alone get one replica more (worst first, as many as
   the excess calls for) and it is replayed again (at most ``MAX_REPAIRS`` times). The
   result, ``schedule`` with ``slo_attainment`` and ``replay_gpu_hours`` (drains billed), is
   a schedule the pool really runs: when it meets the goal, the optimum lies between
   ``gpu_hours`` and ``replay_gpu_hours``.

Why it is a lower bound, and under what assumptions. Take any schedule whose ready replica
count changes only at window edges (every policy's does: decisions are taken every tick and
a cold start is a whole number of ticks). Its cost is at least the sum of its counts times
the window length plus one cold start per replica added; in window w its count n_w serves
the window's requests, which can only meet fewer deadlines than alone on n_w warm, empty
replicas (work carried over from earlier windows and later arrivals share the same
replicas; assumed: more work on a replica never makes a request faster, and splitting in
step 2 assumes misses do not grow with n). So its misses are at least sum m_w(n_w), and if
it meets the goal its cost is at least the Lagrangian bound. Carry-over is what makes the
bound optimistic: a window's requests keep their replicas after the window for free in
step 2. Short windows make that matter more (a 5 s window's requests outlive it), which is
why the miss budget is not per window (each short window holding 99 % would overstate the
bound: a window of 30 requests would have to meet all of them) but over the trace, and why
the schedule is replayed and repaired with carry-over in step 5: the truth lies between
``gpu_hours`` and the repaired schedule's replayed cost.

``tests/scaling/test_oracle.py`` checks the bound against every schedule of small random
traces, replayed through the pool; docs/backtest.md has the measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from simulator.replica import ReplicaState, Request

from .deployment import Deployment
from .result import OracleResult, TimelinePoint, downsample
from .slo import Slo, count_attainment

DEFAULT_WINDOW_S = 5.0
# What a replay without an oracle sizes its starting pool for (window_need): the first minute.
START_WINDOW_S = 60.0
DEFAULT_TARGET_ATTAINMENT = 0.99
DRAIN_LIMIT_S = 600.0  # how long a replay waits for in-flight requests after its end
LAMBDA_STEPS = 40  # bisection steps on the price of a miss
MAX_REPAIRS = 40  # replays spent lifting the plan until it meets the goal with carry-over
CURVES_SHARE = 0.6  # of the oracle's progress: the miss curves; the replays take the rest


@dataclass(frozen=True)
class MissCurve:
    """One window's misses by replica count: ``misses[n]`` for n = 0 .. len - 1; past the
    end the last value holds (0 unless the ceiling cut the search)."""

    feasible: int
    misses: tuple[int, ...]

    def at(self, n: int) -> int:
        return self.misses[min(n, len(self.misses) - 1)]


def miss_curve(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    start_s: float,
    window_s: float,
    ceiling: int,
) -> MissCurve:
    """Step 2 for one window."""
    perf = deployment.perf
    feasible = [r for r in requests if slo.feasible(perf, r.input_tokens, r.output_tokens)]
    if not feasible:
        return MissCurve(0, (0,))
    cache = {0: sum(1 for r in feasible if r.arrival_s < start_s + window_s - slo.ttft_s)}

    def misses(n: int) -> int:
        if n not in cache:
            cache[n] = len(feasible) - _met(deployment, slo, requests, start_s, n)
        return cache[n]

    high = 1
    while misses(high) > 0 and high < ceiling:  # doubling, then bisection for the fewest
        high = min(high * 2, ceiling)
    low = high // 2
    while high - low > 1 and misses(high) == 0:
        mid = (low + high) // 2
        if misses(mid) == 0:
            high = mid
        else:
            low = mid
    _fill(misses, cache, 0, high)
    return MissCurve(len(feasible), tuple(cache[n] for n in range(high + 1)))


def _fill(misses: Callable[[int], int], cache: dict[int, int], low: int, high: int) -> None:
    """Misses for every count in [low, high]: an interval whose ends agree takes their value."""
    if high - low <= 1:
        for n in (low, high):
            misses(n)
        return
    if misses(low) == misses(high):
        for n in range(low + 1, high):
            cache.setdefault(n, cache[low])
        return
    mid = (low + high) // 2
    _fill(misses, cache, low, mid)
    _fill(misses, cache, mid, high)


def _met(
    deployment: Deployment, slo: Slo, requests: Sequence[Request], start_s: float, replicas: int
) -> int:
    pool = deployment.new_pool(replicas, now=start_s)
    pool.submit_many(requests)
    pool.advance(requests[-1].arrival_s + DRAIN_LIMIT_S)
    return count_attainment(slo, deployment.perf, requests, pool.completed).met


def window_need(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    start_s: float,
    floor: int,
    ceiling: int,
    target: float = DEFAULT_TARGET_ATTAINMENT,
) -> int:
    """The fewest replicas in [floor, ceiling] that serve one window's requests alone at
    ``target`` (the replay's starting count when no oracle is computed)."""
    curve = miss_curve(deployment, slo, requests, start_s, math.inf, max(ceiling, 1))
    allowed = math.floor((1 - target) * curve.feasible + 1e-9)
    for n in range(floor, ceiling + 1):
        if curve.at(n) <= allowed:
            return n
    return ceiling


def windows(requests: Sequence[Request], end_s: float, window_s: float) -> list[list[Request]]:
    count = max(1, math.ceil(end_s / window_s))
    cut: list[list[Request]] = [[] for _ in range(count)]
    for r in requests:
        cut[min(int(r.arrival_s // window_s), count - 1)].append(r)
    return cut


@dataclass(frozen=True)
class Plan:
    """A schedule of replicas per window, its GPU-seconds (held + cold starts) and the
    misses its windows' curves count; ``bound_s`` is the Lagrangian lower bound found
    with it (``cheapest_schedule``)."""

    counts: tuple[int, ...]
    gpu_s: float
    misses: int
    bound_s: float = 0.0


class _Schedules:
    """Step 3: the cheapest schedule at a given price per miss (dynamic programming)."""

    def __init__(
        self, curves: Sequence[MissCurve], lengths: Sequence[float], floor: int, top: int
    ) -> None:
        self.curves, self.lengths, self.floor, self.top = curves, lengths, floor, top
        # misses per window and count (floor .. top), looked up once per price
        self.table = [[c.at(n) for n in range(floor, top + 1)] for c in curves]

    def cost(self, counts: Sequence[int], start_gpu_s: float, gpus: int) -> float:
        held = sum(n * length for n, length in zip(counts, self.lengths, strict=True)) * gpus
        return held + start_gpu_s * sum(max(0, b - a) for a, b in pairwise(counts))

    def solve(self, price: float, start_gpu_s: float, gpus: int) -> Plan:
        counts = range(self.floor, self.top + 1)
        value = [0.0] * len(counts)
        choices: list[list[int]] = []
        for w, (missed, length) in enumerate(zip(self.table, self.lengths, strict=True)):
            hold = length * gpus
            step = [n * hold + price * m for n, m in zip(counts, missed, strict=True)]
            if w == 0:
                value = step
                continue
            came, value = self._carry(value, start_gpu_s)
            choices.append(came)
            value = [v + s for v, s in zip(value, step, strict=True)]
        best = min(range(len(value)), key=value.__getitem__)
        path = [best]
        for came in reversed(choices):
            path.append(came[path[-1]])
        chosen = tuple(self.floor + i for i in reversed(path))
        misses = sum(c.at(n) for c, n in zip(self.curves, chosen, strict=True))
        return Plan(chosen, self.cost(chosen, start_gpu_s, gpus), misses)

    @staticmethod
    def _carry(value: list[float], start: float) -> tuple[list[int], list[float]]:
        """For each count b: the best previous count a and min_a value[a] + start x (b - a)+,
        in O(counts) with a prefix minimum (a < b) and a suffix minimum (a >= b)."""
        size = len(value)
        suffix_arg = [0] * size
        best = size - 1
        for a in range(size - 1, -1, -1):
            if value[a] < value[best]:
                best = a
            suffix_arg[a] = best
        came, out = [0] * size, [0.0] * size
        prefix = -1  # argmin of value[a] - start x a over a < b
        for b in range(size):
            a = suffix_arg[b]
            came[b], out[b] = a, value[a]
            if prefix >= 0 and value[prefix] + start * (b - prefix) < out[b]:
                came[b], out[b] = prefix, value[prefix] + start * (b - prefix)
            if prefix < 0 or value[b] - start * b < value[prefix] - start * prefix:
                prefix = b
        return came, out


def run_oracle(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    end_s: float,
    *,
    floor: int = 1,
    ceiling: int | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    target: float = DEFAULT_TARGET_ATTAINMENT,
    progress: Callable[[float], None] | None = None,
) -> OracleResult:
    """Steps 1-5. ``ceiling`` None: as many replicas as a window needs; ``floor`` holds
    the oracle to the policy's min_replicas, as every policy is."""
    cut = windows(requests, end_s, window_s)
    search_top = ceiling if ceiling is not None else max(1, len(requests))
    curves = []
    for i, part in enumerate(cut):
        curves.append(miss_curve(deployment, slo, part, i * window_s, window_s, search_top))
        if progress is not None:
            progress(CURVES_SHARE * (i + 1) / len(cut))
    top = max(len(c.misses) - 1 for c in curves)
    if ceiling is not None:
        top = min(top, ceiling)
    top = max(top, floor)  # a ceiling under the floor: the floor wins, as for a policy
    lengths = [min(end_s, (i + 1) * window_s) - i * window_s for i in range(len(cut))]
    feasible = sum(c.feasible for c in curves)
    budget = math.floor((1 - target) * feasible + 1e-9)
    plan = cheapest_schedule(
        curves,
        lengths,
        budget,
        floor=floor,
        top=top,
        gpus=deployment.gpus_per_replica,
        cold_start_s=deployment.cold_start_s,
    )
    counts, replayed = _repair(
        deployment, slo, requests, end_s, plan.counts, curves, window_s, budget, ceiling
    )
    if progress is not None:
        progress(1.0)
    held_s = sum(n * length for n, length in zip(counts, lengths, strict=True))
    at_cap = sum(length for n, length in zip(counts, lengths, strict=True) if n == ceiling)
    return OracleResult(
        window_s=window_s,
        target_attainment=target,
        gpu_hours=plan.bound_s / 3600.0,
        mean_replicas=held_s / end_s if end_s > 0 else 0.0,
        peak_replicas=max(counts, default=0),
        scale_events=replayed.scale_events,
        slo_attainment=replayed.attainment,
        replay_gpu_hours=replayed.billed_gpu_s / 3600.0,
        schedule=counts,
        timeline=downsample(replayed.timeline),
        schedule_gpu_hours=plan.gpu_s / 3600.0,
        ceiling=ceiling,
        capped_share=at_cap / end_s if end_s > 0 else 0.0,
        goal_met=plan.misses <= budget,
        bound_attainment=1 - plan.misses / feasible if feasible else None,
    )


def cheapest_schedule(
    curves: Sequence[MissCurve],
    lengths: Sequence[float],
    budget: int,
    *,
    floor: int,
    top: int,
    gpus: int,
    cold_start_s: float,
) -> Plan:
    """Step 3: bisect the price of a miss. The cheapest plan within ``budget`` misses (or
    the one with the fewest misses when none is), with the best Lagrangian bound."""
    schedules = _Schedules(curves, lengths, floor, top)
    start = cold_start_s * gpus
    plan = schedules.solve(0.0, start, gpus)
    if plan.misses <= budget:  # the cheapest schedule of all meets the goal: exact
        return replace(plan, bound_s=plan.gpu_s)
    # Above this price one miss costs more than any schedule: the fewest misses win.
    high = (top * sum(lengths) * gpus + start * top * len(lengths)) + 1.0
    best = schedules.solve(high, start, gpus)
    budget = max(budget, best.misses)  # out of reach under the ceiling: the fewest misses
    bound = best.gpu_s + high * (best.misses - budget)
    low = 0.0
    for _ in range(LAMBDA_STEPS):
        price = (low + high) / 2
        trial = schedules.solve(price, start, gpus)
        bound = max(bound, trial.gpu_s + price * (trial.misses - budget))
        if trial.misses <= budget:
            high, best = price, trial
        else:
            low = price
    return replace(best, bound_s=min(bound, best.gpu_s))


def _repair(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    end_s: float,
    plan: Sequence[int],
    curves: Sequence[MissCurve],
    window_s: float,
    budget: int,
    ceiling: int | None,
) -> tuple[tuple[int, ...], Replayed]:
    """Step 5: replay the plan with carry-over; while its misses exceed ``budget``, add a
    replica to the windows whose requests missed more than they did alone (the worst
    first, as many as the excess calls for), and replay again. The result is a schedule
    the pool really runs: an upper bound on the optimum when it meets the goal."""
    counts = list(plan)
    replayed = replay_schedule(deployment, slo, requests, end_s, counts, window_s)
    for _ in range(MAX_REPAIRS):
        if sum(replayed.misses) <= budget:
            break
        excess = sorted(
            (
                (missed - curve.at(counts[w]), w)
                for w, (missed, curve) in enumerate(zip(replayed.misses, curves, strict=True))
                if missed > curve.at(counts[w]) and (ceiling is None or counts[w] < ceiling)
            ),
            reverse=True,
        )
        if not excess:
            break
        # The worst windows first, as many as the misses over the budget call for.
        deficit = sum(replayed.misses) - budget
        for extra, w in excess:
            counts[w] += 1
            deficit -= extra
            if deficit <= 0:
                break
        replayed = replay_schedule(deployment, slo, requests, end_s, counts, window_s)
    return tuple(counts), replayed


@dataclass(frozen=True)
class Replayed:
    """A schedule run through the pool, carry-over included."""

    attainment: float | None
    billed_gpu_s: float  # up to the trace's end, warming and draining included
    timeline: list[TimelinePoint]
    scale_events: int
    misses: tuple[int, ...]  # feasible requests that missed the SLO, per window


def replay_schedule(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    end_s: float,
    schedule: Sequence[int],
    window_s: float,
) -> Replayed:
    """Step 5 on the real pool: at every window edge (and one cold start before each) ask
    for the most any window starting within one cold start needs, so a replica started
    for a window is kept while it warms."""
    cold = deployment.cold_start_s

    def wanted(t: float) -> int:
        first = int(t // window_s)
        last = min(len(schedule) - 1, int((t + cold) // window_s))
        return max(schedule[first : last + 1], default=0)

    marks = {i * window_s for i in range(len(schedule))}
    marks |= {i * window_s - cold for i in range(len(schedule)) if i * window_s - cold > 0}
    pool = deployment.new_pool(wanted(0.0))
    pool.submit_many(requests)
    timeline = [TimelinePoint(0.0, wanted(0.0), wanted(0.0))]
    events = 0
    for t in sorted(m for m in marks if 0 < m < end_s):
        pool.advance(t)
        if wanted(t) != timeline[-1].replicas:
            events += 1
            pool.set_replicas(wanted(t), t)
            timeline.append(TimelinePoint(t, wanted(t), pool.count(ReplicaState.READY)))
    pool.advance(end_s)
    billed = pool.gpu_seconds
    pool.advance(end_s + DRAIN_LIMIT_S)
    perf = deployment.perf
    missed = [0] * len(schedule)
    for r in requests:
        missed[min(int(r.arrival_s // window_s), len(missed) - 1)] += slo.feasible(
            perf, r.input_tokens, r.output_tokens
        )
    for c in pool.completed:
        if slo.met(c) and slo.feasible(perf, c.input_tokens, c.output_tokens):
            missed[min(int(c.arrival_s // window_s), len(missed) - 1)] -= 1
    counted = count_attainment(slo, perf, requests, pool.completed)
    return Replayed(counted.attainment, billed, timeline, events, tuple(missed))
