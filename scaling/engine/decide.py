"""The single entry point: `decide(policy, obs, memory, quota) -> Decision`.

0. Note the observed replica count: a change since the last tick is a scale event
   (guards.record_observed), whoever made it.
1. Vet the policy; look the algorithm up in ALGORITHMS (unknown -> hold).
2. Resolve effective parameters: each None field takes the algorithm's documented default.
3. Vet the data the algorithm will read (shared guards): bad or stale -> hold.
   Advance the memory's clocks by the time with fresh observations only (freshness.py).
4. Ask the algorithm for a proposal (its own tolerance, stabilisation, rate limits).
5. Shared steps: no scale-down on remembered data or in the window after an outage, then
   min/max, then the quota last: its growth cap, or its reclaim.
6. Prune memory, and explain.

The control loop calls it twice a tick for a workload whose quota binds: first without a
quota (what the algorithm wants: the wish the quota allocation weighs against the cohort),
then with the allocation's answer as `quota` (the final decision, with its quota or reclaim
step). Both start from the same memory; only the final one's is kept.
"""

from __future__ import annotations

from dataclasses import replace

from . import apa, freshness, hpa, kpa, predictive, slo
from .explain import outcome, reason, replicas_text
from .guards import (
    apply_bounds,
    apply_quota,
    hold_count,
    policy_problem,
    prune_memory,
    quota_cut,
    record_observed,
    resolve_params,
    signal_problem,
)
from .memo import memoised
from .types import (
    Algorithm,
    Decision,
    Memory,
    MetricValue,
    Observation,
    Params,
    PolicyParams,
    Proposal,
    QuotaHeadroom,
    Signal,
    Step,
)

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (hpa.ALGORITHM, kpa.ALGORITHM, apa.ALGORITHM, predictive.ALGORITHM, slo.ALGORITHM)
}

# Memory older than this is useless to every algorithm; also bounds it when params are odd.
MIN_MEMORY_HORIZON_S = 60.0
MAX_MEMORY_HORIZON_S = 3600.0


def decide(
    policy: PolicyParams,
    obs: Observation,
    memory: Memory | None = None,
    quota: QuotaHeadroom | None = None,
) -> Decision:
    """Decide the replica count for one workload at `obs.now`. Pure and deterministic."""
    memory = record_observed(memory if memory is not None else Memory(), obs)
    problem = policy_problem(policy)
    algorithm = ALGORITHMS.get(policy.algorithm)
    if problem is None and algorithm is None:
        problem = f"unknown algorithm {policy.algorithm!r}"
    if problem is not None or algorithm is None:
        return hold(policy, obs, memory, f"invalid policy: {problem}", {}, None, quota=quota)
    params = resolve_params(policy, algorithm.defaults)
    if algorithm.derive is not None:
        params = algorithm.derive(policy, params)
    signals = algorithm.signals(policy, params, obs)
    bad_data, evidence = vetted(signals, obs, policy.max_metric_age_s)
    memory = freshness.advance(memory, obs.now, evidence, policy.max_metric_age_s)
    if bad_data is not None:
        return hold(policy, obs, memory, bad_data, params, algorithm, quota=quota)
    proposal = algorithm.recommend(policy, params, obs, memory)
    if proposal.hold_reason is not None:
        return hold(
            policy,
            obs,
            proposal.memory,
            proposal.hold_reason,
            params,
            algorithm,
            proposal.metric_values,
            quota=quota,
        )
    return finish(
        policy, obs, _hold_scale_down(proposal, obs, params, policy), quota, params, algorithm
    )


def vetted(
    signals: tuple[Signal, ...], obs: Observation, max_age_s: float
) -> tuple[str | None, float | None]:
    """Step 3: the first problem the shared guards find in the signals, else the newest
    moment all of them have data for. Memoised per observation: an algorithm's signals are
    mostly the observation's own series, the same objects edit after edit, so a series is
    keyed by identity (the entry keeps it alive, so its id names no other meanwhile)."""
    key = (max_age_s, tuple((s.label, s.lookback_s, id(s.points)) for s in signals))
    verdict, _kept = memoised(
        obs, "decide.vetted", key, lambda: (_vet(signals, obs.now, max_age_s), signals)
    )
    return verdict


def _vet(
    signals: tuple[Signal, ...], now: float, max_age_s: float
) -> tuple[str | None, float | None]:
    bad_data = next(
        (
            problem
            for sig in signals
            if (problem := signal_problem(sig, now, max_age_s)) is not None
        ),
        None,
    )
    return bad_data, None if bad_data is not None else freshness.evidence_time(signals)


def _hold_scale_down(
    proposal: Proposal, obs: Observation, params: Params, policy: PolicyParams
) -> Proposal:
    """Keep the current count instead of a scale-down the data cannot back yet: none on a
    tick without new data, none in the first window after an outage (freshness.py)."""
    if proposal.desired >= obs.current:
        return proposal
    why = freshness.scale_down_blocked(proposal.memory, obs.now, params, policy.max_metric_age_s)
    if why is None:
        return proposal
    step = Step("fresh data", obs.current, why)
    return replace(proposal, desired=obs.current, steps=(*proposal.steps, step))


def finish(
    policy: PolicyParams,
    obs: Observation,
    proposal: Proposal,
    quota: QuotaHeadroom | None,
    params: Params,
    algorithm: Algorithm,
) -> Decision:
    bounds = apply_bounds(proposal.desired, policy)
    steps = [*proposal.steps, bounds]
    quota_step = apply_quota(bounds.value, obs.current, quota)
    if quota_step is not None:
        steps.append(quota_step)
    desired = steps[-1].value
    memory = _settle_memory(proposal.memory, obs, algorithm, params)
    return Decision(
        desired=desired,
        raw_desired=proposal.raw_desired,
        steps=tuple(steps),
        outcome=outcome(obs.current, desired, quota_cut(tuple(steps))),
        reason=reason(proposal.reason, proposal.raw_desired, tuple(steps)),
        metric_values=proposal.metric_values,
        memory=memory,
        algorithm=algorithm.name,
        effective=dict(params),
    )


def hold(
    policy: PolicyParams,
    obs: Observation,
    memory: Memory,
    why: str,
    params: Params,
    algorithm: Algorithm | None,
    values: tuple[MetricValue, ...] = (),
    *,
    quota: QuotaHeadroom | None = None,
) -> Decision:
    """Keep the current count (pulled into [min, max], then under the quota or down to its
    reclaim) and say why."""
    steps = [Step("guard", hold_count(policy, obs), why)]
    quota_step = apply_quota(steps[0].value, obs.current, quota)
    if quota_step is not None:
        steps.append(quota_step)
    desired = steps[-1].value
    if algorithm is not None:
        memory = _settle_memory(memory, obs, algorithm, params)
    verb = "holding at" if steps[0].value == obs.current else "moving to bounds"
    return Decision(
        desired=desired,
        raw_desired=None,
        steps=tuple(steps),
        outcome=outcome(obs.current, desired, quota_cut(tuple(steps))),
        reason=reason(
            f"{why}; {verb} {replicas_text(steps[0].value)}", steps[0].value, tuple(steps[1:])
        ),
        metric_values=values,
        memory=memory,
        algorithm=policy.algorithm,
        effective=dict(params),
    )


def _settle_memory(
    memory: Memory, obs: Observation, algorithm: Algorithm, params: Params
) -> Memory:
    horizon = algorithm.memory_horizon_s(params)
    horizon = min(max(horizon, MIN_MEMORY_HORIZON_S), MAX_MEMORY_HORIZON_S)
    return prune_memory(memory, obs.now, horizon)
