"""What the back-tester shows the engine each tick, built from the pool as exporters would.

The live loop reads vLLM and dcgm-exporter series from Prometheus; here the same numbers come
from ``ServingPool.snapshot()`` and the requests the replay submits:

- the policy metric, per replica ("average", over the pods that export it: ready and
  draining, with that count beside it) or for the pool ("total"): ``vllm:num_requests_running``,
  ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` (0..1) and
  ``DCGM_FI_DEV_GPU_UTIL`` (0..100, busy share over the tick);
- offered work, as a gateway in front of the pool counts it: prompt tokens of the requests
  that arrived in the tick per second, less those the replicas' prefix caches served in the
  tick (their ``prefix_cache_hits``, over replicas seen at both ends of the tick, as the live
  loop takes the rate of vLLM's counter: cached tokens need no prefill), and generation
  tokens per second = arrivals x the running mean output length of finished requests
  (output lengths are unknown on arrival, so the replay does not peek at them);
- TTFT p95 of the requests that finished in the tick (no point when none did), and the p95
  of their queueing delay (arrival to first scheduled step, vLLM's
  ``request_queue_time_seconds``), which a prompt too long for the objective does not inflate;
- ``ReplicaCapacity`` from the GPU performance model (:func:`scaling.capacity.capacity_of`).

Each tick becomes a ``scaling.signals.SignalTick``, recorded in the same ``SignalHistory`` the
live loop keeps, for as long as the engine says the policy's algorithm reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scaling.engine import METRIC, PolicyParams, ReplicaCapacity, needs_metric, reads
from scaling.signals import SignalTick
from simulator.pool import PoolSnapshot
from simulator.replica import Completion, Request

SUPPORTED_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "DCGM_FI_DEV_GPU_UTIL",
)
OUTPUT_PRIOR_TOKENS = 128.0  # expected output before any request finished (as the router's)
OUTPUT_EWMA_WEIGHT = 0.05


def reads_metric(policy: PolicyParams) -> bool:
    """Whether the replay produces the policy metric: the algorithm reads it (as its demand
    signal, or as the fallback behind offered work, when the replay can produce it)."""
    if METRIC not in reads(policy):
        return False
    return needs_metric(policy) or policy.metric in SUPPORTED_METRICS


def check_metric(policy: PolicyParams) -> None:
    """Raise ValueError when the algorithm needs a metric the replay cannot produce (one
    reading offered work, which the replay always provides, does not)."""
    if needs_metric(policy) and policy.metric not in SUPPORTED_METRICS:
        supported = ", ".join(SUPPORTED_METRICS)
        raise ValueError(f"metric {policy.metric!r} cannot be back-tested; use one of {supported}")


def metric_pods(metric: str, snap: PoolSnapshot) -> int:
    """How many pods a per-replica value of ``metric`` averages over: those exporting it
    (ready and draining) for request counts, the ready ones for KV cache and GPU use."""
    if metric in ("vllm:kv_cache_usage_perc", "DCGM_FI_DEV_GPU_UTIL"):
        return snap.ready
    return snap.ready + snap.draining


def metric_value(metric: str, aggregation: str, snap: PoolSnapshot) -> float | None:
    """The policy metric at this snapshot; None when no pod exports it (no point)."""
    if metric == "vllm:num_requests_running":
        total = float(snap.running)
    elif metric == "vllm:num_requests_waiting":
        total = float(snap.waiting)
    elif metric == "vllm:kv_cache_usage_perc":
        total = snap.kv_usage * snap.ready
    elif metric == "DCGM_FI_DEV_GPU_UTIL":
        total = snap.gpu_util * 100.0 * snap.ready
    else:
        raise ValueError(f"metric {metric!r} cannot be back-tested; use one of {SUPPORTED_METRICS}")
    if aggregation == "total":
        return total
    pods = metric_pods(metric, snap)
    return total / pods if pods else None


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


class Gateway:
    """Offered work and TTFT as a gateway in front of the pool counts them, per tick."""

    def __init__(self, policy: PolicyParams, tick_s: float) -> None:
        self.policy, self.tick_s = policy, tick_s
        self.reads_metric = reads_metric(policy)
        self.expected_output = OUTPUT_PRIOR_TOKENS
        self.cache_hits: Mapping[str, int] = {}

    def tick(
        self,
        snap: PoolSnapshot,
        current: int,
        arrived: Sequence[Request],
        finished: Sequence[Completion],
        capacity: ReplicaCapacity,
        cache_hits: Mapping[str, int] | None = None,
    ) -> SignalTick:
        """What the live loop would have observed at the end of this tick. ``cache_hits``:
        each replica's cumulative prefix-cache hits (tokens) now."""
        for done in finished:
            self.expected_output += OUTPUT_EWMA_WEIGHT * (done.output_tokens - self.expected_output)
        policy, now = self.policy, snap.now
        value = metric_value(policy.metric, policy.aggregation, snap) if self.reads_metric else None
        average = self.reads_metric and policy.aggregation == "average"
        return SignalTick(
            now=now,
            current=current,
            ready=snap.ready,
            warming=snap.warming,
            metric=None if value is None else (now, value),
            metric_pods=float(metric_pods(policy.metric, snap)) if average else None,
            prompt_tokens_per_s=self._prompt_tokens(arrived, cache_hits or {}) / self.tick_s,
            generation_tokens_per_s=len(arrived) * self.expected_output / self.tick_s,
            ttft_p95_s=percentile(sorted(c.ttft_s for c in finished), 95),
            queue_p95_s=percentile(sorted(c.queue_s for c in finished), 95),
            capacity=capacity,
        )

    def _prompt_tokens(self, arrived: Sequence[Request], cache_hits: Mapping[str, int]) -> float:
        """Prompt tokens of the tick's arrivals less the tokens the prefix caches served in
        it. Arrivals are counted on arrival and hits at admission, so a tick that admits
        queued requests could go below zero: it is floored there (no work, not negative)."""
        before, self.cache_hits = self.cache_hits, dict(cache_hits)
        served = sum(hits - before[name] for name, hits in cache_hits.items() if name in before)
        return max(0.0, float(sum(r.input_tokens for r in arrived) - served))
