"""`slo`: hold time-to-first-token p95 under `slo_ttft_p95_s` (ours; the SLO-aware variant
of `predictive`, sharing its guards).

Latency is flat until a pool saturates and then climbs steeply, and it answers a change of
replicas only a cold start later. A controller on latency alone therefore reacts late and
winds up: while new replicas warm, p95 stays high and each tick would ask for more (on the
Azure conversation trace that took the pool from 1 to 50 replicas). So the controller sits
on top of predictive's offered-work target and counts warming replicas as the answer on the
way.

Rules, in order:
1. p95 = mean of the TTFT p95 series over the stable window (60 s); ratio = p95 / SLO.
2. Over the objective (ratio > 1 + up tolerance, default 0), unless the queueing delay p95
   (mean over the same window) is within `late_wait_share` (0.5) of the objective: then the
   late requests are long prompts prefilling alone, which capacity does not fix. With no
   queueing delay known (`known_wait`: none in the window and the last one past
   `max_metric_age_s`), hold too: vLLM records TTFT at the first token but the queueing
   delay only when a request finishes, so a late TTFT with no wait yet is unknown, not
   "capacity" (live, long prompts with 8-token outputs took a pool 1 -> 3 on it). Else wanted =
   ceil(ready x (1 + gain x (ratio - 1))), at least ready + 1; gain 0.5 damps the step
   because latency is not linear in replicas. Sized from the ready replicas, whose latency
   was measured; when the warming ones already cover it, keep the current count (anti
   wind-up). Nor does latency measured on requests that arrived before the last scale-up's
   replicas were ready (now - p95 earlier than that scale-up + cold start) ask for more:
   it describes the smaller pool and the backlog it left (on the code trace replayed from
   60 s, acting on it took the pool to 50 replicas, 2.74x the oracle; now 33, 2.11x).
   Latency measured since the last scale-up landed counts only once the backlog its cold
   start left has drained (predictive's `settled_since`): that backlog describes the cold
   start, and a 60 s mean still holding it asked x6 on flash-crowd (21 replicas for 2 of
   work, 3.39 GPU-h; now 1.55).
3. Well under it (ratio < 1 - down tolerance, default 0.5): desired =
   ceil(current x (1 - gain x (1 - ratio))).
4. Otherwise keep the current count.
5. Floor: with offered-work signals (prompt and generation tokens/s and the replica
   capacity), never below predictive's target (its steps 1-7: forecast, burst hold, warm
   replica); the controller only adds to it.
6. Then the shared behavior: no up stabilisation, highest recommendation over 300 s for
   scale-down (the current count counts as one when none is remembered), up max(200 %, 4
   pods) per 15 s, down 50 % per 60 s.
"""

from __future__ import annotations

from dataclasses import replace

from . import predictive
from .behavior import rate_limit, stabilise
from .explain import replicas_text
from .guards import ceil_replicas
from .series import latest, used_values, window_points
from .types import (
    METRIC,
    OFFERED_WORK,
    TTFT,
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
    **predictive.DEFAULTS,
    "scale_up_tolerance": 0.0,
    "scale_down_tolerance": 0.5,
    "stable_window_s": 60.0,
    "gain": 0.5,  # not a policy field
}


def signals(policy: PolicyParams, p: Params, obs: Observation) -> tuple[Signal, ...]:
    ttft = Signal("TTFT p95", obs.ttft_p95_s, p["stable_window_s"])
    if predictive.uses_offered_work(obs):
        return (ttft, *predictive.signals(policy, p, obs))
    return (ttft,)


def predates_growth(memory: Memory, obs: Observation, cold_start_s: float, p95: float) -> bool:
    """Whether the requests behind ``p95`` arrived before the last scale-up's replicas were
    ready (a request finishing now after a wait of p95 arrived p95 ago): their latency then
    describes the smaller pool."""
    ups = [t for t, change in memory.scale_events if change > 0]
    return bool(ups) and obs.now - p95 < max(ups) + cold_start_s


def settled_p95(
    policy: PolicyParams, p: Params, obs: Observation, memory: Memory
) -> tuple[float, bool]:
    """Step 1's p95 over the stable window, from the points since the last scale-up's
    backlog drained (predictive.settled_since) when the window holds any, and whether it
    did: latency of the backlog a cold start left describes that cold start, not the pool
    (on flash-crowd, a 60 s mean still holding it asked x6 from 7 ready replicas: 21
    replicas for 2 of work)."""
    slo = policy.slo_ttft_p95_s or p["late_ttft_s"]
    since = predictive.settled_since(policy, p, obs, memory, p["late_wait_share"] * slo)
    points = window_points(obs.ttft_p95_s, obs.now, p["stable_window_s"])
    settled = [v for t, v in points if since is None or t >= since]
    if not settled:
        return sum(v for _, v in points) / len(points), False
    return sum(settled) / len(settled), True


def known_wait(policy: PolicyParams, p: Params, obs: Observation) -> float | None:
    """Step 2's queueing delay p95: the mean over the stable window, else the last point
    while it is within the policy's metric age limit, else None (unknown)."""
    inside = [v for t, v in obs.queue_p95_s if obs.now - p["stable_window_s"] < t <= obs.now]
    if inside:
        return sum(inside) / len(inside)
    if obs.queue_p95_s:
        t, v = latest(obs.queue_p95_s)
        if obs.now - t <= policy.max_metric_age_s:
            return v
    return None


def proportional(
    current: int, ready: int, ratio: float, p: Params, stale: bool = False
) -> tuple[int, str]:
    if ratio > 1 + p["scale_up_tolerance"] and stale:
        return current, (
            "over the objective, measured on requests that arrived before the last scale-up "
            "was ready: waiting for the grown pool's latency"
        )
    if ratio > 1 + p["scale_up_tolerance"]:
        base = max(ready, 1)
        wanted = max(ceil_replicas(base * (1 + p["gain"] * (ratio - 1))), base + 1)
        if wanted <= current:
            return current, "over the objective; the warming replicas cover it"
        return wanted, "over the objective"
    if ratio < 1 - p["scale_down_tolerance"]:
        return ceil_replicas(current * (1 - p["gain"] * (1 - ratio))), "well under the objective"
    return current, "near the objective"


def recommend(policy: PolicyParams, p: Params, obs: Observation, memory: Memory) -> Proposal:
    slo = policy.slo_ttft_p95_s
    if slo is None or not slo > 0:
        why = "the slo algorithm needs a positive slo_ttft_p95_s"
        return Proposal(obs.current, None, (), why, (), memory, hold_reason=why)
    p95, drained = settled_p95(policy, p, obs, memory)
    ratio = p95 / slo
    stale = not drained or predates_growth(memory, obs, policy.cold_start_s, p95)
    raw, note = proportional(obs.current, obs.ready, ratio, p, stale)
    wait = known_wait(policy, p, obs)
    if raw > obs.current and wait is None:
        # vLLM records a request's TTFT at its first token but its queueing delay only when
        # it finishes, so a tick can carry a late TTFT and no wait yet. Unknown is not
        # "capacity": long prompts with 8-token outputs took a live pool 1 -> 3 on it.
        raw, note = obs.current, "over the objective, but no queueing delay measured yet"
    elif raw > obs.current and wait is not None and wait <= p["late_wait_share"] * slo:
        # Requests are scheduled promptly, so the late TTFT is prompts too long for the
        # objective, prefilling alone: more replicas do not shorten that (with a fifth of the
        # requests infeasible, TTFT p95 never falls under the objective and this ratcheted
        # the pool to max_replicas).
        raw, note = obs.current, f"over the objective, but requests wait only {wait:.3g} s"
    steps: list[Step] = [Step("controller", raw, f"{note}, gain {p['gain']:g}")]
    values = used_values("TTFT p95 (s)", obs.ttft_p95_s, obs.now, p["stable_window_s"])
    if obs.queue_p95_s:
        values += used_values(
            "queueing delay p95 (s)", obs.queue_p95_s, obs.now, p["stable_window_s"]
        )
    if predictive.uses_offered_work(obs):
        aim = predictive.target(policy, p, obs, memory)
        if isinstance(aim, str):
            return Proposal(obs.current, None, (), aim, (), memory, hold_reason=aim)
        memory = replace(
            memory,
            bursts=aim.bursts,
            headroom=aim.headroom,
            headroom_raised_at=aim.headroom_raised_at,
            headroom_at=obs.now,
        )
        values += aim.values
        if aim.raw > raw:
            raw = aim.raw
            steps.append(
                Step("offered work", raw, f"raised to {aim.decided_by}, from {aim.source}")
            )
        else:
            steps.append(Step("offered work", raw, f"predictive's target {aim.raw} is lower"))
    stab = stabilise(
        obs.current,
        raw,
        predictive.first_recommendations(memory, obs),
        obs.now,
        p["scale_up_stabilization_s"],
        p["scale_down_stabilization_s"],
    )
    limited = rate_limit(obs.current, stab.value, memory.scale_events, obs.now, p)
    headline = describe(p95, slo, steps)
    return Proposal(
        limited.value,
        raw,
        (*steps, stab.step, limited),
        headline,
        values,
        replace(memory, recommendations=stab.recommendations),
    )


def describe(p95: float, slo: float, steps: list[Step]) -> str:
    """The latency controller's sentence, or predictive's when the offered work set a
    higher count (then the latency is what it would have been alone)."""
    latency = (
        f"TTFT p95 {p95:.3g} s is {p95 / slo:.2f} of the {slo:g} s objective, "
        f"{steps[0].note} → {replicas_text(steps[0].value)}"
    )
    if steps[-1].value > steps[0].value:
        return f"offered work: {steps[-1].note} → {replicas_text(steps[-1].value)} ({latency})"
    return latency


def memory_horizon_s(p: Params) -> float:
    return max(p["scale_down_stabilization_s"], p["scale_up_period_s"], p["scale_down_period_s"])


def history_s(p: Params) -> float:
    """Step 1's TTFT window, and predictive's history under step 5's floor."""
    return max(p["stable_window_s"], predictive.history_s(p))


ALGORITHM = Algorithm(
    "slo",
    DEFAULTS,
    signals,
    recommend,
    memory_horizon_s,
    frozenset({METRIC, OFFERED_WORK, TTFT}),
    history_s,
)
