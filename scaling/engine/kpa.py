"""`kpa`: the Knative Pod Autoscaler's stable/panic windows.

Anchor: Knative docs "Configuring the autoscaler" and "Additional autoscaling configuration
for Knative Pod Autoscaler" (config-autoscaler defaults), and knative/serving's autoscaler
decider (`pkg/autoscaler/scaling/autoscaler.go`).

Defaults: stable window 60 s; panic window 10 % of the stable window (6 s); panic threshold
200 %; target utilisation 70 % (per-replica target = policy target x 0.7); max scale-up rate
1000; max scale-down rate 2; scale-to-zero grace period 30 s.

Rules, in order:
1. Observed totals: the mean of the pool-total metric over the stable window and over the
   panic window. A per-replica series is turned into totals point by point, each times the
   pods it averaged over (`Observation.series_pods`), as Knative's scraper multiplies each
   scrape's average per-pod concurrency by the ready pods at that scrape
   (`pkg/autoscaler/metrics/stats_scraper.go`); multiplying the window mean by the ready
   count now would overshoot after every scale-up.
2. desired_stable = ceil(stable_total / per-replica target); desired_panic likewise.
3. Rate limits per tick, relative to ready pods (at least 1): at most
   ceil(max_scale_up_rate x ready), at least floor(ready / max_scale_down_rate).
4. Panic: enter (or extend) when desired_panic / ready >= panic threshold; leave only when
   below the threshold and a whole stable window has passed since it was last crossed.
5. While panicking use max(stable, panic) and never go below the highest count reached in
   this panic (no scale-down while panicking).
6. Scale to zero (min_replicas 0 only): a zero recommendation, meaning no traffic over the
   whole stable window, keeps one replica until the grace period has also passed.
"""

from __future__ import annotations

from dataclasses import replace

from .explain import replicas_text
from .guards import ceil_replicas, floor_replicas
from .memo import memoised
from .series import metric_signal_points, pool_total, used_values
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
    "stable_window_s": 60.0,
    "panic_window_s": 6.0,
    "panic_threshold_percent": 200.0,
    "max_scale_up_rate": 1000.0,
    "max_scale_down_rate": 2.0,
    "scale_to_zero_grace_s": 30.0,
    # Not a policy field: Knative's container-concurrency-target-percentage.
    "target_utilization": 0.7,
}
PANIC_WINDOW_PERCENT = 10.0


def derive(policy: PolicyParams, p: dict[str, float]) -> dict[str, float]:
    """An unset panic window follows the stable window, as Knative's percentage does."""
    if policy.panic_window_s is None:
        p["panic_window_s"] = p["stable_window_s"] * PANIC_WINDOW_PERCENT / 100
    return p


def signals(policy: PolicyParams, p: Params, obs: Observation) -> tuple[Signal, ...]:
    return (Signal(policy.metric, metric_signal_points(obs), p["stable_window_s"]),)


def panic_state(memory: Memory, over: bool, now: float, p: Params) -> Memory:
    """Knative's panicTime: set or extended while over the threshold, cleared a stable
    window after the last crossing."""
    if over:
        return replace(memory, panic_since=now)
    since = memory.panic_since
    if since is not None and since + p["stable_window_s"] < now:
        return replace(memory, panic_since=None, max_panic_pods=0)
    return memory


def scale_to_zero(
    policy: PolicyParams, desired: int, memory: Memory, obs: Observation, p: Params
) -> tuple[int, Memory, Step | None]:
    """Step 6. Already at zero stays at zero: the grace period only delays removing the
    last replica, it never starts one."""
    now = obs.now
    if desired > 0 or policy.min_replicas > 0:
        return desired, replace(memory, zero_since=None), None
    if obs.current == 0:
        return 0, replace(memory, zero_since=None), None
    since = memory.zero_since if memory.zero_since is not None else now
    memory = replace(memory, zero_since=since)
    if now - since < p["scale_to_zero_grace_s"]:
        note = (
            f"no traffic for {now - since:.0f} s of the {p['scale_to_zero_grace_s']:g} s "
            "scale-to-zero grace period"
        )
        return 1, memory, Step("scale-to-zero grace", 1, note)
    return 0, memory, Step("scale-to-zero grace", 0, "grace period over")


def recommend(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Proposal:
    if policy.aggregation == "average" and obs.series and obs.ready == 0:
        why = "no ready replica to turn the per-replica average into a total"
        return Proposal(obs.current, None, (), why, (), memory, hold_reason=why)
    target = policy.target_value * p["target_utilization"]
    stable, panic, values = memoised(
        obs, "kpa.windows", windows_key(policy, p), lambda: windows(policy, obs, p)
    )
    ready = max(obs.ready, 1)
    dspc, dppc = ceil_replicas(stable / target), ceil_replicas(panic / target)
    over = dppc / ready >= p["panic_threshold_percent"] / 100
    memory = panic_state(memory, over, obs.now, p)
    panicking = memory.panic_since is not None
    raw = max(dspc, dppc) if panicking else dspc
    up_cap = ceil_replicas(p["max_scale_up_rate"] * ready)
    down_floor = floor_replicas(ready / p["max_scale_down_rate"])
    limited = min(max(raw, down_floor), up_cap)
    steps = [
        Step(
            "windows",
            raw,
            f"stable {stable:.3g}, panic {panic:.3g} over per-replica target "
            f"{target:.3g}" + (" (panic mode: max of both)" if panicking else ""),
        ),
        Step(
            "rate limit",
            limited,
            f"per tick between {down_floor} and {up_cap} "
            f"(ready {obs.ready}, rates /{p['max_scale_down_rate']:g} / "
            f"x{p['max_scale_up_rate']:g})",
        ),
    ]
    desired = limited
    if panicking:
        desired = max(limited, memory.max_panic_pods)
        memory = replace(memory, max_panic_pods=desired)
        steps.append(Step("panic", desired, "no scale-down while panicking"))
    desired, memory, zero_step = scale_to_zero(policy, desired, memory, obs, p)
    if zero_step is not None:
        steps.append(zero_step)
    mode = "panic" if panicking else "stable"
    headline = (
        f"{mode} mode: total {policy.metric} {stable if not panicking else panic:.3g} "
        f"over per-replica target {target:.3g} → {replicas_text(raw)}"
    )
    return Proposal(desired, raw, tuple(steps), headline, values, memory)


def windows_key(policy: PolicyParams, p: Params) -> tuple[object, ...]:
    """Every field ``windows`` reads beyond the observation."""
    return (
        policy.metric,
        policy.aggregation,
        policy.max_metric_age_s,
        p["stable_window_s"],
        p["panic_window_s"],
    )


def windows(
    policy: PolicyParams, obs: Observation, p: Params
) -> tuple[float, float, tuple[MetricValue, ...]]:
    """Step 1: the stable and panic window totals and the values they read: the same on
    every edit of the target, rates or thresholds (memoised per observation)."""
    stable = pool_total(policy, obs, p["stable_window_s"])
    panic = pool_total(policy, obs, p["panic_window_s"])
    return stable, panic, _values(policy, obs, p, stable, panic)


def _values(
    policy: PolicyParams, obs: Observation, p: Params, stable: float, panic: float
) -> tuple[MetricValue, ...]:
    window = (
        used_values(policy.metric, obs.series, obs.now, p["stable_window_s"]) if obs.series else ()
    )
    # Stamped with the newest sample they derive from, not the tick: a total computed from
    # remembered samples is as old as they are.
    points = metric_signal_points(obs)
    stamp = max(t for t, _ in points) if points else obs.now
    return (
        MetricValue("stable window total", stable, stamp),
        MetricValue("panic window total", panic, stamp),
        *window,
    )


def memory_horizon_s(p: Params) -> float:
    return p["stable_window_s"]


def history_s(p: Params) -> float:
    """Step 1's windows: the stable one, or a panic window set longer."""
    return max(p["stable_window_s"], p["panic_window_s"])


ALGORITHM = Algorithm(
    "kpa", DEFAULTS, signals, recommend, memory_horizon_s, frozenset({METRIC}), history_s, derive
)
