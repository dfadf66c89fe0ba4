"""What the live dashboard shows, computed from one metrics read per cluster per tick.

Pure code: no Django, no I/O, no clock. The poller (``dashboard.poller``) reads the samples and
the database rows, and this module turns them into the values of each workload's charts and
the fleet's heatmap, remembering the last good value of every series so that a series whose
source went quiet is reported *stale* (drawn as a gap) instead of zero.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clusters.metrics import Sample

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GPU_MEM = "DCGM_FI_DEV_FB_USED"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
TTFT_BUCKET = "vllm:time_to_first_token_seconds_bucket"
BASE_METRICS = (GPU_UTIL, GPU_MEM, RUNNING, WAITING, KV_CACHE, TTFT_BUCKET)

# TTFT p95 is taken over the histogram's increase in this window (like rate(...[30s])).
TTFT_WINDOW_S = 30.0
HISTORY_POINTS = 300  # five minutes at 1 Hz kept per workload for a snapshot

Value = float | dict[str, float] | None


@dataclass(frozen=True)
class PolicyView:
    """The policy fields the charts draw: the target and the tolerance band around it."""

    version: int
    algorithm: str
    mode: str
    metric: str
    aggregation: str
    target: float | None  # None: an algorithm without a target (predictive, slo)
    upper: float | None
    lower: float | None
    min_replicas: int
    max_replicas: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class WorkloadRef:
    """A workload as the poller loaded it from the database this tick."""

    id: int
    tenant_id: int
    cluster_id: int
    namespace: str
    deployment: str
    gpus_per_replica: int
    policy: PolicyView | None

    def owns_pod(self, namespace: str, pod: str) -> bool:
        # ReplicaSet pods are named <deployment>-<template hash>-<5 chars>.
        return namespace == self.namespace and pod.rsplit("-", 2)[0] == self.deployment


@dataclass(frozen=True)
class ClusterRead:
    """One cluster's samples this tick; ``samples`` is None when the read failed."""

    cluster_id: int
    name: str
    samples: Mapping[str, list[Sample]] | None
    error: str = ""


def thresholds(target: float, up_tolerance: float, down_tolerance: float) -> tuple[float, float]:
    """The metric values above which the policy scales up and below which it scales down."""
    return target * (1 + up_tolerance), target * (1 - down_tolerance)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts keyed by upper bound:
    linear interpolation inside the bucket holding rank q x total; None without observations.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class SeriesMemory:
    """Last good value and its source time per series, so a quiet source turns stale."""

    last: dict[str, tuple[Value, float]] = field(default_factory=dict)

    def update(self, fresh: Mapping[str, tuple[Value, float]], read_ok: bool) -> None:
        if not read_ok:
            return  # keep what we had: it ages into "stale"
        # A series the source no longer reports (a replica gone) is missing, not stale; so is
        # a nonsensical value (NaN, infinity), which must never be drawn or counted.
        self.last = {k: (finite(v), t) for k, (v, t) in fresh.items() if finite(v) is not None}

    def current(self, now: float, stale_after: float) -> tuple[dict[str, Value], list[str]]:
        values: dict[str, Value] = {}
        stale = []
        for key, (value, stamp) in self.last.items():
            if now - stamp > stale_after:
                values[key] = None
                stale.append(key)
            else:
                values[key] = value
        return values, sorted(stale)


@dataclass
class WorkloadLive:
    """Everything one workload's page streams: the current point and a bounded history."""

    ref: WorkloadRef
    memory: SeriesMemory = field(default_factory=SeriesMemory)
    ttft_window: deque[tuple[float, dict[float, float]]] = field(default_factory=deque)
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    point: dict[str, Any] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    def observe(self, read: ClusterRead | None, now: float, stale_after: float) -> list[str]:
        """Fold this tick's read in; returns the series that *became* stale this tick."""
        if read is not None and read.samples is not None:
            self.memory.update(self._fresh(read.samples, now), read_ok=True)
        values, stale = self.memory.current(now, stale_after)
        newly = [key for key in stale if key not in self.stale]
        self.stale = stale
        self.point = {"t": now, "values": values, "stale": stale}
        self.history.append(self.point)
        return newly

    def _fresh(self, samples: Mapping[str, list[Sample]], now: float) -> dict[str, Any]:
        mine = {
            name: [s for s in found if self.ref.owns_pod(s.label("namespace"), s.label("pod"))]
            for name, found in samples.items()
        }
        fresh: dict[str, tuple[Value, float]] = {}
        serving = {s.label("pod") for s in mine.get(RUNNING, [])}
        holding = {s.label("pod") for s in mine.get(GPU_UTIL, [])}
        stamp = _stamp(mine.get(GPU_UTIL, []) + mine.get(RUNNING, []), now)
        fresh["ready"] = (float(len(serving)), stamp)
        fresh["warming"] = (float(len(holding - serving)), stamp)
        for key, name in (("queue", WAITING), ("running", RUNNING), ("kv_cache", KV_CACHE)):
            if mine.get(name):
                fresh[key] = (sum(s.value for s in mine[name]), _stamp(mine[name], now))
        for key, name in (("gpu_util", GPU_UTIL), ("gpu_mem", GPU_MEM)):
            if mine.get(name):
                fresh[key] = (_per_replica(mine[name]), _stamp(mine[name], now))
        metric = self._policy_metric(mine)
        if metric is not None:
            fresh["metric"] = metric
        ttft = self._ttft_p95(mine.get(TTFT_BUCKET, []), now)
        if ttft is not None:
            fresh["ttft_p95"] = (ttft, _stamp(mine[TTFT_BUCKET], now))
        return fresh

    def _policy_metric(self, mine: Mapping[str, list[Sample]]) -> tuple[float, float] | None:
        policy = self.ref.policy
        if policy is None or not mine.get(policy.metric):
            return None
        found = [s for s in mine[policy.metric] if math.isfinite(s.value)]
        if not found:
            return None
        total = sum(s.value for s in found)
        value = total if policy.aggregation == "total" else total / len(found)
        return value, _stamp(found, 0.0)

    def _ttft_p95(self, buckets: list[Sample], now: float) -> float | None:
        counts: dict[float, float] = {}
        for sample in buckets:
            bound = float(sample.label("le") or "inf")
            counts[bound] = counts.get(bound, 0.0) + sample.value
        if not counts:
            return None
        self.ttft_window.append((now, counts))
        while self.ttft_window and self.ttft_window[0][0] < now - TTFT_WINDOW_S:
            self.ttft_window.popleft()
        _, oldest = self.ttft_window[0]
        increase = {b: c - oldest.get(b, 0.0) for b, c in counts.items()}
        if any(value < 0 for value in increase.values()):
            increase = counts  # a replica restarted: its counters reset
        return histogram_quantile(0.95, increase)

    def snapshot(self) -> dict[str, Any]:
        return {
            "workload": self.ref.id,
            "policy": self.ref.policy.as_dict() if self.ref.policy else None,
            "history": list(self.history),
        }


def finite(value: Value) -> Value:
    """The value without NaN or infinities (None when nothing finite is left)."""
    if isinstance(value, dict):
        kept = {k: v for k, v in value.items() if math.isfinite(v)}
        return kept or None
    if value is None or not math.isfinite(value):
        return None
    return value


def _stamp(samples: Iterable[Sample], default: float) -> float:
    """The source time of an aggregate: its oldest sample."""
    return min((s.timestamp for s in samples), default=default)


def _per_replica(samples: list[Sample]) -> dict[str, float]:
    """Per pod, the mean over its GPUs (a replica may hold several)."""
    by_pod: dict[str, list[float]] = {}
    for sample in samples:
        by_pod.setdefault(sample.label("pod"), []).append(sample.value)
    return {pod: sum(vals) / len(vals) for pod, vals in sorted(by_pod.items())}


@dataclass(frozen=True)
class GpuCell:
    """One GPU of the fleet heatmap."""

    cluster: str
    host: str
    gpu: str
    model: str
    util: float | None
    memory_mib: float | None
    state: str  # busy | warming | idle
    tenant_id: int | None
    workload_id: int | None
    stamp: float


@dataclass
class FleetLive:
    """The fleet heatmap: the last good cells of every cluster, aged into stale."""

    cells: dict[int, list[GpuCell]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def observe(self, reads: Iterable[ClusterRead], workloads: Iterable[WorkloadRef]) -> None:
        refs = list(workloads)
        for read in reads:
            self.names[read.cluster_id] = read.name
            if read.samples is not None:
                mine = [w for w in refs if w.cluster_id == read.cluster_id]
                self.cells[read.cluster_id] = _cells(read, mine)

    def forget(self, keep: set[int]) -> None:
        for cluster_id in set(self.cells) - keep:
            del self.cells[cluster_id]

    def view(self, now: float, stale_after: float) -> tuple[list[GpuCell], list[str]]:
        """All cells; a stale cell keeps its place but loses its values."""
        cells, stale_clusters = [], []
        for cluster_id, found in sorted(self.cells.items(), key=lambda kv: self.names[kv[0]]):
            is_stale = bool(found) and now - min(c.stamp for c in found) > stale_after
            if is_stale:
                stale_clusters.append(self.names[cluster_id])
                found = [_blank(cell) for cell in found]
            cells.extend(found)
        return cells, stale_clusters


def _blank(cell: GpuCell) -> GpuCell:
    return GpuCell(**{**cell.__dict__, "util": None, "memory_mib": None, "state": "stale"})


def _cells(read: ClusterRead, workloads: list[WorkloadRef]) -> list[GpuCell]:
    samples = read.samples or {}
    serving = {(s.label("namespace"), s.label("pod")) for s in samples.get(RUNNING, [])}
    memory = {_gpu_key(s): s.value for s in samples.get(GPU_MEM, [])}
    cells = []
    for sample in samples.get(GPU_UTIL, []):
        namespace, pod = sample.label("namespace"), sample.label("pod")
        owner = next((w for w in workloads if pod and w.owns_pod(namespace, pod)), None)
        state = "idle" if not pod else "busy" if (namespace, pod) in serving else "warming"
        cells.append(
            GpuCell(
                cluster=read.name,
                host=sample.label("Hostname"),
                gpu=sample.label("gpu"),
                model=sample.label("modelName"),
                util=sample.value if math.isfinite(sample.value) else None,
                memory_mib=_finite_or_none(memory.get(_gpu_key(sample))),
                state=state,
                tenant_id=owner.tenant_id if owner else None,
                workload_id=owner.id if owner else None,
                stamp=sample.timestamp,
            )
        )
    return sorted(cells, key=lambda c: (c.host, int(c.gpu) if c.gpu.isdigit() else 0))


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _gpu_key(sample: Sample) -> tuple[str, str]:
    return sample.label("Hostname"), sample.label("gpu")
