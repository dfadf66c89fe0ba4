"""Stabilisation windows and period rate limits, as the Kubernetes HPA `behavior` field defines
them (kubernetes.io, "Horizontal Pod Autoscaling" -> "Configurable scaling behavior", and the
HPA controller's `stabilizeRecommendationWithBehaviors` / `convertDesiredReplicasWithBehaviorRate`).
Shared by `hpa`, `predictive` and `slo`.

Stabilisation:
1. Scale-up window: the lowest recommendation within the window (including this one) is the
   most we may go up to. Scale-down window: the highest recommendation within the window is
   the least we may go down to.
2. The result is the current count pulled into [up bound, down bound]; this tick's raw
   recommendation is remembered.

Rate limits (selectPolicy Max, i.e. the policy allowing the most change wins):
1. For each policy, replicas at period start = current - added + removed during the last
   `period` seconds (from the scale events in memory: the observed changes of the count,
   guards.record_observed, so only what took effect counts).
2. Scale-up limit = max(start + pods, ceil(start * (1 + percent/100))), never below current.
3. Scale-down limit = min(start - pods, floor(start * (1 - percent/100))), never above
   current; a pods value of 0 adds no policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from .guards import REPLICA_CEILING, ceil_replicas, floor_replicas
from .types import Params, Step

# Kubernetes defaults for behavior (autoscaling/v2).
HPA_BEHAVIOR_DEFAULTS: dict[str, float] = {
    "scale_up_stabilization_s": 0.0,
    "scale_down_stabilization_s": 300.0,
    "scale_up_max_percent": 100.0,
    "scale_up_max_pods": 4.0,
    "scale_up_period_s": 15.0,
    "scale_down_max_percent": 100.0,
    "scale_down_max_pods": 0.0,  # Kubernetes sets no Pods policy for scale-down
    "scale_down_period_s": 15.0,
}


@dataclass(frozen=True)
class Stabilised:
    value: int
    recommendations: tuple[tuple[float, int], ...]
    step: Step


def stabilise(
    current: int,
    recommended: int,
    recommendations: tuple[tuple[float, int], ...],
    now: float,
    up_window_s: float,
    down_window_s: float,
) -> Stabilised:
    """Apply both stabilisation windows; return the value and the extended history."""
    up_bound = recommended
    down_bound = recommended
    for t, rec in recommendations:
        if t > now - up_window_s:
            up_bound = min(up_bound, rec)
        if t > now - down_window_s:
            down_bound = max(down_bound, rec)
    value = min(max(current, up_bound), down_bound)
    history = (*recommendations, (now, recommended))
    if value > recommended:
        note = f"highest recommendation in the last {down_window_s:g} s is {down_bound}"
    elif value < recommended:
        note = f"lowest recommendation in the last {up_window_s:g} s is {up_bound}"
    else:
        note = "no earlier recommendation in the windows constrains it"
    return Stabilised(value, history, Step("stabilisation", value, note))


def _change_in_period(
    events: tuple[tuple[float, int], ...], now: float, period_s: float, up: bool
) -> int:
    total = 0
    for t, change in events:
        if t > now - period_s and ((change > 0) == up) and change != 0:
            total += abs(change)
    return total


def period_start(
    current: int, events: tuple[tuple[float, int], ...], now: float, period_s: float
) -> int:
    """Replicas at the start of the period, reconstructed from the scale events."""
    added = _change_in_period(events, now, period_s, up=True)
    removed = _change_in_period(events, now, period_s, up=False)
    return max(current - added + removed, 0)


def scale_up_limit(
    current: int, events: tuple[tuple[float, int], ...], now: float, p: Params
) -> int:
    start = period_start(current, events, now, p["scale_up_period_s"])
    by_pods = start + int(min(p["scale_up_max_pods"], REPLICA_CEILING))
    by_percent = ceil_replicas(start * (1 + p["scale_up_max_percent"] / 100))
    return min(max(by_pods, by_percent, current), REPLICA_CEILING)


def scale_down_limit(
    current: int, events: tuple[tuple[float, int], ...], now: float, p: Params
) -> int:
    start = period_start(current, events, now, p["scale_down_period_s"])
    by_percent = floor_replicas(start * (1 - min(p["scale_down_max_percent"], 100.0) / 100))
    limit = by_percent
    if p["scale_down_max_pods"] > 0:
        limit = min(limit, start - int(min(p["scale_down_max_pods"], REPLICA_CEILING)))
    return min(max(limit, 0), current)


def rate_limit(
    current: int, desired: int, events: tuple[tuple[float, int], ...], now: float, p: Params
) -> Step:
    """Clamp `desired` to what the scale-up / scale-down policies allow this period."""
    if desired > current:
        limit = scale_up_limit(current, events, now, p)
        if desired > limit:
            note = (
                f"scale-up policy allows max({p['scale_up_max_pods']:g} pods, "
                f"{p['scale_up_max_percent']:g} %) per {p['scale_up_period_s']:g} s"
            )
            return Step("rate limit", limit, note)
    elif desired < current:
        limit = scale_down_limit(current, events, now, p)
        if desired < limit:
            note = (
                f"scale-down policy allows {p['scale_down_max_percent']:g} % per "
                f"{p['scale_down_period_s']:g} s"
            )
            return Step("rate limit", limit, note)
    return Step("rate limit", desired, "within the rate limits")
