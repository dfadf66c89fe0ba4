"""What the back-tester shows the engine each tick, built from the pool as exporters would.

The live loop reads vLLM and dcgm-exporter series from Prometheus; here the same numbers come
from ``ServingPool.snapshot()`` and the requests the replay submits:

- the policy metric, per replica ("average", over the pods that export it: ready and
  draining, with that count beside it) or for the pool ("total"): ``vllm:num_requests_running``,
  ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` (0..1) and
  ``DCGM_FI_DEV_GPU_UTIL`` (0..100, busy share over the tick);
- offered work, as a gateway in front of the pool counts it: prompt tokens of the requests
  that arrived in the tick per second, and generation tokens per second = arrivals x the
  running mean output length of finished requests (output lengths are unknown on arrival,
  so the replay does not peek at them);
- TTFT p95 of the requests that finished in the tick (no point when none did);
- ``ReplicaCapacity`` from the GPU performance model (:func:`scaling.capacity.capacity_of`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from scaling.engine import PolicyParams
from scaling.engine.types import Series
from simulator.pool import PoolSnapshot
from simulator.replica import Completion, Request

SUPPORTED_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "DCGM_FI_DEV_GPU_UTIL",
)
HISTORY_S = 600.0  # the longest lookback any algorithm reads (predictive)
OUTPUT_PRIOR_TOKENS = 128.0  # expected output before any request finished (as the router's)
OUTPUT_EWMA_WEIGHT = 0.05


# With the offered-work signals the back-tester always provides, these never read the metric.
METRIC_FREE_ALGORITHMS = ("predictive", "slo")


def reads_metric(policy: PolicyParams) -> bool:
    """Whether the replay must produce the policy metric for this algorithm."""
    return policy.algorithm not in METRIC_FREE_ALGORITHMS or policy.metric in SUPPORTED_METRICS


def check_metric(policy: PolicyParams) -> None:
    """Raise ValueError when the algorithm reads a metric the replay cannot produce."""
    if policy.algorithm not in METRIC_FREE_ALGORITHMS and policy.metric not in SUPPORTED_METRICS:
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


class SignalHistory:
    """The rolling series the engine reads, kept for ``HISTORY_S`` seconds."""

    def __init__(self) -> None:
        self._series: dict[str, deque[tuple[float, float]]] = {
            name: deque() for name in ("metric", "pods", "rate", "prompt", "generation", "ttft_p95")
        }
        self.expected_output = OUTPUT_PRIOR_TOKENS

    def record(
        self,
        now: float,
        tick_s: float,
        metric: float | None,
        arrived: Sequence[Request],
        finished: Sequence[Completion],
        pods: int | None = None,
    ) -> None:
        """Append this tick's points and forget those older than the history. ``pods``:
        how many pods a per-replica ``metric`` averaged over."""
        for done in finished:
            self.expected_output += OUTPUT_EWMA_WEIGHT * (done.output_tokens - self.expected_output)
        if metric is not None:
            self._append("metric", now, metric)
            if pods is not None:
                self._append("pods", now, float(pods))
        self._append("rate", now, len(arrived) / tick_s)
        self._append("prompt", now, sum(r.input_tokens for r in arrived) / tick_s)
        self._append("generation", now, len(arrived) * self.expected_output / tick_s)
        ttft = percentile(sorted(c.ttft_s for c in finished), 95)
        if ttft is not None:
            self._append("ttft_p95", now, ttft)
        for points in self._series.values():
            while points and points[0][0] < now - HISTORY_S:
                points.popleft()

    def series(self, name: str) -> Series:
        return tuple(self._series[name])

    def _append(self, name: str, now: float, value: float) -> None:
        self._series[name].append((now, value))
