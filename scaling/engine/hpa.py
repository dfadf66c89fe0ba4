"""`hpa`: the Kubernetes Horizontal Pod Autoscaler, autoscaling/v2 with `behavior`.

Anchor: kubernetes.io "Horizontal Pod Autoscaling" (algorithm details, configurable scaling
behavior) and the HPA controller's replica calculator (pkg/controller/podautoscaler).

Rules, in order:
1. Current count outside [min, max] goes straight to the nearest bound (no metric needed).
2. Replica calculation.
   - "average": usage ratio = mean(per-pod value) / target; desired = ceil(ratio x pods with
     a metric). With only an aggregated series, the latest point is the mean and the ready
     count is the pod count.
   - "total": ratio = total / (target x current); desired = ceil(total / target)
     (the External/AverageValue form; from zero replicas, ceil(total / target) directly).
     Summed from per-pod samples, the total is unknown (hold) while any ready pod has no
     fresh sample: a partial sum would read that pod as zero.
3. Tolerance: no change when |ratio - 1| <= tolerance (0.1; up and down may differ).
4. Missing and not-ready pods (per-pod samples only): pods with no fresh metric count as
   100 % of target when scaling down and 0 % when scaling up; not-ready (warming) pods are
   left out, and count as 0 % when scaling up. Recompute; keep the current count if the new
   ratio is within tolerance, flips direction, or the new count goes the other way.
5. Stabilisation (behavior defaults: up 0 s, down 300 s; highest recommendation in the
   down window, lowest in the up window). A fresh memory starts the down window with the
   current count, as the controller does, so a restart does not scale down at once.
6. Rate limits per period from the scale events in memory: up max(100 %, 4 pods) per 15 s,
   down 100 % per 15 s (selectPolicy Max).
The shared guards then apply min/max and the quota.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .behavior import HPA_BEHAVIOR_DEFAULTS, rate_limit, stabilise
from .explain import replicas_text
from .guards import ceil_replicas
from .types import (
    METRIC,
    Algorithm,
    Memory,
    MetricValue,
    Observation,
    Params,
    PodSample,
    PodState,
    PolicyParams,
    Proposal,
    Signal,
    Step,
)

DEFAULTS: dict[str, float] = {
    "scale_up_tolerance": 0.1,
    "scale_down_tolerance": 0.1,
    **HPA_BEHAVIOR_DEFAULTS,
}


@dataclass(frozen=True)
class Calculation:
    """The replica calculator's answer: replicas, the usage it saw, and what happened."""

    replicas: int
    usage: float
    note: str
    values: tuple[MetricValue, ...]


def within_tolerance(ratio: float, p: Params) -> bool:
    tolerance = p["scale_up_tolerance"] if ratio > 1 else p["scale_down_tolerance"]
    return abs(ratio - 1.0) <= tolerance


def fresh_samples(policy: PolicyParams, obs: Observation) -> dict[str, PodSample]:
    """Per-pod samples young enough to use; older ones make their pod "missing"."""
    return {s.pod: s for s in obs.samples if obs.now - s.timestamp <= policy.max_metric_age_s}


def signals(policy: PolicyParams, p: Params, obs: Observation) -> tuple[Signal, ...]:
    if obs.samples:
        points = tuple((s.timestamp, s.value) for s in obs.samples)
        return (Signal(f"{policy.metric} (per pod)", points, policy.max_metric_age_s),)
    return (Signal(policy.metric, obs.series, 0.0),)


def _pods(obs: Observation) -> tuple[PodState, ...]:
    if obs.pods:
        return obs.pods
    return tuple(PodState(s.pod, ready=True) for s in obs.samples)


def _mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def per_pod_replicas(policy: PolicyParams, p: Params, obs: Observation) -> Calculation:
    """The replica calculator for per-pod values, with its missing/unready-pod rules."""
    fresh = fresh_samples(policy, obs)
    metrics: dict[str, float] = {}
    unready: list[str] = []
    missing: list[str] = []
    for pod in _pods(obs):
        if not pod.ready:
            unready.append(pod.name)
        elif pod.name in fresh:
            metrics[pod.name] = fresh[pod.name].value
        else:
            missing.append(pod.name)
    values = tuple(
        MetricValue(policy.metric, fresh[n].value, fresh[n].timestamp, n) for n in metrics
    )
    if not metrics:
        return Calculation(obs.current, math.nan, "no fresh metric for any ready pod", values)
    usage = _mean(metrics)
    ratio = usage / policy.target_value
    rebalance = bool(unready) and ratio > 1
    if not rebalance and not missing:
        if within_tolerance(ratio, p):
            return Calculation(obs.current, usage, "within tolerance", values)
        return Calculation(ceil_replicas(ratio * len(metrics)), usage, "", values)
    filled = dict(metrics)
    for name in missing:
        filled[name] = policy.target_value if ratio < 1 else 0.0
    if rebalance:
        filled.update(dict.fromkeys(unready, 0.0))
    new_ratio = _mean(filled) / policy.target_value
    detail = f"{len(missing)} missing, {len(unready) if rebalance else 0} not-ready counted"
    if within_tolerance(new_ratio, p) or (ratio < 1 < new_ratio) or (ratio > 1 > new_ratio):
        return Calculation(obs.current, usage, f"{detail}: no change after recount", values)
    replicas = ceil_replicas(new_ratio * len(filled))
    if (new_ratio < 1 and replicas > obs.current) or (new_ratio > 1 and replicas < obs.current):
        return Calculation(obs.current, usage, f"{detail}: direction flipped, no change", values)
    return Calculation(replicas, usage, f"{detail} at {new_ratio:.2f} of target", values)


def aggregate_replicas(policy: PolicyParams, p: Params, obs: Observation) -> Calculation:
    """The replica calculator for an aggregated value (latest series point or sample sum)."""
    if obs.samples:
        fresh = fresh_samples(policy, obs)
        # A sum over some of the pods reads the others as zero: too low, and a scale-down
        # that is not there. Incomplete, the total is unknown (the guard holds).
        absent = sorted({p.name for p in _pods(obs) if p.ready} - set(fresh))
        if policy.aggregation == "total" and absent:
            note = (
                f"the total of {policy.metric} is incomplete: no fresh sample from "
                f"{len(absent)} ready pod{'s' if len(absent) > 1 else ''} ({', '.join(absent[:3])}"
                f"{', ...' if len(absent) > 3 else ''})"
            )
            return Calculation(obs.current, math.nan, note, ())
        usage = sum(s.value for s in fresh.values())
        stamp = max((s.timestamp for s in fresh.values()), default=obs.now)
    else:
        stamp, usage = max(obs.series)
    values = (MetricValue(policy.metric, usage, stamp),)
    if policy.aggregation == "total":
        if obs.current == 0:
            return Calculation(
                ceil_replicas(usage / policy.target_value), usage, "from zero", values
            )
        ratio = usage / (policy.target_value * obs.current)
        if within_tolerance(ratio, p):
            return Calculation(obs.current, usage, "within tolerance", values)
        return Calculation(ceil_replicas(usage / policy.target_value), usage, "", values)
    pods = obs.ready if obs.ready > 0 else obs.current
    ratio = usage / policy.target_value
    if within_tolerance(ratio, p):
        return Calculation(obs.current, usage, "within tolerance", values)
    return Calculation(ceil_replicas(ratio * pods), usage, "", values)


def calculate(policy: PolicyParams, p: Params, obs: Observation) -> Calculation:
    if policy.aggregation == "average" and obs.samples:
        return per_pod_replicas(policy, p, obs)
    return aggregate_replicas(policy, p, obs)


def describe(policy: PolicyParams, calc: Calculation) -> str:
    kind = "per replica" if policy.aggregation == "average" else "in total"
    word = "average" if policy.aggregation == "average" else "total"
    relation = "over" if calc.usage > policy.target_value else "under"
    if calc.usage == policy.target_value:
        relation = "at"
    text = (
        f"{word} {policy.metric} {calc.usage:.3g} {kind} {relation} target "
        f"{policy.target_value:g} → {replicas_text(calc.replicas)}"
    )
    return f"{text} ({calc.note})" if calc.note else text


def recommend(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Proposal:
    if not policy.min_replicas <= obs.current <= policy.max_replicas:
        return out_of_bounds(policy, obs, memory)
    calc = calculate(policy, p, obs)
    if math.isnan(calc.usage):
        return Proposal(
            obs.current, None, (), calc.note, calc.values, memory, hold_reason=calc.note
        )
    steps = [Step("replica calculation", calc.replicas, calc.note or "ceil(ratio x pods)")]
    history = memory.recommendations
    if not history and p["scale_down_stabilization_s"] > 0:
        history = ((obs.now, obs.current),)
    stab = stabilise(
        obs.current,
        calc.replicas,
        history,
        obs.now,
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
    )
    limited = rate_limit(obs.current, stab.value, memory.scale_events, obs.now, p)
    steps += [stab.step, limited]
    return Proposal(
        desired=limited.value,
        raw_desired=calc.replicas,
        steps=tuple(steps),
        reason=describe(policy, calc),
        metric_values=calc.values,
        memory=replace(memory, recommendations=stab.recommendations),
    )


def out_of_bounds(policy: PolicyParams, obs: Observation, memory: Memory) -> Proposal:
    """Kubernetes moves an out-of-range count to the bound before looking at metrics."""
    bound = min(max(obs.current, policy.min_replicas), policy.max_replicas)
    note = f"{replicas_text(obs.current)} is outside [{policy.min_replicas}, {policy.max_replicas}]"
    headline = f"min/max: {note} → {replicas_text(bound)}"
    return Proposal(bound, bound, (Step("bounds first", bound, note),), headline, (), memory)


def memory_horizon_s(p: Params) -> float:
    return max(
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
        p["scale_up_period_s"],
        p["scale_down_period_s"],
    )


def history_s(p: Params) -> float:
    """The latest value only (per-pod samples, else the series' newest point)."""
    return 0.0


ALGORITHM = Algorithm(
    "hpa", DEFAULTS, signals, recommend, memory_horizon_s, frozenset({METRIC}), history_s
)
