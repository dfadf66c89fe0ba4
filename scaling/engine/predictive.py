"""`predictive`: provision ahead of cold start from forecast offered work (ours).

Why offered work and not concurrency: under backlog or long prompts, running/queued request
counts lag and mislead (a saturated pool shows flat concurrency while work piles up), so the
pool is sized from the tokens/s users send, turned into replica-seconds via the GPU profile.

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
   does not, so a falling forecast never shrinks the pool early.
5. Bursts: peak = the highest single demand point in the last `history_s`, times
   `burst_share` (0.5). Bursts shorter than a cold start cannot be chased, only held for;
   a burst's work may spread over about twice the scrape interval before its first tokens
   are late, hence the share.
6. Required = ceil(max(sustained x headroom (1.1), peak)), and at least 1 while any demand
   was seen in the history (a warm replica through idle gaps: a cold start is longer than
   the bursts that end them).
7. Warming replicas count as capacity on the way: `current` already includes them and they
   are ready within the horizon, so they are not requested again.
8. Scale up fast: no up stabilisation; rate limit max(100 %, 4 pods) per 15 s.
   Scale down slowly: highest recommendation in the last 300 s, then 50 % per 60 s.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, replace
from itertools import pairwise

from .behavior import rate_limit, stabilise
from .guards import ceil_replicas
from .series import latest, metric_signal_points
from .types import (
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
    "scale_up_max_percent": 100.0,
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
    "burst_share_late": 2.0,
    "headroom": 1.1,
}


@dataclass(frozen=True)
class Forecast:
    latest: float
    level: float
    trend_per_s: float
    at_horizon: float
    margin: float
    peak: float = 0.0  # highest raw demand point in the history


def uses_offered_work(obs: Observation) -> bool:
    return bool(obs.capacity and obs.prompt_tokens_per_s and obs.generation_tokens_per_s)


def signals(policy: PolicyParams, p: Params, obs: Observation) -> tuple[Signal, ...]:
    if uses_offered_work(obs):
        return (
            Signal("prompt tokens/s", obs.prompt_tokens_per_s, p["history_s"]),
            Signal("generation tokens/s", obs.generation_tokens_per_s, p["history_s"]),
        )
    return (Signal(policy.metric, metric_signal_points(obs), p["history_s"]),)


def _value_at(ordered: Series, t: float) -> float:
    """Step interpolation over a time-ordered series: the last value at or before t (the
    first, if none)."""
    index = bisect_right(ordered, (t, math.inf))
    return ordered[index - 1][1] if index else ordered[0][1]


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
    if (
        cap is not None
        and uses_offered_work(obs)
        and cap.prefill_tokens_per_s > 0
        and cap.decode_tokens_per_s > 0
    ):
        prompt = tuple(sorted(x for x in obs.prompt_tokens_per_s if x[0] >= start)) or (
            latest(obs.prompt_tokens_per_s),
        )
        out = tuple(sorted(obs.generation_tokens_per_s))
        points = tuple(
            (t, v / cap.prefill_tokens_per_s + _value_at(out, t) / cap.decode_tokens_per_s)
            for t, v in prompt
        )
        return points, "offered work (prompt + generation tokens/s over replica capacity)"
    if obs.series:
        ready = obs.ready if policy.aggregation == "average" else 1
        scale = ready / policy.target
        raw = tuple(sorted(x for x in obs.series if x[0] >= start)) or (latest(obs.series),)
        return tuple((t, v * scale) for t, v in raw), f"{policy.metric} over target (fallback)"
    total = sum(s.value for s in obs.samples)
    return ((obs.now, total / policy.target),), f"{policy.metric} over target (fallback)"


def holt(raw: Series, horizon_s: float, now: float, p: Params) -> Forecast:
    """Steps 2-5: Holt's linear trend on the smoothed series (irregular timestamps, trend
    kept per second), its error margin and the raw peak."""
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
    peak = max(v for _, v in raw)
    return Forecast(points[-1][1], level, trend, level + trend * ahead, p["burst_z"] * rms, peak)


def burst_share(policy: PolicyParams, obs: Observation, p: Params) -> float:
    """Step 5's share: larger once TTFT p95 broke the objective within the history."""
    slo = policy.slo_ttft_p95_s
    start = obs.now - p["history_s"]
    late = slo is not None and any(t >= start and v > slo for t, v in obs.ttft_p95_s)
    return p["burst_share_late"] if late else p["burst_share"]


def recommend(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Proposal:
    if (
        not uses_offered_work(obs)
        and policy.aggregation == "average"
        and obs.series
        and obs.ready == 0
    ):
        why = "no ready replica to turn the per-replica average into demand"
        return Proposal(obs.current, None, (), why, (), memory, hold_reason=why)
    points, source = demand_series(policy, obs, p)
    fc = holt(points, policy.cold_start_s, obs.now, p)
    predicted = max(fc.latest, fc.level, fc.at_horizon) + fc.margin
    if math.isnan(predicted) or math.isnan(fc.peak):
        why = "forecast is not a number (values too large to extrapolate)"
        return Proposal(obs.current, None, (), why, (), memory, hold_reason=why)
    share = burst_share(policy, obs, p)
    raw = ceil_replicas(max(predicted * p["headroom"], fc.peak * share))
    if raw == 0 and any(v > 0 for _, v in points):
        raw = 1  # step 6: keep a warm replica through idle gaps
    steps = [
        Step(
            "forecast",
            raw,
            f"demand now {fc.latest:.3g} replicas, trend "
            f"{fc.trend_per_s * 60:+.3g}/min, at +{policy.cold_start_s:g} s "
            f"{fc.at_horizon:.3g}, error margin {fc.margin:.3g}, headroom x{p['headroom']:g}; "
            f"burst hold {fc.peak * share:.3g} (peak {fc.peak:.3g} x{share:g})",
        ),
        Step(
            "warming",
            raw,
            f"{obs.ready} ready + {obs.warming} warming of {obs.current} "
            "counted as capacity (warming replicas are ready within the horizon)",
        ),
    ]
    stab = stabilise(
        obs.current,
        raw,
        memory.recommendations,
        obs.now,
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
    )
    limited = rate_limit(obs.current, stab.value, memory.scale_events, obs.now, p)
    steps += [stab.step, limited]
    headline = (
        f"{source}: forecast {predicted:.3g} replicas at +{policy.cold_start_s:g} s "
        f"cold start → {raw} replicas"
    )
    values = (
        MetricValue("demand (replicas)", fc.latest, points[-1][0]),
        MetricValue(
            "forecast at cold start (replicas)", fc.at_horizon, obs.now + policy.cold_start_s
        ),
    )
    return Proposal(
        limited.value,
        raw,
        tuple(steps),
        headline,
        values,
        replace(memory, recommendations=stab.recommendations),
    )


def memory_horizon_s(p: Params) -> float:
    return max(
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
        p["scale_up_period_s"],
        p["scale_down_period_s"],
    )


ALGORITHM = Algorithm("predictive", DEFAULTS, signals, recommend, memory_horizon_s)
