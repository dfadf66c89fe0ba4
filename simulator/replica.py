"""One inference replica (one vLLM engine): a FIFO queue, continuous batching, KV admission.

Event-driven, so an hour of traffic costs a few events per request rather than one Python
iteration per decode step. The scheduler is vLLM V1's, with chunked prefill (on by default
there; sources in docs/simulator.md). Every engine iteration has a token budget,
``perf.token_budget`` (vLLM's ``max_num_batched_tokens``):

1. Decodes first: every decoding sequence gets one token of the budget.
2. Then prefills, in FIFO order: first the prompts already partly prefilled, then waiting
   requests admitted while the batch has room (``max_concurrency`` sequences and KV cache
   for prompt + output); a prompt that does not fit the rest of the budget is cut into a
   chunk that does, and continues next iteration. The iteration that processes a prompt's
   last token emits its first token.
3. The iteration lasts ``perf.iteration_s(decodes, prompt_tokens)``.

While no prompt waits or is partly prefilled, iterations are pure decode steps of
``step_s(b)`` and the batch is constant between two events, so the engine jumps straight to
the earliest of (the next completion, the first step boundary at or after the caller's
horizon). With ``perf.chunked_prefill`` False the engine is vLLM V0's scheduler without
chunked prefill instead: a prefill iteration admits whole prompts (up to
``perf.token_budget`` prompt tokens, at least one prompt) and runs alone for
``prefill_s(tokens)``, stalling every decoding sequence.

Decode progress is one counter ``steps`` shared by the batch: a sequence that joins at
counter ``c`` with ``n`` tokens still to make finishes when ``steps`` reaches ``c + n``, so a
heap of finish counters gives the next completion in O(log b).

Admission reserves prompt + output tokens of KV, so sequences are never preempted (vLLM
would preempt and recompute; at the reservation level the difference is small).

Automatic prefix caching (vLLM's APC, docs.vllm.ai/en/latest/design/prefix_caching/): vLLM
hashes each full KV block by its tokens and the tokens before it, so a block hash names a
whole prefix, and a new request reuses the longest run of *leading* blocks already cached;
the first miss ends the hit (a later block cannot be reused without the ones before it). A
request carries ``hash_ids``, one per ``BLOCK_TOKENS`` block of its prompt (as public traces
publish them); the replica keeps an LRU of the block hashes it computed, at most
``kv_capacity_tokens // BLOCK_TOKENS`` of them (the KV cache's block count; blocks of
finished requests stay cached until evicted in LRU order). At admission the leading cached
blocks count as prefilled and only the rest is computed. Only full blocks are cached, and a
prompt that is entirely cached still computes its last token (as vLLM does, to get logits).
Simplification: cached blocks and the running sequences' KV are bounded separately, not
from one shared pool.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from performance import ReplicaPerf
from simulator.histogram import (
    E2E_BUCKETS,
    ITL_BUCKETS,
    PROMPT_TOKENS_BUCKETS,
    TTFT_BUCKETS,
    Histogram,
)

# vLLM's request_queue_time_seconds uses its request-latency buckets; the TTFT ones cover the
# same 1 ms .. 43 min range, and the live loop interpolates either the same way.
QUEUE_BUCKETS = TTFT_BUCKETS

BLOCK_TOKENS = 512  # tokens per hashed prefix block, as public traces publish hash_ids


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request: when it arrives and how many tokens go in and come out.

    ``hash_ids`` identify the prompt's ``BLOCK_TOKENS``-token blocks in order (empty: no
    prefix identity, nothing is ever reused).
    """

    arrival_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished request and its latencies (all in seconds of simulated time)."""

    arrival_s: float
    first_token_s: float
    finish_s: float
    input_tokens: int
    output_tokens: int
    replica: str
    scheduled_s: float | None = None  # admitted to the batch (None: not recorded)

    @property
    def queue_s(self) -> float:
        """Waiting before the engine scheduled it (vLLM's request_queue_time_seconds): the
        part of TTFT more capacity removes, unlike the prompt's own prefill."""
        scheduled = self.first_token_s if self.scheduled_s is None else self.scheduled_s
        return scheduled - self.arrival_s

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def itl_s(self) -> float:
        """Mean inter-token latency (0 for a single-token answer)."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)


class ReplicaState(str, Enum):
    WARMING = "warming"
    READY = "ready"
    DRAINING = "draining"
    GONE = "gone"


class _Seq:
    __slots__ = ("cached", "first_token_s", "join", "request", "scheduled_s", "seq_id")

    def __init__(self, request: Request, seq_id: int) -> None:
        self.request = request
        self.seq_id = seq_id
        self.first_token_s = 0.0
        self.scheduled_s = 0.0
        self.join = 0
        self.cached = 0  # prompt tokens found in the prefix cache at admission


class _Prefill:
    """A sequence admitted to the batch whose prompt is not fully prefilled yet."""

    __slots__ = ("left", "seq")

    def __init__(self, seq: _Seq) -> None:
        self.seq = seq
        self.left = seq.request.input_tokens - seq.cached


CompletionSink = Callable[[Completion], None]


class Replica:
    """A single engine. ``clock`` is the end of the last iteration it has committed to."""

    def __init__(
        self, name: str, perf: ReplicaPerf, max_concurrency: int, created_s: float, ready_s: float
    ) -> None:
        self.name = name
        self.perf = perf
        self.max_concurrency = max_concurrency
        self.created_s = created_s
        self.ready_s = ready_s
        self.gone_s: float | None = None
        self.state = ReplicaState.WARMING
        self.clock = ready_s
        self.last_busy_end = ready_s  # end of the last real iteration (clock also idles)
        self.drain_s: float | None = None
        self.waiting: deque[_Seq] = deque()
        self.prefilling: deque[_Prefill] = deque()  # admitted, prompt partly prefilled
        self.decoding: list[tuple[int, int, _Seq]] = []  # heap of (finish counter, id, seq)
        self.steps = 0
        self.kv_reserved = 0
        self.waiting_prompt_tokens = 0  # prompt tokens not prefilled yet (queued or partial)
        self._prefilled_tokens = 0  # KV held by the prompts partly prefilled
        self._running_input = 0
        self._running_join = 0
        self._running_finish = 0
        # Cumulative statistics, exported as vLLM counters and histograms.
        self.busy_s = 0.0
        self.work_s = 0.0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.successes = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.queue = Histogram(QUEUE_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.prompt_lengths = Histogram(PROMPT_TOKENS_BUCKETS)  # vLLM's request_prompt_tokens
        # Utilisation over the last sampling interval, for dcgm-exporter gauges.
        self.util = 0.0
        self.activity = 0.0
        self._sampled_at = ready_s
        self._sampled_busy = 0.0
        self._sampled_work = 0.0
        self.snap_busy = 0.0  # busy_s at the pool's previous snapshot
        # Automatic prefix caching: block hash -> None, least recently used first.
        self.prefix_cache: OrderedDict[int, None] = OrderedDict()
        self.prefix_cache_blocks = perf.kv_capacity_tokens // BLOCK_TOKENS
        self.prefix_cache_queries = 0  # prompt tokens admitted (vLLM's prefix_cache_queries)
        self.prefix_cache_hits = 0  # of those, tokens found cached (prefix_cache_hits)

    # --- queries -------------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        """Sequences in the batch (vLLM's num_requests_running): decoding or prefilling."""
        return len(self.decoding) + len(self.prefilling)

    @property
    def running(self) -> list[_Seq]:
        """The sequences in the batch, decoding ones first."""
        return [seq for _, _, seq in self.decoding] + [p.seq for p in self.prefilling]

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + self.num_running

    @property
    def generated_by_running(self) -> int:
        """Tokens decoded so far by the sequences still decoding."""
        return len(self.decoding) * self.steps - self._running_join

    @property
    def kv_used_tokens(self) -> int:
        return self._running_input + self.generated_by_running + self._prefilled_tokens

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.kv_used_tokens / self.perf.kv_capacity_tokens)

    @property
    def remaining_decode_tokens(self) -> int:
        return self._running_finish - len(self.decoding) * self.steps

    def fits(self, request: Request) -> bool:
        """Whether the request could ever be admitted (vLLM rejects longer ones)."""
        return request.input_tokens + request.output_tokens <= self.perf.kv_capacity_tokens

    def cached_prefix_tokens(self, request: Request) -> int:
        """Prompt tokens of ``request`` this replica would find in its prefix cache now:
        the leading full blocks whose hashes it holds, stopping at the first miss, and
        never the whole prompt (the last token is always computed)."""
        full = min(len(request.hash_ids), request.input_tokens // BLOCK_TOKENS)
        hits = 0
        cache = self.prefix_cache
        while hits < full and request.hash_ids[hits] in cache:
            hits += 1
        return min(hits * BLOCK_TOKENS, request.input_tokens - 1)

    # --- commands ------------------------------------------------------------------------

    def enqueue(self, request: Request, seq_id: int) -> None:
        self.waiting.append(_Seq(request, seq_id))
        self.waiting_prompt_tokens += request.input_tokens

    def abandon(self) -> int:
        """Drop everything in flight (the pod was killed); returns how many were lost."""
        lost = self.outstanding
        self.waiting.clear()
        self.prefilling.clear()
        self.decoding.clear()
        self.kv_reserved = self.waiting_prompt_tokens = self._prefilled_tokens = 0
        self._running_input = self._running_join = self._running_finish = 0
        return lost

    def sample(self, now: float, smoothing: float = 0.5) -> None:
        """Update ``util`` and ``activity`` from the busy time since the last sample.

        Iterations are committed up to one step ahead of ``now``, so a single interval can
        read above 1; clamping and smoothing make it read like DCGM's 1 s sampling.
        """
        elapsed = now - self._sampled_at
        if elapsed <= 0:
            return
        busy = min(1.0, (self.busy_s - self._sampled_busy) / elapsed)
        work = min(1.0, (self.work_s - self._sampled_work) / elapsed)
        self.util = smoothing * self.util + (1 - smoothing) * busy
        self.activity = smoothing * self.activity + (1 - smoothing) * work
        self._sampled_at, self._sampled_busy, self._sampled_work = now, self.busy_s, self.work_s

    def run_until(self, horizon: float, sink: CompletionSink) -> None:
        """Commit iterations that start before ``horizon``; completions go to ``sink``."""
        chunked = self.perf.chunked_prefill
        while self.clock < horizon:
            admissible = bool(self.waiting) and self._can_admit(self.waiting[0].request)
            if chunked and (self.prefilling or admissible) and self._chunk_room() > 0:
                self._iterate(sink)
            elif admissible and not chunked:
                self._prefill(sink)
            elif self.decoding:
                self._decode(horizon, sink)
            else:
                self.clock = horizon  # idle
                continue
            self.last_busy_end = self.clock

    # --- engine iterations ---------------------------------------------------------------

    def _can_admit(self, request: Request) -> bool:
        if self.num_running >= self.max_concurrency:
            return False
        need = request.input_tokens + request.output_tokens
        return self.kv_reserved + need <= self.perf.kv_capacity_tokens

    def _admit(self) -> _Seq:
        seq = self.waiting.popleft()
        seq.scheduled_s = max(self.clock, seq.request.arrival_s)  # its iteration starts now
        request = seq.request
        self.kv_reserved += request.input_tokens + request.output_tokens
        seq.cached = self.cached_prefix_tokens(request)
        for block in request.hash_ids[: seq.cached // BLOCK_TOKENS]:
            self.prefix_cache.move_to_end(block)  # a hit is a use: it refreshes the LRU
        self.waiting_prompt_tokens -= seq.cached
        self.prompt_tokens += seq.cached  # vLLM counts cached prompt tokens as prompt tokens
        self.prefix_cache_queries += request.input_tokens
        self.prefix_cache_hits += seq.cached
        return seq

    def _cache_prefix(self, request: Request) -> None:
        """The prompt is prefilled: its full blocks are cached, evicting the least recently
        used beyond the KV cache's block count. (vLLM caches each block as soon as it is
        full; caching at the end of the prompt only delays hits between concurrent
        requests that share a prefix.)"""
        cache = self.prefix_cache
        for block in request.hash_ids[: request.input_tokens // BLOCK_TOKENS]:
            cache[block] = None
            cache.move_to_end(block)
        while len(cache) > self.prefix_cache_blocks:
            cache.popitem(last=False)

    def _chunk_room(self) -> int:
        """Prompt tokens the next iteration can take: the budget the decodes leave."""
        return self.perf.token_budget - len(self.decoding)

    def _iterate(self, sink: CompletionSink) -> None:
        """One chunked-prefill iteration: every decode gains a token, prompts fill the rest."""
        decodes = len(self.decoding)
        room = self._chunk_room()
        chunks: list[tuple[_Prefill, int]] = []
        tokens = 0
        for partial in self.prefilling:  # prompts already partly prefilled, in FIFO order
            if tokens == room:
                break
            take = min(partial.left, room - tokens)
            chunks.append((partial, take))
            tokens += take
        while tokens < room and self.waiting and self._can_admit(self.waiting[0].request):
            partial = _Prefill(self._admit())
            self._prefilled_tokens += partial.seq.cached  # the cached prefix holds KV already
            self.prefilling.append(partial)
            take = min(partial.left, room - tokens)
            chunks.append((partial, take))
            tokens += take
        duration = self.perf.iteration_s(decodes, tokens)
        self.clock += duration
        self.busy_s += duration
        self.work_s += duration  # a prompt chunk makes the pass compute-bound
        self.waiting_prompt_tokens -= tokens
        self.prompt_tokens += tokens
        self._prefilled_tokens += tokens
        if decodes:
            self._advance_decodes(1, decodes, duration, sink)
        for partial, take in chunks:
            partial.left -= take
        while self.prefilling and self.prefilling[0].left == 0:
            seq = self.prefilling.popleft().seq
            self._prefilled_tokens -= seq.request.input_tokens
            self._first_token(seq, sink)

    def _prefill(self, sink: CompletionSink) -> None:
        """One prefill-only iteration (no chunked prefill): whole prompts, decodes stall."""
        batch: list[_Seq] = []
        tokens = 0
        while self.waiting and self.num_running + len(batch) < self.max_concurrency:
            request = self.waiting[0].request
            need = request.input_tokens + request.output_tokens
            over_budget = batch and tokens + request.input_tokens > self.perf.token_budget
            if over_budget or self.kv_reserved + need > self.perf.kv_capacity_tokens:
                break
            seq = self._admit()
            batch.append(seq)
            tokens += request.input_tokens - seq.cached
        duration = self.perf.prefill_s(tokens)
        self.clock += duration
        self.busy_s += duration
        self.work_s += duration
        self.waiting_prompt_tokens -= tokens
        self.prompt_tokens += tokens
        for seq in batch:
            self._first_token(seq, sink)

    def _first_token(self, seq: _Seq, sink: CompletionSink) -> None:
        """The iteration that ended at ``clock`` finished ``seq``'s prompt: its first token."""
        seq.first_token_s = self.clock
        self.generation_tokens += 1
        if seq.request.hash_ids:
            self._cache_prefix(seq.request)
        self.ttft.observe(self.clock - seq.request.arrival_s)
        remaining = seq.request.output_tokens - 1
        if remaining <= 0:
            self._finish(seq, sink)
            return
        seq.join = self.steps
        finish = self.steps + remaining
        heapq.heappush(self.decoding, (finish, seq.seq_id, seq))
        self._running_input += seq.request.input_tokens
        self._running_join += self.steps
        self._running_finish += finish

    def _decode(self, horizon: float, sink: CompletionSink) -> None:
        """Pure decode steps up to the next completion or the first one past ``horizon``."""
        batch = len(self.decoding)
        step = self.perf.step_s(batch)
        to_finish = self.decoding[0][0] - self.steps
        to_horizon = math.ceil((horizon - self.clock) / step)
        n = max(1, min(to_finish, to_horizon))
        self.clock += n * step
        self.busy_s += n * step
        self.work_s += n * step * self.perf.decode_intensity(batch)
        self._advance_decodes(n, batch, step, sink)

    def _advance_decodes(self, n: int, batch: int, step: float, sink: CompletionSink) -> None:
        """Every decoding sequence gained ``n`` tokens, one per iteration of ``step``."""
        self.steps += n
        self.generation_tokens += n * batch
        self.itl.observe(step, n * batch)
        while self.decoding and self.decoding[0][0] <= self.steps:
            finish, _, seq = heapq.heappop(self.decoding)
            self._running_input -= seq.request.input_tokens
            self._running_join -= seq.join
            self._running_finish -= finish
            self._finish(seq, sink)

    def _finish(self, seq: _Seq, sink: CompletionSink) -> None:
        request = seq.request
        self.kv_reserved -= request.input_tokens + request.output_tokens
        self.successes += 1
        self.e2e.observe(self.clock - request.arrival_s)
        # vLLM records queue time with the finished request's stats, so does the exporter.
        self.queue.observe(seq.scheduled_s - request.arrival_s)
        self.prompt_lengths.observe(request.input_tokens)  # whole prompt, cached part included
        sink(
            Completion(
                arrival_s=request.arrival_s,
                first_token_s=seq.first_token_s,
                finish_s=self.clock,
                input_tokens=request.input_tokens,
                output_tokens=request.output_tokens,
                replica=self.name,
                scheduled_s=seq.scheduled_s,
            )
        )
