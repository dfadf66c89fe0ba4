"""The GPU mix in the back-test: the predictive policy decides how much capacity, the mix
integer program (:mod:`scaling.engine.mix`) decides on which GPU types.

    run_mix_backtest(policy, "conv", settings=MixSettings(("A100-80GB", "A40-48GB")))
        -> MixBacktest(result, gpu_hours_by_type, cost_usd, requests_by_type, mixes, ...)

Every tick of the ordinary replay (:func:`scaling.backtest.replay.run_backtest`, the same code
path, with a :class:`MixSizer` plugged in):

1. The engine decides as it does for one type, in replicas of the *reference* type (the
   deployment's, A100-80GB by default): its forecast, headroom, burst hold, stabilisation and
   rate limits are the single-type default's, untouched. It sees the mixed pool in reference
   replicas: each type's ready replicas count by its speed on the window's requests.
2. The decided count D becomes a request rate: the rate D reference replicas serve at the
   mix's utilisation on the window's requests (so the reference type alone gets D back).
3. The rate is split into request classes by prompt length, with the bounds of vLLM's
   ``vllm:request_prompt_tokens`` histogram (1-2-5 buckets, :func:`prompt_buckets`): the
   live loop gets the same classes from the histogram's bucket counts and sum, so a class
   knows only its bucket's bounds, its count and (scaled) mean (``mix.histogram_classes``).
   The window is the policy's signal history (600 s for predictive).
4. ``mix.next_mix``, the live loop's path too (scaling.variants): ``mix.plan`` picks the
   cheapest replicas per type that serve the classes, each type only the classes whose
   longest prompt it prefills within ``mix.TTFT_PREFILL_SHARE`` of the TTFT objective, among
   the types the router guard keeps (``mix.routed``); ``mix.steady`` keeps the current mix
   unless a change saves at least ``hysteresis`` of the cost (a change of mix drains warm
   replicas and cold-starts others), and ``mix.dwell`` holds a change of types for a cold
   start. Make-before-break (``MixSizer.apply``): no type shrinks while another grows or
   warms up; the live loop's ``variants.make_before_break`` waits for the new replicas'
   readiness the same way.
5. Each type is set with ``ServingPool.set_replicas(n, now, gpu_type=...)``; the pool routes
   by shortest expected delay, which knows each replica's speed.

Cost: GPU-hours per type times its price (``deployment.ASSUMED_PRICE_USD_PER_GPU_HOUR`` unless
given). Attainment is over the requests feasible on the reference type, as the single-type
default's. Measured in bench/bench_mix.py; docs/backtest.md ("GPU mix").
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from performance import GPU_PROFILES, ModelDoesNotFit, model_spec, replica_perf
from scaling.capacity import capacity_of
from scaling.engine import PolicyParams, history_s
from scaling.engine.mix import (
    DEFAULT_UTILIZATION,
    EXPECTED_DELAY_ROUTING,
    HYSTERESIS,
    GpuOption,
    Mix,
    MixMemory,
    MixRule,
    RequestClass,
    as_demand,
    gpu_option,
    histogram_classes,
    next_mix,
    prompt_buckets,
    routed,
)
from scaling.signals import SignalTick
from simulator.pool import ServingPool
from simulator.replica import ReplicaState, Request

from .deployment import ASSUMED_PRICE_USD_PER_GPU_HOUR, Deployment, TraceInput
from .replay import run_backtest
from .result import BacktestResult
from .slo import Slo

MIX_GPU_TYPES = ("A100-80GB", "A40-48GB", "L4-24GB")
PRICE_SOURCE = "mix"  # BacktestResult.price_source of a mix: the blended price per GPU-hour
_WARMING = ReplicaState.WARMING


@dataclass(frozen=True)
class MixSettings:
    """The GPU types offered (the model must fit on each; those it does not are left out),
    their USD per GPU-hour (default: the assumed catalogue prices) and the hysteresis."""

    gpu_types: tuple[str, ...] = MIX_GPU_TYPES
    prices: Mapping[str, float] = field(default_factory=dict)
    hysteresis: float = HYSTERESIS
    utilization: float = DEFAULT_UTILIZATION
    router_guard: bool = True  # False: offer every type whatever the router does (to measure)

    def price(self, gpu_type: str) -> float:
        return self.prices.get(gpu_type) or ASSUMED_PRICE_USD_PER_GPU_HOUR.get(gpu_type, 0.0)


def gpu_options(
    settings: MixSettings, deployment: Deployment, slo: Slo, max_replicas: int
) -> list[GpuOption]:
    """One option per offered type the model fits: price per replica-hour, capacity within
    the inter-token objective, longest prompt by the eligibility rule (mix.gpu_option)."""
    options = []
    for gpu_type in settings.gpu_types:
        if gpu_type not in GPU_PROFILES:
            raise ValueError(f"unknown GPU type {gpu_type!r}")
        try:
            perf = replica_perf(
                GPU_PROFILES[gpu_type], model_spec(deployment.model), deployment.gpus_per_replica
            )
        except ModelDoesNotFit:
            continue
        options.append(
            gpu_option(
                gpu_type,
                settings.price(gpu_type) * deployment.gpus_per_replica,
                capacity_of(perf, slo.tpot_s, deployment.max_concurrency),
                perf,
                slo.ttft_s,
                max_replicas=max_replicas,
            )
        )
    return options


class MixSizer:
    """The hooks the replay calls (``replay.Sizer``): the mixed pool, the engine's view of
    it in reference replicas, and the mix applied for each decision (module docstring)."""

    def __init__(
        self, policy: PolicyParams, deployment: Deployment, slo: Slo, settings: MixSettings
    ) -> None:
        self.policy, self.deployment, self.settings = policy, deployment, settings
        self.slo = slo
        self.options = gpu_options(settings, deployment, slo, policy.max_replicas)
        if deployment.gpu_type not in {o.name for o in self.options}:
            raise ValueError(f"the reference type {deployment.gpu_type} must be offered")
        self.reference = next(o for o in self.options if o.name == deployment.gpu_type)
        self.rule = MixRule(
            deployment.gpu_type,
            slo.ttft_s,
            deployment.cold_start_s,
            settings.hysteresis,
            settings.utilization,
            settings.router_guard and deployment.routing in EXPECTED_DELAY_ROUTING,
        )
        # The histogram's buckets go up to the longest prompt the reference type holds, as
        # vLLM's go up to the model length; beyond it a request is rejected anyway.
        self.top = deployment.perf.kv_capacity_tokens
        self.bounds = prompt_buckets(self.top - 1)
        self.window_s = history_s(policy)
        self.seen: deque[tuple[float, int]] = deque()  # (arrival, prompt tokens) in the window
        self.output_tokens = 128.0
        self.counts: dict[str, int] = {}  # replicas set per type
        self.memory = MixMemory()  # the last mix chosen, for what count, a change wanted
        self.type_of: dict[str, str] = {}  # replica name -> GPU type, retired ones too
        self.mixes: Counter[str] = Counter()  # mix text -> ticks applied
        self.changes = 0  # ticks at which the mix of types changed
        self.last: Mix | None = None
        self.pool: ServingPool | None = None
        self.gpu_seconds: dict[str, float] = {}  # per type, at the last tick (billed)

    # --- the replay's hooks --------------------------------------------------------------

    def new_pool(self, initial: int) -> ServingPool:
        """The warm pool at 0: ``initial`` reference replicas (no request seen yet, so no
        class another type could take; the first change of types waits a cold start)."""
        counts = self.counts = dict(self._choose(initial, self._fallback(initial)))
        ref = self.deployment.gpu_type
        others = {t: n for t, n in counts.items() if t != ref}
        pool = self.pool = self.deployment.new_pool(counts.get(ref, 0), others=others)
        self._track(pool)
        return pool

    def observe(
        self, tick: SignalTick, arrived: Sequence[Request], pool: ServingPool, output: float
    ) -> SignalTick:
        """The tick as the engine should see it: ready and warming in reference replicas."""
        self.output_tokens = output
        for r in arrived:
            self.seen.append((r.arrival_s, r.input_tokens))
        while self.seen and self.seen[0][0] < tick.now - self.window_s:
            self.seen.popleft()
        ready: Counter[str] = Counter()
        warming: Counter[str] = Counter()
        for replica in pool.replicas.values():
            if replica.state is ReplicaState.READY:
                ready[replica.perf.gpu.name] += 1
            elif replica.state is ReplicaState.WARMING:
                warming[replica.perf.gpu.name] += 1
        return replace(
            tick, ready=round(self._equivalent(ready)), warming=round(self._equivalent(warming))
        )

    def apply(self, pool: ServingPool, desired: int, now: float) -> int:
        """Set each type for ``desired`` reference replicas; returns the scale events (one
        per type whose count changed)."""
        before = dict(self.counts)
        goal = self._choose(desired, self.classes(desired), now)
        # Make before break: no type shrinks while another grows or warms up, so a change of
        # types never drains warm capacity a cold start before its replacement serves (an
        # all-A100 pool turned into 2 A100 + 15 A40 at once queued 24 s of requests).
        growing = {t for t, n in goal.items() if n > before.get(t, 0)}
        growing |= {r.perf.gpu.name for r in pool.replicas.values() if r.state is _WARMING}
        events = 0
        for gpu_type, n in goal.items():
            have = before.get(gpu_type, 0)
            if n < have and growing - {gpu_type}:
                n = have
            self.counts[gpu_type] = n
            if n != have:
                pool.set_replicas(n, now, gpu_type=gpu_type)
                events += 1
        self._track(pool)
        # The replay bills up to its last tick, not the drain after it.
        self.gpu_seconds = pool.gpu_seconds_by_type()
        return events

    def served(self) -> dict[str, dict[str, int]]:
        """Completed requests per prompt-length class (histogram bucket) and GPU type."""
        assert self.pool is not None
        out: dict[str, dict[str, int]] = {}
        edges = (*self.bounds, self.top)
        for c in self.pool.completed:
            bucket = f"<={edges[bisect_left(self.bounds, c.input_tokens)]}"
            by_type = out.setdefault(bucket, {})
            by_type[self.type_of[c.replica]] = by_type.get(self.type_of[c.replica], 0) + 1
        return out

    # --- sizing --------------------------------------------------------------------------

    @property
    def goal(self) -> dict[str, int]:
        """Replicas wanted per type (the last mix chosen)."""
        return self.memory.goal

    def routed(self) -> list[GpuOption]:
        """The types the router reaches before the reference type is late (mix.routed)."""
        if not self.rule.router_guard:
            return list(self.options)
        return routed(self.options, self.reference.name, self.output_tokens, self.slo.ttft_s)

    def _choose(
        self, desired: int, classes: list[RequestClass], now: float = 0.0
    ) -> dict[str, int]:
        """The mix wanted for ``desired`` (``self.goal``, by mix.next_mix, the live loop's
        path); ``self.counts`` is what is set, which make-before-break may hold above it for
        a cold start."""
        before = dict(self.goal)
        mix, self.memory = next_mix(
            self.options,
            classes,
            desired,
            self.memory,
            self.rule,
            output_tokens=self.output_tokens,
            now=now,
            min_total=self.policy.min_replicas,
        )
        used = {t for t, n in self.goal.items() if n}
        if before and used != {t for t, n in before.items() if n}:
            self.changes += 1
        self.last = mix
        self.mixes[mix.text()] += 1
        return self.goal

    def _histogram(self) -> tuple[list[int], float]:
        counts = [0] * (len(self.bounds) + 1)
        for _, prompt in self.seen:
            counts[bisect_left(self.bounds, prompt)] += 1
        return counts, float(sum(p for _, p in self.seen))

    def classes(self, desired: int) -> list[RequestClass]:
        """Step 2-3 of the module docstring: ``desired`` reference replicas as classes."""
        if desired <= 0:
            return []
        shape = self.shape()
        if not shape:
            return self._fallback(desired)
        return as_demand(shape, self.reference.capacity, desired, self.settings.utilization)

    def shape(self) -> list[RequestClass]:
        """The window's classes, their shares of requests as ``rate_per_s`` (none seen: [])."""
        counts, prompt_sum = self._histogram()
        return histogram_classes(self.bounds, counts, prompt_sum, 1.0, self.output_tokens, self.top)

    def _fallback(self, desired: int) -> list[RequestClass]:
        """No request seen: ``desired`` reference replicas of requests only the reference
        type's prompt limit bounds (so the reference type gets them)."""
        longest = self.reference.longest_prompt_tokens
        one = RequestClass("unseen", 1.0, longest / 2, self.output_tokens, longest)
        return as_demand([one], self.reference.capacity, desired, self.settings.utilization)

    def _equivalent(self, counts: Mapping[str, int]) -> float:
        """Replicas per type in reference replicas: each by its speed on the window's
        requests (the reference's work per request over the type's)."""
        shape = self.shape() or self._fallback(1)
        total = 0.0
        for option in self.options:
            n = counts.get(option.name, 0)
            if n:
                ref = sum(c.rate_per_s * c.work_s(self.reference.capacity) for c in shape)
                own = sum(c.rate_per_s * c.work_s(option.capacity) for c in shape)
                total += n * ref / own
        return total

    def _track(self, pool: ServingPool) -> None:
        for name, replica in pool.replicas.items():
            self.type_of.setdefault(name, replica.perf.gpu.name)


@dataclass(frozen=True)
class MixBacktest:
    """A mix replay: the ordinary result (priced at the blended price per GPU-hour) and
    what the mix did."""

    result: BacktestResult
    gpu_hours_by_type: dict[str, float]
    cost_usd: float
    requests_by_class: dict[str, dict[str, int]]  # prompt class -> GPU type -> completed
    mixes: dict[str, int]  # mix text -> ticks it was applied
    type_changes: int  # ticks at which the set of types in use changed
    options: tuple[GpuOption, ...]

    @property
    def requests_by_type(self) -> dict[str, int]:
        """Completed requests per GPU type that served them."""
        out: Counter[str] = Counter()
        for by_type in self.requests_by_class.values():
            out.update(by_type)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result.to_dict(),
            "gpu_hours_by_type": {k: round(v, 4) for k, v in self.gpu_hours_by_type.items()},
            "cost_usd": round(self.cost_usd, 4),
            "requests_by_type": self.requests_by_type,
            "requests_by_class": self.requests_by_class,
            "mixes": dict(sorted(self.mixes.items(), key=lambda kv: -kv[1])[:10]),
            "type_changes": self.type_changes,
        }


def run_mix_backtest(
    policy: PolicyParams,
    trace: TraceInput,
    *,
    settings: MixSettings | None = None,
    **replay: Any,
) -> MixBacktest:
    """Replay ``trace`` through ``policy`` on a pool of ``settings.gpu_types``, the mix
    chosen every tick (module docstring); ``replay``: run_backtest's keywords (``gpu_type``
    is the reference type; no oracle: it is a single-type bound)."""
    chosen = settings or MixSettings()
    made: list[MixSizer] = []

    def sizer(policy: PolicyParams, deployment: Deployment, slo: Slo) -> MixSizer:
        made.append(MixSizer(policy, deployment, slo, chosen))
        return made[-1]

    result = run_backtest(policy, trace, oracle=False, sizer=sizer, **replay)
    mix = made[0]
    hours = {t: s / 3600.0 for t, s in mix.gpu_seconds.items()}
    cost = math.fsum(h * chosen.price(t) for t, h in hours.items())
    gpu_hours = math.fsum(hours.values())
    priced = replace(
        result,
        price_per_gpu_hour=cost / gpu_hours if gpu_hours else 0.0,
        price_source=PRICE_SOURCE,
    )
    return MixBacktest(
        priced,
        hours,
        cost,
        mix.served(),
        dict(mix.mixes),
        mix.changes,
        tuple(mix.options),
    )
