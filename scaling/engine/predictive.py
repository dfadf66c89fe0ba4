"""`predictive`: provision ahead of cold start from forecast offered work (ours).

Why offered work and not concurrency: under backlog or long prompts, running/queued request
counts lag and mislead (a saturated pool shows flat concurrency while work piles up; one
12k-token prompt is not one 500-token prompt), so the pool is sized from the tokens/s users
send, turned into replica-seconds via the GPU profile.

Why a burst hold: a replica asked for now serves only after a cold start (60 s by default),
so a burst shorter than that is over before a reaction lands. Only capacity already warm
serves it. The Azure code trace is made of such bursts (idle gaps of minutes ending in
bursts of 10-40 s); chasing them with a forecast misses every burst and pays every cold
start. The hold keeps the pool sized for the largest recent burst instead.

Rules, in order:
1. Demand series, in replicas:
   - with prompt and generation tokens/s and `capacity`: demand = prompt_tps / prefill
     capacity + generation_tps / decode capacity (each replica's share of the second);
   - otherwise (fallback) the policy metric: pool total / target.
2. Smooth: average the demand over buckets of `smoothing_s` (60 s) ending at now, so the
   forecast follows the load, not the noise of single scrapes.
3. Forecast with Holt's linear trend (level + trend per second, alpha 0.5, beta 0.3) over
   the bucket means of the last `history_s` (600 s), refitted each tick from the series (so
   no forecaster state needs storing). Horizon = cold_start_s: a replica asked for now
   serves from then on.
4. Sustained = max(latest bucket mean, level, forecast at now + cold_start_s) + burst_z
   (1.0) x the RMS of the one-step forecast errors: provisioning needs lead time, removal
   does not, so a falling forecast never shrinks the pool early. When the last two demand
   points both exceed the ready replicas (the pool is short now, not for one scrape),
   sustained is at least the lower of them: a minute's mean of a step up is a fraction of
   it, and every tick spent short lengthens the queue a cold start will find. On the
   flash-crowd regime the pool asked for 3, 4, then 5 replicas over 45 s of a crowd of
   ~3.6 replicas of work; this raised attainment 66.7 % -> 70.7 % at the same GPU-hours.
   On the latest point alone it was 72.5 %, but single 5 s spikes on conv then held a
   third replica twice (7 scale events instead of 5, +4 % GPU-hours).
5. Burst hold = peak x share, where peak = the highest single demand point in the last
   `history_s` and share =
   - when the history holds an idle stretch (no demand at all) at least a cold start long
     (bursts end idle gaps, so they land on warm capacity only and their work must fit
     what is held):
     - `burst_share_idle` (1.0) when a burst in the history lasted longer than a cold
       start: that is load the forecast sizes in time (idle-then-burst: doubled, it held 6
       replicas through 8 idle minutes for 2.6 replicas of work);
     - `burst_share_late` (2.0) once TTFT p95 broke `slo_ttft_p95_s` (`late_ttft_s`, 2 s,
       when unset: the back-test's default TTFT bound) in a tick whose queueing delay p95
       broke `late_wait_share` (0.5) of it (`late_from_queueing`: lateness capacity fixes,
       as slo's step 2 reads it; prompts too long for any replica keep TTFT p95 over the
       objective on any pool with nobody queued), in the current burst or the one before
       it (within the history): the pool was too small for a burst this size, and
       bursts grow (the next one may well be larger than any seen; on the code trace they
       went 5, 7, then 12 replicas of demand). Lateness from before the previous burst does
       not count: the pool has been resized since, and such a stale TTFT p95 doubled a
       12-replica burst served on time by 14 replicas into a 24-replica hold;
     - up to `burst_share_late` too while the demand right now exceeds the ready
       replicas: the burst will be late, and doubling it one tick before its TTFT says so
       is one scale event instead of two (the code trace's first burst: 5 -> 11, not
       5 -> 6 -> 11). Continuously (`outgrown_share`): in full once the backlog the
       shortfall piles up over a cold start, spread over the ready replicas, is a wait
       over `late_wait_share` of the objective, in proportion below (at a 60 s cold start
       and 2 s objective, x2 from 1/12 of a replica short per 5 ready: steep because the
       backlog grows for a whole cold start, not a threshold at demand = ready);
     - else `burst_share_idle` (1.0);
   - else `burst_share` (0.5) on steady load, where a peak point is noise around the level
     and its excess spreads over the neighbouring scrapes within the TTFT objective. A late
     TTFT p95 does not double it: on steady load the forecast answers a rise, and a
     30-minute hold of twice one spike doubled the pool (the conversation trace replayed
     from t = 60 s: 5 replicas for the last 27 minutes, 1.94x the oracle, no fewer misses).
   Peak x min(share, 1.0) is remembered, stamped at the peak, for the hold's break-even
   (`burst_hold_s`: 41 cold starts, the ski-rental argument there; Memory.bursts, a
   sliding-window maximum), so the hold outlives the signal history; the late doubling is
   not: it lasts while its evidence (the late TTFT p95 and the peak) is in the history.
   Remembered, a doubled 12-replica burst held 24 replicas for 40 minutes.
6. Required = ceil(max(queue-sized x headroom + backlog, burst hold)), and at least 1
   while any demand was seen in the history (a warm replica through idle gaps: a cold
   start is longer than the bursts that end them). The queueing model sizes the sustained
   load (`queue_sized`); the headroom is corrected from queueing delay on a settled pool
   only (`settled_waits`); the backlog term drains the work already queued
   (`backlog_replicas`).
7. Warming replicas count as capacity on the way: `current` already includes them and they
   are ready within the horizon, so they are not requested again.
8. Scale up fast: no up stabilisation; rate limit max(200 %, 4 pods) per 15 s (the pool may
   triple in one step: a burst hold of 2x a peak that has itself grown is one reaction, and
   splitting it at 100 % costs a second cold start and a scale event; on the code trace a
   late burst took the pool from 6 to 11 replicas in one decision instead of 10 then 11).
   Scale down slowly: highest recommendation in the last 300 s, then 50 % per 60 s. With no
   recommendation remembered (a new policy), the current count counts as one made now: the
   pool shrinks only after a whole window of evidence.

Measured on both Azure traces in docs/backtest.md (bench/bench_backtest.py); the same
defaults serve both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import pairwise
from operator import mul

from .behavior import rate_limit, stabilise
from .explain import duration_text, replicas_text
from .guards import ceil_replicas
from .memo import memoised
from .series import busy_steps, latest, metric_signal_points, totals, values_at
from .types import (
    METRIC,
    OFFERED_WORK,
    TTFT,
    Algorithm,
    Memory,
    MetricValue,
    Observation,
    Params,
    PolicyParams,
    Proposal,
    Series,
    Signal,
    Step,
)

DEFAULTS: dict[str, float] = {
    "scale_up_stabilization_s": 0.0,
    "scale_down_stabilization_s": 300.0,
    "scale_up_max_percent": 200.0,
    "scale_up_max_pods": 4.0,
    "scale_up_period_s": 15.0,
    "scale_down_max_percent": 50.0,
    "scale_down_max_pods": 0.0,
    "scale_down_period_s": 60.0,
    # Not policy fields: the forecaster's constants.
    "history_s": 600.0,
    "smoothing_s": 60.0,
    "alpha": 0.5,
    "beta": 0.3,
    "burst_z": 1.0,
    "burst_share": 0.5,
    "burst_share_idle": 1.0,
    "burst_share_late": 2.0,
    # The burst hold's break-even (step 5): late work a cold start leaves, in cold starts,
    # priced by the objective's percentile (TTFT p95).
    "late_cold_starts": 2.0,
    "objective_percentile": 95.0,
    "late_ttft_s": 2.0,  # the TTFT p95 that counts as late when slo_ttft_p95_s is unset
    # The queueing model (step 6): the mean wait it allows, as a share of the TTFT objective.
    "wait_share": 0.1,
    # The correction (step 6): queueing delay p95 over late_wait_share x TTFT is late, under
    # early_wait_share x TTFT comfortably early; bounds, raise cap and decay of the headroom.
    "late_wait_share": 0.5,
    "early_wait_share": 0.15,
    "headroom_min": 1.0,
    "headroom_max": 3.0,
    "headroom_raise_max": 1.5,
    "headroom_decay_s": 1800.0,
    # The backlog term (step 6): seconds to drain the work already queued.
    "drain_s": 60.0,
}


@dataclass(frozen=True)
class Forecast:
    latest: float
    level: float
    trend_per_s: float
    at_horizon: float
    margin: float
    peak: float = 0.0  # highest raw demand point in the burst hold's window
    peak_at: float = 0.0  # and when it was seen


def uses_offered_work(obs: Observation) -> bool:
    return bool(obs.capacity and obs.prompt_tokens_per_s and obs.generation_tokens_per_s)


def signals(policy: PolicyParams, p: Params, obs: Observation) -> tuple[Signal, ...]:
    if uses_offered_work(obs):
        return (
            Signal("prompt tokens/s", obs.prompt_tokens_per_s, p["history_s"]),
            Signal("generation tokens/s", obs.generation_tokens_per_s, p["history_s"]),
        )
    return (Signal(policy.metric, metric_signal_points(obs), p["history_s"]),)


def smooth(points: Series, now: float, bucket_s: float) -> Series:
    """Step 2: means over buckets of `bucket_s` ending at now, stamped at the bucket end."""
    if bucket_s <= 0:
        return points
    sums: dict[int, list[float]] = {}
    for t, v in points:
        index = math.floor((now - t) / bucket_s) if t < now else 0
        sums.setdefault(index, []).append(v)
    return tuple(
        (now - index * bucket_s, sum(vs) / len(vs))
        for index, vs in sorted(sums.items(), reverse=True)
    )


def demand_series(policy: PolicyParams, obs: Observation, p: Params) -> tuple[Series, str]:
    """Step 1: the demand in replicas over the history window, and how it was derived."""
    start = obs.now - p["history_s"]
    cap = obs.capacity
    if cap is not None and offered_demand(obs):  # the branch ``demand_key`` keys on
        prompt = tuple(sorted(x for x in obs.prompt_tokens_per_s if x[0] >= start)) or (
            latest(obs.prompt_tokens_per_s),
        )
        out = tuple(sorted(obs.generation_tokens_per_s))
        generated = values_at(out, [t for t, _ in prompt])
        points = tuple(
            (t, v / cap.prefill_tokens_per_s + g / cap.decode_tokens_per_s)
            for (t, v), g in zip(prompt, generated, strict=True)
        )
        return points, "offered work (prompt + generation tokens/s over replica capacity)"
    if obs.series:
        pool = totals(policy, obs)
        raw = tuple(sorted(x for x in pool if x[0] >= start)) or (latest(pool),)
        return tuple(
            (t, v / policy.target_value) for t, v in raw
        ), f"{policy.metric} over target (fallback)"
    total = sum(s.value for s in obs.samples)
    return ((obs.now, total / policy.target_value),), f"{policy.metric} over target (fallback)"


def holt(raw: Series, horizon_s: float, now: float, p: Params, peak_s: float) -> Forecast:
    """Steps 2-5: Holt's linear trend on the smoothed series (irregular timestamps, trend
    kept per second), its error margin and the raw peak of the last ``peak_s``."""
    points = smooth(raw, now, p["smoothing_s"])
    level, trend, errors = points[0][1], 0.0, []
    for (t0, _), (t1, y) in pairwise(points):
        dt = t1 - t0
        if dt <= 0:
            continue
        predicted = level + trend * dt
        errors.append(y - predicted)
        new_level = p["alpha"] * y + (1 - p["alpha"]) * predicted
        trend = p["beta"] * (new_level - level) / dt + (1 - p["beta"]) * trend
        level = new_level
    ahead = horizon_s + max(now - points[-1][0], 0.0)
    rms = math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else 0.0
    recent = [(v, t) for t, v in raw if t >= now - peak_s] or [(v, t) for t, v in raw[-1:]]
    peak, peak_at = max(recent)
    return Forecast(
        points[-1][1], level, trend, level + trend * ahead, p["burst_z"] * rms, peak, peak_at
    )


def burst_hold_s(policy: PolicyParams, p: Params) -> float:
    """Step 5's hold: how long replicas kept idle for a burst are worth their GPU time, by
    the break-even (ski-rental) argument. Keeping a replica costs 1 replica-second per
    second. Releasing it and meeting the burst again costs its cold start, billed while
    warming, plus the burst's work it leaves late: for the cold start and about as long
    again draining the backlog built meanwhile (flash-crowd: landed at 560 s, drained by
    ~640 s), `late_cold_starts` (2). Late work is priced by the objective's own tolerance:
    a p95 objective lets 1 request in 20 be late, so a late one weighs 1 / (1 - 0.95) = 20
    on-time ones. Hold = cold start x (1 + 2 x 20) = 41 cold starts (41 min at 60 s): then
    release. Holding for the break-even and then releasing costs at most twice the better
    of the two offline choices (hold through the gap, or release at once), whatever the
    gap to the next burst turns out to be (the deterministic ski-rental bound)."""
    late_weight = 1 / (1 - p["objective_percentile"] / 100)
    return policy.cold_start_s * (1 + p["late_cold_starts"] * late_weight)


def longest_idle_s(points: Series) -> float:
    """The longest stretch of the demand series with no demand at all (seconds from the
    first idle point to the next busy one, or to the last point)."""
    longest, since = 0.0, None
    for t, v in sorted(points):
        if v > 0:
            if since is not None:
                longest = max(longest, t - since)
            since = None
        elif since is None:
            since = t
    if since is not None:
        longest = max(longest, max(t for t, _ in points) - since)
    return longest


def burst_starts(points: Series, idle_s: float) -> list[float]:
    """When each burst began: the first demand point after an idle stretch (no demand at
    all) at least `idle_s` long."""
    starts, since = [], None
    for t, v in sorted(points):
        if v > 0:
            if since is not None and t - since >= idle_s:
                starts.append(t)
            since = None
        elif since is None:
            since = t
    return starts


def longest_busy_s(points: Series) -> float:
    """The longest stretch of the demand series with demand at every point (seconds from
    its first point to its last)."""
    longest, since = 0.0, None
    for t, v in sorted(points):
        if v <= 0:
            since = None
            continue
        since = t if since is None else since
        longest = max(longest, t - since)
    return longest


def burst_share(
    policy: PolicyParams, obs: Observation, p: Params, points: Series
) -> tuple[float, str]:
    """Step 5's share and why: larger after idle gaps, larger still when the current burst
    or the one before it queued requests past half the TTFT objective."""
    if longest_idle_s(points) < policy.cold_start_s:
        return p["burst_share"], "steady load"
    slo = policy.slo_ttft_p95_s if policy.slo_ttft_p95_s is not None else p["late_ttft_s"]
    start = obs.now - p["history_s"]
    starts = burst_starts(points, policy.cold_start_s)
    if len(starts) >= 2:
        start = max(start, starts[-2])  # lateness before the previous burst is answered
    if longest_busy_s(points) > policy.cold_start_s:
        # The doubling is for bursts a cold start cannot answer; one that has lasted longer
        # is load the forecast sizes (idle-then-burst: x2 held 6 replicas for 2.6 of work).
        return p["burst_share_idle"], "bursts end idle gaps; one outlasted a cold start"
    if any(t >= start for t in late_from_queueing(obs, p, slo)):
        return p["burst_share_late"], (
            f"bursts end idle gaps and TTFT p95 broke {slo:g} s with requests queued"
        )
    outgrown = outgrown_share(policy, obs, p, latest(points)[1], slo)
    if outgrown > 0:
        share = p["burst_share_idle"] + (p["burst_share_late"] - p["burst_share_idle"]) * outgrown
        return share, "bursts end idle gaps and this one outgrew the ready pool"
    return p["burst_share_idle"], "bursts end idle gaps longer than a cold start"


def outgrown_share(
    policy: PolicyParams, obs: Observation, p: Params, demand: float, slo: float
) -> float:
    """How far (0-1) a burst of ``demand`` replicas outgrew the ready pool, continuously:
    the backlog it piles up until a replica asked for now serves, (demand - ready) x the
    cold start replica-seconds, is a wait of that over the ready replicas for whoever
    arrives last; over `late_wait_share` of the objective (the late bound of step 6) it
    is late in full. At a 60 s cold start a pool 1/60 short is already late: the step
    from "fits" to "late" is that steep because the backlog grows for a whole cold start,
    not because of a threshold (a burst of 5.14 replicas on 5 ready is 1.68 s late; on 6
    it queues nothing)."""
    short = max(demand - obs.ready, 0.0)
    wait = short * policy.cold_start_s / max(obs.ready, 1)
    return min(1.0, wait / (p["late_wait_share"] * slo))


def late_from_queueing(obs: Observation, p: Params, slo: float) -> list[float]:
    """The ticks whose TTFT p95 broke ``slo`` while their queueing delay p95 broke
    `late_wait_share` of it: lateness capacity fixes (slo's step 2 reads it the same way).
    A prompt too long for the objective is late on any pool with nobody queued; doubling
    for it after every idle gap doubled holds for work no replica serves in time. A tick
    with no queueing delay (vLLM records it only when a request finishes) is not late.
    Queueing alone is not enough either: a wait of half the objective with TTFT on time
    doubled the code trace's 12-replica burst to 24 (11.82 GPU-h from 10.68)."""
    waits = dict(obs.queue_p95_s)
    late_wait = p["late_wait_share"] * slo
    return [t for t, v in obs.ttft_p95_s if v > slo and waits.get(t, 0.0) > late_wait]


def hold_bursts(
    bursts: tuple[tuple[float, float], ...],
    now: float,
    value: float,
    horizon_s: float,
    spacing_s: float,
    at: float | None = None,
) -> tuple[tuple[float, float], ...]:
    """Step 5's memory: a sliding-window maximum of burst holds over `horizon_s`.

    Entries older than the horizon go; so do earlier entries no higher than the new value
    (they can never be the maximum again), so values strictly decrease with time and the
    first entry is the window's maximum. A new value within `spacing_s` of a higher last
    entry is dropped (that entry keeps its time, so a lower value may lapse up to one spacing
    early, never late), so the list holds at most horizon / spacing entries.
    """
    stamp = now if at is None else min(at, now)
    kept = [(t, v) for t, v in bursts if now - horizon_s < t <= now and v > value]
    if kept and stamp - kept[-1][0] < spacing_s:
        # Covered by a higher entry made moments ago: dropped, and that entry keeps its own
        # time. Re-stamping it now (as this once did) renewed it on every tick of a loop
        # faster than the spacing, so a hold never lapsed.
        return tuple(kept)
    if now - stamp >= horizon_s:
        return tuple(kept)
    return (*kept, (max(stamp, kept[-1][0]) if kept else stamp, value))


def dispersion_s(obs: Observation, prefill_tokens_per_s: float, start: float) -> float:
    """E[S^2] / E[S] of one request's prefill time S, from the prompt tokens/s series alone.

    Prompt tokens arriving in a tick of T seconds are a compound Poisson sum: with request
    rate l and prompt length X, the rate x = sum / T has mean l E[X] and variance
    l E[X^2] / T, so Var(x) T / mean(x) = E[X^2] / E[X]. Var(x) is taken from successive
    differences (mean of squared steps / 2), which a slow trend barely moves. A wider spread
    of request sizes at the same mean makes it larger, and with it the queueing delay.
    """
    # Steps between busy neighbours only: one from idle to a burst is a change of level.
    points = sorted(x for x in obs.prompt_tokens_per_s if x[0] >= start)
    gaps, steps, busy = busy_steps(points)
    if not steps or not busy:
        return 0.0
    mean = sum(busy) / len(busy)
    if mean <= 0:
        return 0.0
    tick_s = sorted(gaps)[len(gaps) // 2]
    variance = sum(map(mul, steps, steps)) / len(steps) / 2
    return variance * tick_s / mean / prefill_tokens_per_s


# Past this many replicas of load, the wait is negligible at any realistic spread and the
# search is not worth its time: sized at the load itself.
MAX_QUEUE_MODEL_LOAD = 10_000.0


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang C), via the Erlang B recursion."""
    if load >= servers:
        return 1.0
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b / (1 - (load / servers) * (1 - b))


def mean_wait_s(servers: int, load: float, dispersion: float) -> float:
    """Mean queueing delay in M/G/c by the Allen-Cunneen approximation (Allen, Probability,
    Statistics and Queueing Theory, 1990): Wq = C(c, a) / (c mu - l) x (ca^2 + cs^2) / 2,
    with Poisson arrivals (ca^2 = 1) and E[S](1 + cs^2) = E[S^2] / E[S] = ``dispersion``:
    Wq = C(c, a) x dispersion / (2 c (1 - a / c)). For c = 1 it is Pollaczek-Khinchine."""
    if load >= servers:
        return math.inf
    return erlang_c(servers, load) * dispersion / (2 * servers * (1 - load / servers))


def queue_sized(load: float, dispersion: float, budget_s: float) -> int:
    """The fewest replicas whose mean queueing delay at ``load`` is within ``budget_s``."""
    if not math.isfinite(load) or load > MAX_QUEUE_MODEL_LOAD:
        return math.ceil(load) if math.isfinite(load) else 0  # the replica cap decides
    servers = math.floor(load) + 1
    b = 1.0  # Erlang B, kept by its recursion as servers grows: O(servers) in all
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    while servers < 2 * load + 100:
        waits = b / (1 - (load / servers) * (1 - b))
        if waits * dispersion / (2 * servers * (1 - load / servers)) <= budget_s:
            break
        servers += 1
        b = load * b / (servers + load * b)
    return servers


def settled_since(
    policy: PolicyParams, p: Params, obs: Observation, memory: Memory, late: float
) -> float | None:
    """From when queueing delay (and the latency it adds) describes the pool as it is:
    None while a scale-up is warming; after the last scale-up (or headroom raise) landed,
    a cold start after it was asked for, from when the backlog its cold start left has
    drained (a delay back under ``late``, or `drain_s` after landing at the latest: still
    late then, the pool is short); -inf with no scale-up remembered. The delays of that
    backlog are the backlog term's business (step 6) and say nothing about the queueing
    model: on flash-crowd, learning from them raised x1.16 -> x2.61 and held 14 replicas
    for a load under 1. (The signal is the p95 of requests finished in the tick, so their
    arrival, before t - wait, cannot tell a pre-landing request from a later one: hence
    "drained", not an arrival cut-off.)"""
    if obs.warming > 0:
        return None
    ups = [t for t, change in memory.scale_events if change > 0]
    if memory.headroom_raised_at is not None:
        ups.append(memory.headroom_raised_at)
    if not ups:
        return -math.inf
    landed = max(ups) + policy.cold_start_s
    drained = next(
        (t for t, v in sorted(obs.queue_p95_s) if t >= landed and v <= late),
        landed + p["drain_s"],
    )
    return min(drained, landed + p["drain_s"])


def settled_waits(
    policy: PolicyParams, p: Params, obs: Observation, memory: Memory, late: float
) -> list[float]:
    """The queueing delays (p95 per tick, last `smoothing_s`) since `settled_since`."""
    since = settled_since(policy, p, obs, memory, late)
    if since is None:
        return []
    start = max(since, obs.now - p["smoothing_s"] + 1e-9)
    return [v for t, v in sorted(obs.queue_p95_s) if t >= start]


def corrected_headroom(
    policy: PolicyParams, p: Params, obs: Observation, memory: Memory
) -> tuple[float, float | None, str]:
    """Step 6's correction from the observed queueing delay (p95 over the last minute):
    raise when late on a settled pool (once per cold start plus a minute of evidence),
    decay slowly towards 1 when comfortably early; bounded."""
    slo = policy.slo_ttft_p95_s if policy.slo_ttft_p95_s is not None else p["late_ttft_s"]
    h, raised_at = memory.headroom, memory.headroom_raised_at
    late, early = p["late_wait_share"] * slo, p["early_wait_share"] * slo
    recent = settled_waits(policy, p, obs, memory, late)
    if not recent:
        return h, raised_at, "no queueing delay observed on the settled pool"
    wait = sum(recent) / len(recent)
    if wait > late:
        factor = min(p["headroom_raise_max"], 1 + (wait / late - 1) / 2)
        h = min(p["headroom_max"], max(h * factor, h + 0.1))
        return h, obs.now, f"queueing p95 {wait:.3g} s > {late:.3g} s: raised"
    if wait < early and memory.headroom_at is not None:
        elapsed = max(obs.now - memory.headroom_at, 0.0)
        h = 1 + (h - 1) * math.exp(-elapsed / p["headroom_decay_s"])
    return (
        max(p["headroom_min"], min(h, p["headroom_max"])),
        raised_at,
        f"queueing p95 {wait:.3g} s",
    )


def backlog_replicas(obs: Observation, p: Params, demand: float, slo: float) -> float:
    """Step 6's backlog term: replicas that drain the work already queued.

    A request scheduled now waited ``wait`` (the latest queueing delay p95); in FIFO order
    everything that arrived since is still queued, so the queue holds about
    ``demand x wait`` replica-seconds of work. Draining it within ``drain_s`` takes that
    over ``drain_s`` replicas beyond the arrival rate. It falls to 0 with the delay: the
    extra lasts while the backlog does (then the scale-down window)."""
    waits = [v for t, v in obs.queue_p95_s if t > obs.now - p["smoothing_s"]]
    if not waits or demand <= 0:
        return 0.0
    wait = max(obs.queue_p95_s)[1]
    if wait <= p["late_wait_share"] * slo:
        return 0.0  # within the objective: the queueing model's own business
    return demand * wait / p["drain_s"]


@dataclass(frozen=True)
class Target:
    """Steps 1-6: the replicas the offered work calls for, before stabilisation."""

    raw: int
    predicted: float
    forecast: Forecast
    bursts: tuple[tuple[float, float], ...]
    headroom: float
    headroom_raised_at: float | None
    source: str
    steps: tuple[Step, ...]
    values: tuple[MetricValue, ...]
    decided_by: str = ""  # step 6 in words: which of forecast, burst hold, warm replica won


def decided_by(
    policy: PolicyParams,
    p: Params,
    fc: Forecast,
    remembered: float,
    share: tuple[float, str],
    raw: int,
    sustained: float,
    sizing: tuple[int, float],
) -> str:
    """Which term of step 6 set the count, in an operator's words (no sizing maths here:
    it only compares the terms step 6 took the maximum of: ``sustained`` is the queueing
    model's replicas x headroom, ``sizing`` those two)."""
    held = max(remembered, fc.peak * share[0])
    if max(fc.latest, fc.level, fc.at_horizon) <= 0 and remembered > 0:
        held = max(held, sustained)  # no demand now: what keeps replicas is the burst hold
    if max(sustained, held) <= 0:
        history = duration_text(p["history_s"])
        if raw > 0:
            return f"warm replica: no demand now, some in the last {history}"
        return f"no demand in the last {history}"
    if held >= sustained and remembered >= fc.peak * share[0]:
        return (
            f"burst hold: the largest burst in the last {duration_text(burst_hold_s(policy, p))} "
            f"calls for {replicas_text(remembered)}"
        )
    if held >= sustained:
        return (
            f"burst hold: peak demand {replicas_text(fc.peak)} in the last "
            f"{duration_text(min(burst_hold_s(policy, p), p['history_s']))} x{share[0]:g} "
            f"({share[1]})"
        )
    label, value = max(
        ("demand now", fc.latest),
        ("smoothed demand", fc.level),
        (f"demand forecast at +{duration_text(policy.cold_start_s)} (cold start)", fc.at_horizon),
        key=lambda pair: pair[1],
    )
    sized, headroom = sizing
    return (
        f"forecast: {label} {replicas_text(value)} + error margin {fc.margin:.3g}, "
        f"{replicas_text(sized)} to keep queueing within the objective, headroom x{headroom:.3g}"
    )


@dataclass(frozen=True)
class Outlook:
    """Steps 1-5 and step 6's queueing model and backlog: what the observation and the
    policy's forecasting fields fix, whatever the memory (so the what-if, replaying the same
    observations edit after edit, computes it once per observation: ``outlook``)."""

    points: Series
    source: str
    hold_s: float
    forecast: Forecast
    predicted: float
    share: float
    why_share: str
    slo: float
    spread: float
    sized: int
    backlog: float


# Every parameter ``forecast_outlook`` reads (its memo key, with the policy fields of
# ``outlook_key``).
OUTLOOK_PARAMS = (
    "history_s",
    "smoothing_s",
    "alpha",
    "beta",
    "burst_z",
    "burst_share",
    "burst_share_idle",
    "burst_share_late",
    "late_cold_starts",
    "objective_percentile",
    "late_ttft_s",
    "wait_share",
    "late_wait_share",
    "drain_s",
)


def offered_demand(obs: Observation) -> bool:
    """Whether step 1 reads offered work (else the policy metric over its target)."""
    cap = obs.capacity
    return (
        cap is not None
        and uses_offered_work(obs)
        and cap.prefill_tokens_per_s > 0
        and cap.decode_tokens_per_s > 0
    )


def demand_key(policy: PolicyParams, p: Params, obs: Observation) -> tuple[object, ...]:
    """What ``demand_series`` reads beyond the observation: the metric fallback reads the
    policy's metric, aggregation and target; offered work none of them."""
    if offered_demand(obs):
        return (p["history_s"],)
    return (p["history_s"], policy.metric, policy.aggregation, policy.target)


def outlook_key(policy: PolicyParams, p: Params, obs: Observation) -> tuple[object, ...]:
    return (
        *demand_key(policy, p, obs),
        policy.cold_start_s,
        policy.slo_ttft_p95_s,
        *(p[name] for name in OUTLOOK_PARAMS),
    )


def outlook(policy: PolicyParams, p: Params, obs: Observation) -> Outlook | str:
    """``forecast_outlook``, once per observation and the parameters it reads."""
    return memoised(
        obs,
        "predictive.outlook",
        outlook_key(policy, p, obs),
        lambda: forecast_outlook(policy, p, obs),
    )


def forecast_outlook(policy: PolicyParams, p: Params, obs: Observation) -> Outlook | str:
    """Steps 1-5 and the memory-free terms of step 6, or why there is no forecast."""
    points, source = memoised(
        obs,
        "predictive.demand",
        demand_key(policy, p, obs),
        lambda: demand_series(policy, obs, p),
    )
    hold_s = burst_hold_s(policy, p)
    fc = holt(points, policy.cold_start_s, obs.now, p, hold_s)
    predicted = max(fc.latest, fc.level, fc.at_horizon) + fc.margin
    # Step 4's short pool: the minute's mean lags a step up by up to a minute, and a pool
    # outrun for two scrapes running has no minute to spare. One scrape is not enough: a
    # single spike is absorbed by its neighbours (on conv it cost 2 scale events, +4 %).
    now_demand = min(v for _, v in sorted(points)[-2:])
    if len(points) >= 2 and now_demand > obs.ready:
        predicted = max(predicted, now_demand)
    if math.isnan(predicted) or math.isnan(fc.peak):
        return "forecast is not a number (values too large to extrapolate)"
    share, why_share = burst_share(policy, obs, p, points)
    slo = policy.slo_ttft_p95_s if policy.slo_ttft_p95_s is not None else p["late_ttft_s"]
    cap = obs.capacity
    spread = (
        dispersion_s(obs, cap.prefill_tokens_per_s, obs.now - p["history_s"])
        if (cap is not None and cap.prefill_tokens_per_s > 0 and uses_offered_work(obs))
        else 0.0
    )
    sized = queue_sized(predicted, spread, p["wait_share"] * slo) if predicted > 0 else 0
    backlog = backlog_replicas(obs, p, latest(points)[1], slo)
    return Outlook(
        points, source, hold_s, fc, predicted, share, why_share, slo, spread, sized, backlog
    )


def target(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Target | str:
    """Steps 1-7, or why there is no target (a hold reason)."""
    if not uses_offered_work(obs) and policy.target is None:
        return "no offered work observed, and no target to size the metric against"
    if (
        not uses_offered_work(obs)
        and policy.aggregation == "average"
        and obs.series
        and obs.ready == 0
    ):
        return "no ready replica to turn the per-replica average into demand"
    view = outlook(policy, p, obs)
    if isinstance(view, str):
        return view
    points, source, hold_s, fc = view.points, view.source, view.hold_s, view.forecast
    share, why_share, slo, spread = view.share, view.why_share, view.slo, view.spread
    predicted, sized, backlog = view.predicted, view.sized, view.backlog
    # The memory keeps the peak itself (x1 after idle gaps); the late doubling is evidence
    # from the history and lasts only while that evidence is there.
    bursts = hold_bursts(
        memory.bursts,
        obs.now,
        fc.peak * min(share, p["burst_share_idle"]),
        hold_s,
        p["smoothing_s"],
        fc.peak_at,
    )
    remembered = bursts[0][1] if bursts else 0.0
    held = max(remembered, fc.peak * share)
    headroom, raised_at, why_headroom = corrected_headroom(policy, p, obs, memory)
    raw = ceil_replicas(max(sized * headroom + backlog, held))
    if raw == 0 and any(v > 0 for _, v in points):
        raw = 1  # step 6: keep a warm replica through idle gaps
    steps = (
        Step(
            "forecast",
            raw,
            f"demand now {replicas_text(fc.latest)}, trend "
            f"{fc.trend_per_s * 60:+.3g}/min, at +{policy.cold_start_s:g} s "
            f"{fc.at_horizon:.3g}, error margin {fc.margin:.3g}; queueing model "
            f"{sized} (E[S²]/E[S] {spread:.3g} s, mean wait ≤ {p['wait_share'] * slo:.3g} s), "
            f"headroom x{headroom:.3g} ({why_headroom}); "
            f"backlog +{backlog:.3g} (queued work drained in {p['drain_s']:g} s); "
            f"burst hold {held:.3g}: highest remembered in {burst_hold_s(policy, p):g} s, or "
            f"now peak {fc.peak:.3g} x{share:g} ({why_share})",
        ),
        Step(
            "warming",
            raw,
            f"{obs.ready} ready + {obs.warming} warming of {obs.current} "
            "counted as capacity (warming replicas are ready within the horizon)",
        ),
    )
    values = (
        MetricValue("demand (replicas)", fc.latest, points[-1][0]),
        MetricValue(
            "forecast at cold start (replicas)", fc.at_horizon, obs.now + policy.cold_start_s
        ),
    )
    why = decided_by(
        policy, p, fc, remembered, (share, why_share), raw, sized * headroom, (sized, headroom)
    )
    return Target(raw, predicted, fc, bursts, headroom, raised_at, source, steps, values, why)


def first_recommendations(memory: Memory, obs: Observation) -> tuple[tuple[float, int], ...]:
    """Step 8's evidence rule: with no recommendation remembered (first evaluation, or
    after holds longer than the window), the current count counts as one made now, so the
    pool shrinks only after a whole scale-down window of evidence."""
    return memory.recommendations or ((obs.now, obs.current),)


def recommend(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Proposal:
    aim = target(policy, p, obs, memory)
    if isinstance(aim, str):
        return Proposal(obs.current, None, (), aim, (), memory, hold_reason=aim)
    stab = stabilise(
        obs.current,
        aim.raw,
        first_recommendations(memory, obs),
        obs.now,
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
    )
    limited = rate_limit(obs.current, stab.value, memory.scale_events, obs.now, p)
    headline = f"{aim.decided_by} → {replicas_text(aim.raw)} (demand from {aim.source})"
    return Proposal(
        limited.value,
        aim.raw,
        (*aim.steps, stab.step, limited),
        headline,
        aim.values,
        replace(
            memory,
            recommendations=stab.recommendations,
            bursts=aim.bursts,
            headroom=aim.headroom,
            headroom_raised_at=aim.headroom_raised_at,
            headroom_at=obs.now,
        ),
    )


def memory_horizon_s(p: Params) -> float:
    return max(
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
        p["scale_up_period_s"],
        p["scale_down_period_s"],
    )


def history_s(p: Params) -> float:
    """Steps 1-5 read the demand, its peak and TTFT p95 over `history_s`."""
    return p["history_s"]


ALGORITHM = Algorithm(
    "predictive",
    DEFAULTS,
    signals,
    recommend,
    memory_horizon_s,
    frozenset({METRIC, OFFERED_WORK, TTFT}),
    history_s,
)
