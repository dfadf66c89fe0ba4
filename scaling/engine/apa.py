"""`apa`: AIBrix's Advanced/Application Pod Autoscaler with fluctuation tolerance.

Anchor: AIBrix docs "Metric-based Autoscaling" (APA) and its implementation
(vllm-project/aibrix, pkg/controller/podautoscaler: `computeTargetReplicas` and the scaling
context defaults: up/down fluctuation tolerance 0.1, max scale-up rate 2, max scale-down
rate 2, scale-up cooldown 0 s, scale-down cooldown 300 s, metric window 60 s).

Rules, in order:
1. use = mean over the metric window of the per-replica value (a pool total is divided by
   the ready count).
2. Tolerance band: scale up only if use / target > 1 + up tolerance; scale down only if
   use / target < 1 - down tolerance; otherwise keep the current count.
3. Proposed count = ceil(current x use / target).
4. Rate per decision: at most ceil(current x max_scale_up_rate) (x2), at least
   floor(current / max_scale_down_rate) (/2).
5. Cooldown: no scale-down within `cooldown_s` of the last scale event (scale-ups have no
   cooldown, as in AIBrix's defaults).
A workload at zero replicas is treated as one for the scale-up rate, so load can restart it.
"""

from __future__ import annotations

from .explain import replicas_text
from .guards import ceil_replicas, floor_replicas
from .series import metric_signal_points, per_replica, used_values
from .types import (
    METRIC,
    Algorithm,
    Memory,
    MetricValue,
    Observation,
    Params,
    PolicyParams,
    Proposal,
    Signal,
    Step,
)

DEFAULTS: dict[str, float] = {
    "scale_up_tolerance": 0.1,
    "scale_down_tolerance": 0.1,
    "max_scale_up_rate": 2.0,
    "max_scale_down_rate": 2.0,
    "cooldown_s": 300.0,
    "stable_window_s": 60.0,
}


def signals(policy: PolicyParams, p: Params, obs: Observation) -> tuple[Signal, ...]:
    return (Signal(policy.metric, metric_signal_points(obs), p["stable_window_s"]),)


def band(ratio: float, current: int, p: Params) -> tuple[int, str]:
    """Steps 2-4: the tolerance band, then the x2 / /2 rate."""
    if ratio > 1 + p["scale_up_tolerance"]:
        base = max(current, 1)
        cap = ceil_replicas(base * p["max_scale_up_rate"])
        proposed = ceil_replicas(base * ratio)
        if proposed > cap:
            return cap, f"scale-up rate x{p['max_scale_up_rate']:g} caps it"
        return proposed, "above the tolerance band"
    if ratio < 1 - p["scale_down_tolerance"]:
        floor = floor_replicas(current / p["max_scale_down_rate"])
        proposed = ceil_replicas(current * ratio)
        if proposed < floor:
            return floor, f"scale-down rate /{p['max_scale_down_rate']:g} floors it"
        return proposed, "below the tolerance band"
    return current, (
        f"inside the tolerance band [{1 - p['scale_down_tolerance']:.2f}, "
        f"{1 + p['scale_up_tolerance']:.2f}]"
    )


def in_cooldown(memory: Memory, now: float, p: Params) -> float | None:
    """Seconds since the last scale event, if that is within the cooldown."""
    if not memory.scale_events:
        return None
    since = now - max(t for t, _ in memory.scale_events)
    return since if since < p["cooldown_s"] else None


def recommend(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Proposal:
    use = per_replica(policy, obs, p["stable_window_s"])
    ratio = use / policy.target_value
    proposed, note = band(ratio, obs.current, p)
    raw = ceil_replicas(max(obs.current, 1) * ratio) if proposed != obs.current else proposed
    steps = [Step("tolerance and rate", proposed, note)]
    desired = proposed
    since = in_cooldown(memory, obs.now, p)
    if proposed < obs.current and since is not None:
        desired = obs.current
        steps.append(
            Step(
                "cooldown",
                desired,
                f"last scale {since:.0f} s ago, scale-down cooldown {p['cooldown_s']:g} s",
            )
        )
    headline = (
        f"average {policy.metric} {use:.3g} per replica is {ratio:.2f} of target "
        f"{policy.target_value:g} → {replicas_text(raw)}"
    )
    values: tuple[MetricValue, ...] = (MetricValue("per-replica mean", use, obs.now),)
    if obs.series:
        values += used_values(policy.metric, obs.series, obs.now, p["stable_window_s"])
    return Proposal(desired, raw, tuple(steps), headline, values, memory)


def memory_horizon_s(p: Params) -> float:
    return max(p["cooldown_s"], p["stable_window_s"])


def history_s(p: Params) -> float:
    """Step 1's metric window."""
    return p["stable_window_s"]


ALGORITHM = Algorithm(
    "apa", DEFAULTS, signals, recommend, memory_horizon_s, frozenset({METRIC}), history_s
)
