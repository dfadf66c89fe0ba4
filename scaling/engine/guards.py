"""Guards shared by every algorithm, implemented once.

1. Invalid policy (target <= 0, min > max, negative min) -> hold.
2. Bad metrics: empty, NaN, infinite, negative, or the newest point older than
   `max_metric_age_s` at `now` -> hold at the current count (clamped into [min, max]),
   never zero replicas.
3. Float -> int conversion is clamped before `math.ceil`, so a bogus 1.8e19 or +inf cannot
   overflow or escape the rate limits.
4. min <= desired <= max after the algorithm.
5. The quota last: scale-ups never exceed current + headroom; a reclaim caps the count at
   what the quota leaves, below the current count if need be.
6. Scale events come from the observed replica count (`record_observed`), and memory is
   pruned to the longest window in use and capped in length.
"""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise
from operator import itemgetter

from .types import (
    TARGET_OPTIONAL,
    Memory,
    Observation,
    Params,
    PolicyParams,
    QuotaHeadroom,
    Series,
    Signal,
    Step,
)

# Far above any real fleet, small enough that int arithmetic and JSON stay ordinary.
REPLICA_CEILING = 1_000_000
MAX_MEMORY_ENTRIES = 256


def ceil_replicas(value: float, ceiling: int = REPLICA_CEILING) -> int:
    """ceil(value) clamped into [0, ceiling]; NaN counts as 0 (callers vet data first)."""
    if math.isnan(value) or value <= 0:
        return 0
    if value >= ceiling:
        return ceiling
    return math.ceil(value)


def floor_replicas(value: float, ceiling: int = REPLICA_CEILING) -> int:
    if math.isnan(value) or value <= 0:
        return 0
    if value >= ceiling:
        return ceiling
    return math.floor(value)


def resolve_params(policy: PolicyParams, defaults: Params) -> dict[str, float]:
    """Effective values: the policy's field when set, else the algorithm's default."""
    effective: dict[str, float] = {}
    for name, default in defaults.items():
        given = getattr(policy, name, None)
        effective[name] = float(given) if given is not None else float(default)
    return effective


def policy_problem(policy: PolicyParams) -> str | None:
    """Why the policy cannot be evaluated, or None."""
    if policy.target is None:
        if policy.algorithm not in TARGET_OPTIONAL:
            return f"the {policy.algorithm} algorithm needs a target"
    elif not math.isfinite(policy.target) or policy.target <= 0:
        return f"target {policy.target} must be a positive number"
    if policy.min_replicas < 0:
        return f"min_replicas {policy.min_replicas} is negative"
    if policy.min_replicas > policy.max_replicas:
        return f"min_replicas {policy.min_replicas} exceeds max_replicas {policy.max_replicas}"
    if policy.aggregation not in ("average", "total"):
        return f"aggregation {policy.aggregation!r} is not 'average' or 'total'"
    return None


def signal_problem(signal: Signal, now: float, max_age_s: float) -> str | None:
    """Why the data cannot be trusted, or None. Only points inside the lookback are vetted."""
    if not signal.points:
        return f"no data for {signal.label}"
    times = list(map(itemgetter(0), signal.points))
    newest = max(times)
    if not math.isfinite(newest) or now - newest > max_age_s:
        age = now - newest if math.isfinite(newest) else math.inf
        return f"{signal.label} is stale ({age:.0f} s old, max {max_age_s:.0f} s)"
    horizon = now - max(signal.lookback_s, 0.0)
    if _all_sound(signal.points, times, horizon, newest):
        return None
    # Something is wrong: the first bad point in the series' order names the problem.
    for t, v in signal.points:
        if t < horizon and t != newest:
            continue
        if math.isnan(v):
            return f"{signal.label} is NaN"
        if math.isinf(v):
            return f"{signal.label} is infinite"
        if v < 0:
            return f"{signal.label} is negative ({v:g})"
    return None


def _all_sound(points: Series, times: list[float], horizon: float, newest: float) -> bool:
    """Whether every vetted value is finite and not negative, in C-level passes (this runs
    for every signal on every tick, the what-if's replay thousands of times per request): a
    NaN or an infinity makes the sum non-finite, and with all finite the minimum tells."""
    if min(times) >= horizon:  # the usual case: the series is the lookback (NaN: not so)
        values = list(map(itemgetter(1), points))
    else:
        values = [v for t, v in points if not (t < horizon and t != newest)]
    return not values or (math.isfinite(sum(values)) and min(values) >= 0)


def hold_count(policy: PolicyParams, obs: Observation) -> int:
    """Where a hold leaves the workload: its current count, pulled into [min, max]."""
    if policy.min_replicas > policy.max_replicas:
        return max(obs.current, 0)
    return min(max(obs.current, policy.min_replicas), policy.max_replicas)


def apply_bounds(value: int, policy: PolicyParams) -> Step:
    bounded = min(max(value, policy.min_replicas), policy.max_replicas)
    if bounded > value:
        note = f"raised to min_replicas {policy.min_replicas}"
    elif bounded < value:
        note = f"capped at max_replicas {policy.max_replicas}"
    else:
        note = f"within [{policy.min_replicas}, {policy.max_replicas}]"
    return Step("min/max", bounded, note)


def apply_quota(value: int, current: int, quota: QuotaHeadroom | None) -> Step | None:
    """Cap scale-ups at current + headroom. The headroom never forces a scale-down: only a
    reclaim (the quota allocation taking replicas back, `reclaim_to`) does."""
    if quota is None:
        return None
    if quota.reclaim_to is not None:
        return _reclaim(value, quota.reclaim_to, quota.detail)
    allowed = current + max(quota.replicas, 0)
    if value > current and value > allowed:
        room = max(quota.replicas, 0)
        more = f"room for {room} more replica{'' if room == 1 else 's'}"
        return Step("quota", allowed, f"{quota.detail}; {more}" if quota.detail else more)
    detail = f" ({quota.detail})" if quota.detail else ""
    return Step("quota", value, f"within quota headroom {quota.replicas}{detail}")


def _reclaim(value: int, reclaim_to: int, detail: str) -> Step:
    keep = max(reclaim_to, 0)
    if value > keep:
        return Step("reclaim", keep, detail or f"the quota leaves room for {keep}")
    return Step("reclaim", value, f"within what the quota leaves ({keep})")


def quota_cut(steps: tuple[Step, ...]) -> bool:
    """Whether the quota's growth cap lowered the count (a reclaim is a scale-down)."""
    return any(
        step.name == "quota" and step.value < before.value for before, step in pairwise(steps)
    )


def prune_memory(memory: Memory, now: float, horizon_s: float) -> Memory:
    """Drop entries older than the longest window and keep at most MAX_MEMORY_ENTRIES."""
    cutoff = now - horizon_s
    recs = tuple(r for r in memory.recommendations if cutoff <= r[0] <= now)
    events = tuple(e for e in memory.scale_events if cutoff <= e[0] <= now)
    if (
        len(recs) == len(memory.recommendations) <= MAX_MEMORY_ENTRIES
        and len(events) == len(memory.scale_events) <= MAX_MEMORY_ENTRIES
    ):
        return memory  # nothing to drop (most ticks): no copy (dataclasses.replace is slow)
    return replace(
        memory,
        recommendations=recs[-MAX_MEMORY_ENTRIES:],
        scale_events=events[-MAX_MEMORY_ENTRIES:],
    )


def record_observed(memory: Memory, obs: Observation) -> Memory:
    """Remember a change of the observed replica count as a scale event, for rate-limit
    periods and cooldowns, and the count as seen now.

    The event is dated at the previous tick (`ticked_at`), when the change was asked for, as
    the HPA controller stores its scale event when it writes the scale; the engine then moves
    it with every other clock (freshness.advance). Whatever did not change the count (an apply
    that failed, a dry run, a decision the quota overruled) records nothing.
    """
    seen = memory.observed_replicas
    if obs.current == seen:
        return memory
    if seen is None or memory.ticked_at is None:
        return replace(memory, observed_replicas=obs.current)
    event = (memory.ticked_at, obs.current - seen)
    events = (*memory.scale_events, event)[-MAX_MEMORY_ENTRIES:]
    return replace(memory, scale_events=events, observed_replicas=obs.current)
