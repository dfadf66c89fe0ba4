"""A serving pool on a virtual clock: replicas of one model, a router, cold starts, drains.

This is the in-process API the back-tester drives; the HTTP simulator drives the very same
class on wall time. Time is whatever the caller says it is: nothing here sleeps or reads a
clock, so an hour of trace replays in seconds.

Example::

    from performance import GPU_PROFILES, MODELS
    from simulator.pool import ServingPool
    from simulator.replica import Request

    pool = ServingPool(
        GPU_PROFILES["A100-80GB"], MODELS["meta-llama/Llama-3.1-8B-Instruct"],
        gpus_per_replica=1, cold_start_s=60.0, max_concurrency=256,
        routing="shortest-expected-delay", replicas=2, now=0.0, warm=True,
    )
    pool.submit_many(requests)          # Request(arrival_s, input_tokens, output_tokens)
    pool.set_replicas(3, now=30.0)      # the new one is ready at 90 s; scale-down drains
    pool.advance(until=60.0)            # event-driven, replicas and arrivals in time order
    snap = pool.snapshot(now=60.0)      # ready/warming/running/waiting/kv/util/tokens per s
    pool.completed                      # Completion(ttft_s, itl_s, e2e_s, ...) per request
    pool.gpu_seconds                    # GPU-seconds burnt so far, warming and draining too

A mixed pool: the constructor's profile is the default type; ``set_replicas(n, now,
gpu_type="A40-48GB")`` converges on ``n`` replicas of another catalogue type beside it, each
replica with that type's :class:`ReplicaPerf` (so its own speed and KV cache)::

    pool.set_replicas(2, now=0.0, gpu_type="A40-48GB", cold_start_s=0.0)
    pool.replicas_by_type()             # {"A100-80GB": 2, "A40-48GB": 2}

Routing strategies (``ROUTING_STRATEGIES``): ``round-robin``, ``least-outstanding``,
``shortest-expected-delay`` (the default, ``DEFAULT_ROUTING``: see
:meth:`ServingPool._expected_delay`) and ``prefix-aware`` (see
:meth:`ServingPool._prefix_aware`).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from performance import GPU_PROFILES, GpuProfile, ModelSpec, ReplicaPerf, replica_perf
from performance.replica import ITERATION_OVERHEAD_S
from simulator.replica import Completion, Replica, ReplicaState, Request

ROUTING_STRATEGIES = ("round-robin", "least-outstanding", "shortest-expected-delay", "prefix-aware")
# Length-aware by default: with long, varied prompts a request count says little about the
# work queued on a replica (docs/simulator.md, "Routing").
DEFAULT_ROUTING = "shortest-expected-delay"
# prefix-aware keeps a request on the replica holding its longest cached prefix while that
# replica's expected delay is within this factor of the best one. SGLang's cache-aware router
# bounds queue lengths at 1.5x; on expected delays 1.0-3.0 all measured within 7 % of each
# other on TTFT p95, 1.2 the best (bench/README.md, "Routing").
PREFIX_AFFINITY_BOUND = 1.2
MAX_POOL_QUEUE = 10_000  # requests held while no replica is ready; beyond it they are rejected
_OUTPUT_EWMA_WEIGHT = 0.05


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Pool state at ``now``; rates and means cover the interval since the last snapshot."""

    now: float
    ready: int
    warming: int
    draining: int
    running: int
    waiting: int  # queued on replicas plus held by the router
    kv_usage: float  # mean over ready replicas, 0..1
    gpu_util: float  # busy share over the interval, mean over ready replicas, 0..1
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    completed_per_s: float
    ttft_mean_s: float | None
    e2e_mean_s: float | None
    rejected: int
    lost: int


class ServingPool:
    """Replicas of one model behind one router, on ``profile`` unless a replica is started
    with another catalogue GPU type (a mixed pool)."""

    def __init__(
        self,
        profile: GpuProfile,
        model: ModelSpec,
        *,
        gpus_per_replica: int = 1,
        cold_start_s: float = 60.0,
        max_concurrency: int = 256,
        routing: str = DEFAULT_ROUTING,
        replicas: int = 0,
        now: float = 0.0,
        warm: bool = False,
        keep_completed: int | None = None,
        chunked_prefill: bool = True,
        token_budget: int | None = None,
    ) -> None:
        if routing not in ROUTING_STRATEGIES:
            raise ValueError(f"unknown routing strategy {routing!r}")
        self.model = model
        self.gpus_per_replica = gpus_per_replica
        self.chunked_prefill = chunked_prefill
        self.token_budget = token_budget
        self.perf: ReplicaPerf = self.perf_of(profile)
        self._perfs: dict[str, ReplicaPerf] = {profile.name: self.perf}
        self.cold_start_s = cold_start_s
        self.max_concurrency = max_concurrency
        self.routing = routing
        self.now = now
        self.replicas: dict[str, Replica] = {}
        self.completed: deque[Completion] | list[Completion] = (
            [] if keep_completed is None else deque(maxlen=keep_completed)
        )
        self.rejected = 0
        self.lost = 0
        self._pending: list[tuple[float, int, Request]] = []  # arrivals not yet routed
        self._held: deque[tuple[int, Request]] = deque()  # routed nowhere: no ready replica
        self._ids = itertools.count()
        self._names = itertools.count()
        self._rr = 0
        self._gone_gpu_s: dict[str, float] = {}  # per GPU type, replicas retired
        self._expected_output = 128.0
        self._snap_at = now
        self._snap_totals = self._totals()
        self._snap_latency: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._latency: list[float] = [0.0, 0.0, 0.0]  # completions, sum of ttft, sum of e2e
        self.set_replicas(replicas, now, cold_start_s=0.0 if warm else None)

    # --- replica lifecycle ---------------------------------------------------------------

    def perf_of(self, profile: GpuProfile) -> ReplicaPerf:
        """The pool's model on ``gpus_per_replica`` GPUs of ``profile`` (raises
        ``ModelDoesNotFit``)."""
        return replica_perf(
            profile,
            self.model,
            self.gpus_per_replica,
            chunked_prefill=self.chunked_prefill,
            token_budget=self.token_budget,
        )

    def _type_perf(self, gpu_type: str | None) -> ReplicaPerf:
        if gpu_type is None:
            return self.perf
        if gpu_type not in self._perfs:
            if gpu_type not in GPU_PROFILES:
                raise ValueError(f"unknown GPU type {gpu_type!r}")
            self._perfs[gpu_type] = self.perf_of(GPU_PROFILES[gpu_type])
        return self._perfs[gpu_type]

    def add_replica(
        self,
        now: float,
        name: str | None = None,
        cold_start_s: float | None = None,
        gpu_type: str | None = None,
    ) -> str:
        """Start a replica at ``now`` on ``gpu_type`` (default: the pool's profile); it
        takes requests after its cold start."""
        perf = self._type_perf(gpu_type)
        name = name or f"replica-{next(self._names)}"
        delay = self.cold_start_s if cold_start_s is None else cold_start_s
        self.replicas[name] = Replica(name, perf, self.max_concurrency, now, now + delay)
        if delay <= 0:
            self._mark_ready(self.replicas[name])
        return name

    def drain_replica(self, name: str, now: float) -> None:
        """Stop routing to ``name``; it leaves once its in-flight requests finish.

        A replica still warming has nothing in flight and leaves at once.
        """
        replica = self.replicas[name]
        if replica.state is ReplicaState.WARMING:
            self._retire(replica, now)
        elif replica.state is ReplicaState.READY:
            replica.state = ReplicaState.DRAINING
            replica.drain_s = now
            if replica.outstanding == 0:
                self._retire(replica, now)

    def remove_replica(self, name: str, now: float) -> int:
        """Kill ``name`` at once (node failure); returns the in-flight requests lost."""
        replica = self.replicas[name]
        lost = replica.abandon()
        self.lost += lost
        self._retire(replica, now)
        return lost

    def set_replicas(
        self, n: int, now: float, cold_start_s: float | None = None, gpu_type: str | None = None
    ) -> None:
        """Converge on ``n`` serving replicas: start new ones or drain the newest.

        With ``gpu_type`` only that type's replicas count, and new ones are of that type;
        without it every replica counts and new ones are of the pool's default type.
        """
        perf = self._type_perf(gpu_type)
        live = [
            r
            for r in self.replicas.values()
            if r.state in _SERVING and (gpu_type is None or r.perf is perf)
        ]
        for _ in range(n - len(live)):
            self.add_replica(now, cold_start_s=cold_start_s, gpu_type=gpu_type)
        # Kubernetes-like victim order: not-ready before ready, then newest first.
        victims = sorted(live, key=lambda r: (r.state is ReplicaState.READY, r.created_s))
        for replica in victims[: max(0, len(live) - n)]:
            self.drain_replica(replica.name, now)

    def set_max_concurrency(self, n: int) -> None:
        self.max_concurrency = n
        for replica in self.replicas.values():
            replica.max_concurrency = n

    def set_routing(self, routing: str) -> None:
        if routing not in ROUTING_STRATEGIES:
            raise ValueError(f"unknown routing strategy {routing!r}")
        self.routing = routing

    # --- load ----------------------------------------------------------------------------

    def submit(self, request: Request) -> None:
        heapq.heappush(self._pending, (request.arrival_s, next(self._ids), request))

    def submit_many(self, requests: Iterable[Request]) -> None:
        for request in requests:
            self.submit(request)

    def advance(self, until: float) -> None:
        """Run the pool up to ``until``.

        1. The next event is the earliest of the next arrival and the next replica to finish
           its cold start.
        2. Every serving replica runs up to that instant (they are independent in between).
        3. A cold start ends: the replica takes the requests the router was holding.
           An arrival: the router picks a ready replica by the pool's strategy.
        4. Repeat until the next event lies beyond ``until``, then run replicas to it.
        """
        while True:
            t_arrival = self._pending[0][0] if self._pending else float("inf")
            warming = [r for r in self.replicas.values() if r.state is ReplicaState.WARMING]
            t_ready = min((r.ready_s for r in warming), default=float("inf"))
            t = min(t_arrival, t_ready)
            if t > until:
                break
            self._run_replicas(t)
            if t_ready <= t_arrival:
                for replica in warming:
                    if replica.ready_s <= t:
                        self._mark_ready(replica)
            else:
                _, seq_id, request = heapq.heappop(self._pending)
                self._route(seq_id, request)
        self._run_replicas(until)
        self.now = max(self.now, until)

    # --- observation ---------------------------------------------------------------------

    @property
    def gpu_seconds(self) -> float:
        """GPU-seconds held so far: every replica from creation to exit, at ``self.now``."""
        return sum(self.gpu_seconds_by_type().values())

    def gpu_seconds_by_type(self) -> dict[str, float]:
        """GPU-seconds held so far per GPU type (a mixed pool bills each at its price)."""
        out = dict(self._gone_gpu_s)
        for r in self.replicas.values():
            if r.state is not _GONE:
                name = r.perf.gpu.name
                out[name] = out.get(name, 0.0) + (self.now - r.created_s) * r.perf.gpus
        return out

    def replicas_by_type(self) -> dict[str, int]:
        """Serving replicas (warming, ready or draining) per GPU type."""
        out: dict[str, int] = {}
        for r in self.replicas.values():
            if r.state in _SERVING:
                out[r.perf.gpu.name] = out.get(r.perf.gpu.name, 0) + 1
        return out

    def count(self, state: ReplicaState) -> int:
        return sum(1 for r in self.replicas.values() if r.state is state)

    def sample_utilisation(self, now: float) -> None:
        for replica in self.replicas.values():
            if replica.state in _SERVING:
                replica.sample(now)

    def snapshot(self, now: float) -> PoolSnapshot:
        """Gauges at ``now`` and rates since the previous snapshot."""
        ready = [r for r in self.replicas.values() if r.state is ReplicaState.READY]
        totals = self._totals()
        elapsed = max(now - self._snap_at, 1e-9)
        delta = [(a - b) / elapsed for a, b in zip(totals, self._snap_totals, strict=True)]
        util = self._interval_util(ready, now)
        n_done = self._latency[0] - self._snap_latency[0]
        ttft = (self._latency[1] - self._snap_latency[1]) / n_done if n_done else None
        e2e = (self._latency[2] - self._snap_latency[2]) / n_done if n_done else None
        self._snap_at, self._snap_totals = now, totals
        self._snap_latency = (self._latency[0], self._latency[1], self._latency[2])
        serving = [r for r in self.replicas.values() if r.state in _SERVING]
        return PoolSnapshot(
            now=now,
            ready=len(ready),
            warming=self.count(ReplicaState.WARMING),
            draining=self.count(ReplicaState.DRAINING),
            running=sum(r.num_running for r in serving),
            waiting=sum(len(r.waiting) for r in serving) + len(self._held),
            kv_usage=sum(r.kv_usage for r in ready) / len(ready) if ready else 0.0,
            gpu_util=util,
            prompt_tokens_per_s=delta[0],
            generation_tokens_per_s=delta[1],
            completed_per_s=delta[2],
            ttft_mean_s=ttft,
            e2e_mean_s=e2e,
            rejected=self.rejected,
            lost=self.lost,
        )

    # --- internals -----------------------------------------------------------------------

    def _totals(self) -> tuple[float, float, float, float]:
        rs = self.replicas.values()
        return (
            float(sum(r.prompt_tokens for r in rs)),
            float(sum(r.generation_tokens for r in rs)),
            float(sum(r.successes for r in rs)),
            sum(r.busy_s for r in rs),
        )

    def _interval_util(self, ready: list[Replica], now: float) -> float:
        if not ready:
            return 0.0
        shares = []
        for r in ready:
            since = max(self._snap_at, r.ready_s)
            shares.append(min(1.0, (r.busy_s - r.snap_busy) / max(now - since, 1e-9)))
            r.snap_busy = r.busy_s
        return sum(shares) / len(shares)

    def _run_replicas(self, t: float) -> None:
        for replica in list(self.replicas.values()):
            if replica.state is ReplicaState.READY or replica.state is ReplicaState.DRAINING:
                replica.run_until(t, self._record)
                if replica.state is ReplicaState.DRAINING and replica.outstanding == 0:
                    drained = max(replica.drain_s or 0.0, replica.last_busy_end)
                    self._retire(replica, min(t, drained))

    def _record(self, completion: Completion) -> None:
        self.completed.append(completion)
        self._latency[0] += 1
        self._latency[1] += completion.ttft_s
        self._latency[2] += completion.e2e_s
        self._expected_output += _OUTPUT_EWMA_WEIGHT * (
            completion.output_tokens - self._expected_output
        )

    def _mark_ready(self, replica: Replica) -> None:
        replica.state = ReplicaState.READY
        replica.clock = replica.ready_s
        while self._held:
            seq_id, request = self._held.popleft()
            self._route(seq_id, request)

    def _retire(self, replica: Replica, at: float) -> None:
        replica.state = _GONE
        replica.gone_s = at
        name = replica.perf.gpu.name
        self._gone_gpu_s[name] = (
            self._gone_gpu_s.get(name, 0.0) + (at - replica.created_s) * replica.perf.gpus
        )
        del self.replicas[replica.name]

    def _route(self, seq_id: int, request: Request) -> None:
        ready = [r for r in self.replicas.values() if r.state is ReplicaState.READY]
        if not ready:
            if len(self._held) >= MAX_POOL_QUEUE:
                self.rejected += 1
            else:
                self._held.append((seq_id, request))
            return
        target = self._pick(ready, request)
        if not target.fits(request):
            self.rejected += 1  # longer than the KV cache: vLLM answers 400
            return
        target.enqueue(request, seq_id)

    def _pick(self, ready: list[Replica], request: Request) -> Replica:
        if self.routing == "round-robin":
            self._rr = (self._rr + 1) % len(ready)
            return ready[self._rr]
        if self.routing == "least-outstanding":
            return min(ready, key=lambda r: r.outstanding)
        if self.routing == "prefix-aware" and request.hash_ids:
            return self._prefix_aware(ready, request)
        return min(ready, key=lambda r: self._expected_delay(r, request))

    def _prefix_aware(self, ready: list[Replica], request: Request) -> Replica:
        """The replica holding the longest cached prefix of ``request``, unless its expected
        delay exceeds the best replica's by more than ``PREFIX_AFFINITY_BOUND`` times.

        Production routers make the same trade: AIBrix's prefix-cache router sends to the
        least-loaded matching pod unless running requests are imbalanced by more than a
        bound; SGLang's cache-aware router goes to the best-matching worker unless queues
        differ by more than an absolute and a relative threshold; vLLM's production stack
        scores cached share minus a weighted relative load. Here both sides are in seconds:
        each replica's expected delay already counts the prefill its cache saves, so the
        bound only decides how much queueing a cache hit is worth keeping the prefix in one
        place (rather than copying it into every replica's cache) for later requests.
        """
        cached = {r.name: r.cached_prefix_tokens(request) for r in ready}
        delay = {r.name: self._expected_delay(r, request, cached[r.name]) for r in ready}
        best = min(ready, key=lambda r: delay[r.name])
        holder = max(ready, key=lambda r: (cached[r.name], -delay[r.name]))
        if cached[holder.name] and delay[holder.name] <= PREFIX_AFFINITY_BOUND * delay[best.name]:
            return holder
        return best

    def _expected_delay(self, replica: Replica, request: Request, cached: int = 0) -> float:
        """Predicted end-to-end time of ``request`` on ``replica`` (shortest expected delay).

        The anchor is the shortest-expected-delay rule of queueing theory (IPVS's ``sed``
        scheduler): send the job where it would finish soonest given the work ahead of it.
        1. Prefill: the prompt tokens not prefilled yet on the replica (queued and partly
           done) plus this prompt's (less ``cached``, the prefix the replica already holds),
           at the rate the replica's engine prefills beside its decoding batch: with chunked
           prefill each iteration carries every decode and fills the rest of the token
           budget with prompt tokens, so a replica with a large decoding batch prefills
           slower. Prompt lengths are known to a router and vary a hundredfold in real
           traces, which is why a request count misleads.
        2. Decode: output lengths are not known, so every request is expected to produce the
           pool's running mean output; the request decodes in a batch of everything
           outstanding plus itself, at ``step_s(b)`` per token.
        3. If that batch would exceed ``max_concurrency`` or the KV cache, the surplus waits
           for slots, each freeing after about one mean decode divided by the batch size.
        """
        perf = replica.perf
        expected = self._expected_output
        prompts = replica.waiting_prompt_tokens + request.input_tokens - cached
        batch = replica.outstanding + 1
        limit = self.max_concurrency
        need = request.input_tokens + expected
        if replica.kv_reserved + need > perf.kv_capacity_tokens:
            limit = min(limit, replica.num_running)
        serving = min(batch, max(limit, 1))
        delay = _prefill_s(perf, prompts, len(replica.decoding)) + expected * perf.step_s(serving)
        surplus = batch - serving
        if surplus > 0:
            delay += surplus * expected * perf.step_s(serving) / serving
        return delay


def _prefill_s(perf: ReplicaPerf, prompt_tokens: int, decodes: int) -> float:
    """Time for ``perf``'s engine to prefill ``prompt_tokens`` beside ``decodes`` decoding
    sequences: whole chunked iterations of the budget the decodes leave, or, without chunked
    prefill, prefill-only passes of up to ``token_budget`` tokens."""
    if not perf.chunked_prefill:
        passes = math.ceil(prompt_tokens / perf.token_budget)
        return passes * ITERATION_OVERHEAD_S + perf.prefill_per_token_s * prompt_tokens
    room = max(1, perf.token_budget - decodes)
    return prompt_tokens / room * perf.iteration_s(decodes, room)


_GONE = ReplicaState.GONE
_SERVING = (ReplicaState.WARMING, ReplicaState.READY, ReplicaState.DRAINING)
