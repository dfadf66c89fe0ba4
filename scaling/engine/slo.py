"""`slo`: hold time-to-first-token p95 under `slo_ttft_p95_s` with a damped proportional
controller (ours; the SLO-aware variant of `predictive`, sharing its guards).

Latency is flat until a pool saturates and then climbs steeply, so the controller reacts
to any excess at once but shrinks only when p95 is well under the objective.

Rules, in order:
1. p95 = mean of the TTFT p95 series over the stable window (60 s); ratio = p95 / SLO.
2. Over the objective (ratio > 1 + up tolerance, default 0): desired =
   ceil(current x (1 + gain x (ratio - 1))), at least current + 1; gain 0.5 damps the
   step because latency is not linear in replicas.
3. Well under it (ratio < 1 - down tolerance, default 0.5): desired =
   ceil(current x (1 - gain x (1 - ratio))).
4. Otherwise keep the current count.
5. Then the shared behavior: no up stabilisation, highest recommendation over 300 s for
   scale-down, up max(100 %, 4 pods) per 15 s, down 50 % per 60 s.
"""

from __future__ import annotations

from dataclasses import replace

from .behavior import rate_limit, stabilise
from .guards import ceil_replicas
from .predictive import DEFAULTS as PREDICTIVE_DEFAULTS
from .series import used_values, window_mean
from .types import (
    Algorithm,
    Memory,
    Observation,
    Params,
    PolicyParams,
    Proposal,
    Signal,
    Step,
)

DEFAULTS: dict[str, float] = {
    **{k: v for k, v in PREDICTIVE_DEFAULTS.items() if k.startswith("scale_")},
    "scale_up_tolerance": 0.0,
    "scale_down_tolerance": 0.5,
    "stable_window_s": 60.0,
    "gain": 0.5,  # not a policy field
}


def signals(policy: PolicyParams, p: Params, obs: Observation) -> tuple[Signal, ...]:
    return (Signal("TTFT p95", obs.ttft_p95_s, p["stable_window_s"]),)


def proportional(current: int, ratio: float, p: Params) -> tuple[int, str]:
    base = max(current, 1)
    if ratio > 1 + p["scale_up_tolerance"]:
        wanted = ceil_replicas(base * (1 + p["gain"] * (ratio - 1)))
        return max(wanted, current + 1), "over the objective"
    if ratio < 1 - p["scale_down_tolerance"]:
        return ceil_replicas(current * (1 - p["gain"] * (1 - ratio))), "well under the objective"
    return current, "near the objective"


def recommend(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Proposal:
    slo = policy.slo_ttft_p95_s
    if slo is None or not slo > 0:
        why = "the slo algorithm needs a positive slo_ttft_p95_s"
        return Proposal(obs.current, None, (), why, (), memory, hold_reason=why)
    p95 = window_mean(obs.ttft_p95_s, obs.now, p["stable_window_s"])
    ratio = p95 / slo
    raw, note = proportional(obs.current, ratio, p)
    stab = stabilise(
        obs.current,
        raw,
        memory.recommendations,
        obs.now,
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
    )
    limited = rate_limit(obs.current, stab.value, memory.scale_events, obs.now, p)
    steps = (Step("controller", raw, f"{note}, gain {p['gain']:g}"), stab.step, limited)
    headline = f"TTFT p95 {p95:.3g} s vs objective {slo:g} s ({ratio:.2f}) → {raw} replicas"
    values = used_values("TTFT p95 (s)", obs.ttft_p95_s, obs.now, p["stable_window_s"])
    return Proposal(
        limited.value,
        raw,
        steps,
        headline,
        values,
        replace(memory, recommendations=stab.recommendations),
    )


def memory_horizon_s(p: Params) -> float:
    return max(p["scale_down_stabilization_s"], p["scale_up_period_s"], p["scale_down_period_s"])


ALGORITHM = Algorithm("slo", DEFAULTS, signals, recommend, memory_horizon_s)
