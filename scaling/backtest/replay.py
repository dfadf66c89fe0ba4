"""Replaying a trace through a policy: the engine decides every tick, as the live loop does."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scaling.capacity import DEFAULT_MAX_CONCURRENCY, capacity_of
from scaling.engine import Decision, Memory, PolicyParams, ReplicaCapacity, decide
from scaling.signals import SignalHistory, SignalTick
from simulator.pool import ServingPool
from simulator.replica import ReplicaState, Request

from .deployment import (
    DEFAULT_GPU_TYPE,
    DEFAULT_MODEL,
    DEFAULT_ROUTING,
    Deployment,
    TraceInput,
    trace_requests,
)
from .oracle import DRAIN_LIMIT_S, START_WINDOW_S, run_oracle, window_need
from .result import BacktestResult, OracleResult, TimelinePoint, downsample
from .signals import Gateway, check_metric, percentile
from .slo import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S, Slo, count_attainment

Progress = Callable[[float], None]


class Sizer(Protocol):
    """Turns the engine's count into replicas per GPU type (scaling.backtest.mix.MixSizer);
    without one the replay scales one type."""

    def new_pool(self, initial: int) -> ServingPool: ...

    def observe(
        self, tick: SignalTick, arrived: Sequence[Request], pool: ServingPool, output: float
    ) -> SignalTick: ...

    def apply(self, pool: ServingPool, desired: int, now: float) -> int: ...


MakeSizer = Callable[[PolicyParams, Deployment, Slo], Sizer]
ORACLE_SHARE = 0.3  # of the progress bar, when the oracle is computed too
DEFAULT_TICK_S = 5.0  # the decision interval replayed


def run_backtest(
    policy: PolicyParams,
    trace: TraceInput,
    *,
    gpu_type: str = DEFAULT_GPU_TYPE,
    model: str = DEFAULT_MODEL,
    gpus_per_replica: int = 1,
    cold_start_s: float | None = None,
    slo_ttft_s: float = DEFAULT_SLO_TTFT_S,
    slo_tpot_s: float = DEFAULT_SLO_TPOT_S,
    tick_s: float = DEFAULT_TICK_S,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    routing: str = DEFAULT_ROUTING,
    start_s: float = 0.0,
    duration_s: float | None = None,
    initial_replicas: int | None = None,
    oracle: bool | OracleResult = True,
    oracle_ceiling: int | None = None,
    progress: Progress | None = None,
    sizer: MakeSizer | None = None,
) -> BacktestResult:
    """Replay ``trace`` through ``policy`` on the simulator's virtual clock.

    1. The pool starts warm with ``initial_replicas`` (default: what the oracle needs for
       the first window, within [min, max]), so no policy starts from a cold pool.
    2. Every ``tick_s``: submit the requests arriving in the tick, run the pool to the tick's
       end, read its snapshot into the signal history (docs: scaling/backtest/signals.py),
       build the Observation, ``decide`` with the memory of the previous tick, and apply
       ``decision.desired`` with ``pool.set_replicas`` (new replicas cold-start, removed
       ones drain).
    3. At the end of the trace GPU-seconds are read (warming and draining included); then
       the pool runs on, without decisions and unbilled, until in-flight requests finish
       (at most ``DRAIN_LIMIT_S``) so every latency is known.
    4. SLO attainment, TTFT percentiles and the oracle comparison are computed.

    ``cold_start_s`` None takes the policy's. ``oracle`` True computes the oracle, an
    OracleResult reuses one (same trace and settings), False skips it; ``oracle_ceiling``
    caps the oracle's replicas (None: no cap; the policy's max_replicas is not the
    oracle's). ``progress`` gets the done share (0..1) now and then. Raises ValueError
    for settings the replay cannot honour (unknown GPU type, unsupported metric, ...) and
    ``TraceError`` for a bad trace.
    """
    check_metric(policy)
    if not tick_s > 0:
        raise ValueError("tick_s must be positive")
    cold = policy.cold_start_s if cold_start_s is None else cold_start_s
    deployment = Deployment(gpu_type, model, gpus_per_replica, cold, max_concurrency, routing)
    slo = Slo(slo_ttft_s, slo_tpot_s)
    name, requests = trace_requests(trace, start_s, duration_s)
    end_s = _end(requests, tick_s, duration_s)
    oracle_result = _oracle(
        oracle, policy, deployment, slo, requests, end_s, oracle_ceiling, progress
    )
    if initial_replicas is None:
        initial_replicas = _initial(policy, deployment, slo, requests)
    share = ORACLE_SHARE if oracle is True else 0.0

    def replay_progress(done: float) -> None:
        if progress is not None:
            progress(share + (1 - share) * done)

    run = _Replay(policy, deployment, slo, requests, end_s, tick_s)
    run.sizer = sizer(policy, deployment, slo) if sizer is not None else None
    run.go(initial_replicas, replay_progress)
    return run.result(name, oracle_result)


def replay_signals(
    policy: PolicyParams, ticks: Iterable[SignalTick], memory: Memory | None = None
) -> list[Decision]:
    """The engine's decision for each recorded tick of one workload, under ``policy``.

    What a (possibly edited) policy would have decided over recorded signals, tick by tick,
    exactly as the live loop decides (tests/scaling/test_signal_equivalence.py proves it):

    1. Each tick (a ``SignalTick``: what the loop observed, in time order) goes into a
       ``SignalHistory`` kept for the engine's ``history_s(policy)``, and the engine decides
       on its ``Observation`` with the memory of the previous decision (``memory``: the
       engine memory to start from, default empty).
    2. The ticks carry what really happened (their ``current`` replicas), so the replay is
       open loop: the engine records a scale event when it sees ``current`` change (as the
       live loop's engine does), so rate limits and cooldowns count only changes that
       happened, whatever the replayed policy wanted.

    ``decisions[i].desired`` is the count wanted at ``ticks[i]``; each decision carries its
    steps and reason. Pure: no Django, no clock.
    """
    history = SignalHistory(policy)
    memory = memory if memory is not None else Memory()
    decisions: list[Decision] = []
    for tick in ticks:
        history.record(tick)
        decision = decide(policy, history.observation(tick), memory)
        decisions.append(decision)
        memory = decision.memory
    return decisions


def _end(requests: Sequence[Request], tick_s: float, duration_s: float | None) -> float:
    """The replay covers whole ticks up to the given duration, else past the last arrival."""
    if duration_s is not None:
        return max(tick_s, math.ceil(duration_s / tick_s) * tick_s)
    last = requests[-1].arrival_s if requests else 0.0
    return (math.floor(last / tick_s) + 1) * tick_s


def _oracle(
    oracle: bool | OracleResult,
    policy: PolicyParams,
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    end_s: float,
    ceiling: int | None,
    progress: Progress | None,
) -> OracleResult | None:
    if isinstance(oracle, OracleResult):
        return oracle
    if not oracle:
        return None

    def oracle_progress(done: float) -> None:
        if progress is not None:
            progress(ORACLE_SHARE * done)

    return run_oracle(
        deployment,
        slo,
        requests,
        end_s,
        floor=policy.min_replicas,
        ceiling=ceiling,
        progress=oracle_progress,
    )


def _initial(
    policy: PolicyParams, deployment: Deployment, slo: Slo, requests: Sequence[Request]
) -> int:
    # The first minute's requests alone at 99 %, not the oracle's first windows: those are
    # 5 s long and leave out the work a burst carries over, which no policy can answer
    # before its first cold start ends.
    first = [r for r in requests if r.arrival_s < START_WINDOW_S]
    need = window_need(deployment, slo, first, 0.0, policy.min_replicas, policy.max_replicas)
    return min(max(need, policy.min_replicas), policy.max_replicas)


@dataclass
class _Tally:
    """Running totals of one replay."""

    outcomes: Counter[str] = field(default_factory=Counter)
    scale_events: int = 0
    peak: int = 0
    util_weighted: float = 0.0
    ready_ticks: int = 0
    at_max_ticks: int = 0
    timeline: list[TimelinePoint] = field(default_factory=list)


class _Replay:
    def __init__(
        self,
        policy: PolicyParams,
        deployment: Deployment,
        slo: Slo,
        requests: Sequence[Request],
        end_s: float,
        tick_s: float,
    ) -> None:
        self.policy, self.deployment, self.slo = policy, deployment, slo
        self.requests, self.end_s, self.tick_s = requests, end_s, tick_s
        self.capacity: ReplicaCapacity = capacity_of(
            deployment.perf, slo.tpot_s, deployment.max_concurrency
        )
        self.tally = _Tally()
        self.pool: ServingPool | None = None
        self.gpu_seconds = 0.0
        self.sizer: Sizer | None = None

    def go(self, initial: int, progress: Progress) -> None:
        """Steps 2-3 of run_backtest."""
        sizer = self.sizer
        pool = self.pool = sizer.new_pool(initial) if sizer else self.deployment.new_pool(initial)
        history, memory = SignalHistory(self.policy), Memory()
        gateway = Gateway(self.policy, self.tick_s)
        ticks = max(1, round(self.end_s / self.tick_s))
        every = max(1, ticks // 100)
        next_request = done = 0
        current = self.tally.peak = initial
        for k in range(ticks):
            now = (k + 1) * self.tick_s
            first = next_request
            while next_request < len(self.requests) and self.requests[next_request].arrival_s < now:
                next_request += 1
            arrived = self.requests[first:next_request]
            pool.submit_many(arrived)
            pool.advance(now)
            snap = pool.snapshot(now)
            finished = list(pool.completed)[done:]
            done = len(pool.completed)
            # What the exporters of serving replicas show (a warming vLLM exports nothing).
            hits = {
                r.name: r.prefix_cache_hits
                for r in pool.replicas.values()
                if r.state in (ReplicaState.READY, ReplicaState.DRAINING)
            }
            tick = gateway.tick(snap, current, arrived, finished, self.capacity, hits)
            if sizer is not None:
                tick = sizer.observe(tick, arrived, pool, gateway.expected_output)
            history.record(tick)
            decision = decide(self.policy, history.observation(tick), memory)
            memory = decision.memory
            current = self._apply(decision.desired, current, now, decision.outcome)
            self._count(now, current, snap.ready, snap.gpu_util)
            if (k + 1) % every == 0:
                progress((k + 1) / ticks)
        self.gpu_seconds = pool.gpu_seconds
        pool.advance(self.end_s + DRAIN_LIMIT_S)
        progress(1.0)

    def _apply(self, desired: int, current: int, now: float, outcome: str) -> int:
        self.tally.outcomes[outcome] += 1
        if self.sizer is not None:
            assert self.pool is not None
            self.tally.scale_events += self.sizer.apply(self.pool, desired, now)
        elif desired != current:
            assert self.pool is not None
            self.pool.set_replicas(desired, now)
            self.tally.scale_events += 1
        return desired

    def _count(self, now: float, replicas: int, ready: int, util: float) -> None:
        t = self.tally
        t.peak = max(t.peak, replicas)
        t.util_weighted += util * ready
        t.ready_ticks += ready
        t.at_max_ticks += replicas >= self.policy.max_replicas
        t.timeline.append(TimelinePoint(now, replicas, ready))

    def result(self, name: str, oracle: OracleResult | None) -> BacktestResult:
        assert self.pool is not None
        d, perf, t = self.deployment, self.deployment.perf, self.tally
        completed = list(self.pool.completed)
        counted = count_attainment(self.slo, perf, self.requests, completed)
        ttfts = sorted(c.ttft_s for c in completed)
        return BacktestResult(
            algorithm=self.policy.algorithm,
            trace=name,
            gpu_type=d.gpu_type,
            model=d.model,
            gpus_per_replica=d.gpus_per_replica,
            cold_start_s=d.cold_start_s,
            slo_ttft_s=self.slo.ttft_s,
            slo_tpot_s=self.slo.tpot_s,
            tick_s=self.tick_s,
            duration_s=self.end_s,
            requests=counted.requests,
            completed=len(completed),
            rejected=self.pool.rejected,
            feasible=counted.feasible,
            slo_met=counted.met,
            slo_attainment=counted.attainment,
            infeasible_share=counted.infeasible_share,
            ttft_p50_s=percentile(ttfts, 50),
            ttft_p95_s=percentile(ttfts, 95),
            ttft_p99_s=percentile(ttfts, 99),
            gpu_hours=self.gpu_seconds / 3600.0,
            mean_replicas=self.gpu_seconds / d.gpus_per_replica / self.end_s,
            peak_replicas=t.peak,
            scale_events=t.scale_events,
            mean_gpu_util=t.util_weighted / t.ready_ticks if t.ready_ticks else 0.0,
            outcomes=dict(t.outcomes),
            timeline=downsample(t.timeline),
            oracle=oracle,
            max_replicas=self.policy.max_replicas,
            at_max_share=t.at_max_ticks / len(t.timeline) if t.timeline else 0.0,
        )
