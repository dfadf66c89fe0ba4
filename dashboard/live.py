"""What the live dashboard shows, computed from one read per cluster per tick.

Pure code: no Django, no I/O, no clock. The poller (``dashboard.poller``) reads the cluster's
Deployments, pods and metric samples and the database rows, and this module turns them into
the values of each workload's charts and the fleet's heatmap, remembering the last good value
of every series so that a series whose source went quiet is reported *stale* (drawn as a gap)
instead of zero.

The chart of a policy's metric shows what the engine acts on: the same pods (the
Deployment's selector, ``observe.pods_of``), the same per-pod averaging and aggregation
(``observe.policy_value``) and the same histogram quantile (``observe.histogram_quantile``)
as the control loop. Only the clock differs: the chart is drawn every second, the loop
decides every ``CONTROL_LOOP_INTERVAL``; at the loop's tick both read the same value.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from clusters.kubernetes import DeploymentState, PodState
from clusters.metrics import Sample
from scaling import observe
from scaling.observe import (
    GPU_MEMORY_USED,
    GPU_UTIL,
    KV_CACHE_USAGE,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    TTFT_BUCKETS,
)

GAUGES = (GPU_UTIL, GPU_MEMORY_USED, REQUESTS_RUNNING, REQUESTS_WAITING, KV_CACHE_USAGE)
BASE_METRICS = (*GAUGES, TTFT_BUCKETS)

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
class TypeRef:
    """One GPU type of a workload on several (scaling.variants), the primary first: its
    Deployment, and the replicas the control loop's latest evaluation set for it
    (``scaling.status.TypeStatus.desired``; None before the loop has evaluated the mix)."""

    gpu_type: str
    deployment: str
    desired: int | None = None
    warning: str = ""


@dataclass(frozen=True)
class WorkloadRef:
    """A workload as the poller loaded it from the database this tick; ``types`` only for a
    workload on several GPU types."""

    id: int
    tenant_id: int
    cluster_id: int
    namespace: str
    deployment: str
    gpus_per_replica: int
    policy: PolicyView | None
    types: tuple[TypeRef, ...] = ()
    mix: str = ""  # the latest mix line (scaling.status.WorkloadStatus.mix)


@dataclass(frozen=True)
class ClusterRead:
    """One cluster's Deployments, pods and samples this tick; ``samples`` is None when the
    read failed (any of the three: without the pods no sample has an owner)."""

    cluster_id: int
    name: str
    samples: Mapping[str, list[Sample]] | None
    error: str = ""
    deployments: Mapping[tuple[str, str], DeploymentState] = field(default_factory=dict)
    pods: dict[str, list[PodState]] = field(default_factory=dict)  # by namespace

    def index(self, metric: str) -> observe.PodIndex:
        """The metric's samples by (namespace, pod), built once per tick and metric."""
        if metric not in self._indexes:
            found = (self.samples or {}).get(metric, ())
            self._indexes[metric] = observe.index_by_pod(found)
        return self._indexes[metric]

    @cached_property
    def _indexes(self) -> dict[str, observe.PodIndex]:
        return {}

    def pods_of(self, namespace: str, deployment: str) -> set[str] | None:
        """The names of the Deployment's pods (its selector, as the loop matches them);
        None when the cluster has no such Deployment."""
        found = self.deployments.get((namespace, deployment))
        if found is None:
            return None
        return {pod.name for pod in observe.pods_of(found, self.pods)}

    @cached_property
    def owners(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(namespace, pod) -> (namespace, Deployment) for every pod a Deployment selects."""
        owned: dict[tuple[str, str], tuple[str, str]] = {}
        for key, deployment in self.deployments.items():
            for pod in observe.pods_of(deployment, self.pods):
                owned.setdefault((pod.namespace, pod.name), key)
        return owned


def thresholds(target: float, up_tolerance: float, down_tolerance: float) -> tuple[float, float]:
    """The metric values above which the policy scales up and below which it scales down."""
    return target * (1 + up_tolerance), target * (1 - down_tolerance)


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
    ttft_window: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    point: dict[str, Any] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    # Each GPU type's ready replicas (its Deployment's status as listed this tick), aged into
    # stale like the chart series but kept apart from them: they are rows, not lines.
    type_memory: SeriesMemory = field(default_factory=SeriesMemory)
    types: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, read: ClusterRead | None, now: float, stale_after: float) -> list[str]:
        """Fold this tick's read in; returns the series that *became* stale this tick."""
        if read is not None and read.samples is not None:
            self.memory.update(self._fresh(read, now), read_ok=True)
            self.type_memory.update(self._type_ready(read, now), read_ok=True)
        values, stale = self.memory.current(now, stale_after)
        newly = [key for key in stale if key not in self.stale]
        self.stale = stale
        self.point = {"t": now, "values": values, "stale": stale}
        self.history.append(self.point)
        self.types = self._types_now(now, stale_after)
        return newly

    def _type_ready(self, read: ClusterRead, now: float) -> dict[str, tuple[Value, float]]:
        """Each GPU type's ready and warming replicas as its Deployment reports them; a
        Deployment the cluster does not list is missing (no value), not zero."""
        counts: dict[str, tuple[Value, float]] = {}
        for t in self.ref.types:
            found = read.deployments.get((self.ref.namespace, t.deployment))
            if found is not None:
                counts[f"ready:{t.gpu_type}"] = (float(found.ready_replicas), now)
                counts[f"warming:{t.gpu_type}"] = (float(found.warming_replicas), now)
        return counts

    def _types_now(self, now: float, stale_after: float) -> list[dict[str, Any]]:
        """The rows of the "GPU types" section and of the fleet's per-type counts: ready and
        warming are None when stale or missing (drawn as such, never 0)."""
        values, stale = self.type_memory.current(now, stale_after)

        def count(key: str) -> int | None:
            found = values.get(key)
            return int(found) if isinstance(found, float) else None

        return [
            {
                "gpu_type": t.gpu_type,
                "ready": count(f"ready:{t.gpu_type}"),
                "warming": count(f"warming:{t.gpu_type}"),
                "desired": t.desired,
                "stale": f"ready:{t.gpu_type}" in stale,
                "warning": t.warning,
            }
            for t in self.ref.types
        ]

    def machines(self) -> dict[str, int | None]:
        """A mixed pool's ready and warming replicas of every type together (None when a
        type's count is unknown): what its row's Ready and Warming columns show, rather than
        the primary type's pods alone."""
        totals: dict[str, int | None] = {}
        for key in ("ready", "warming"):
            counts = [t[key] for t in self.types]
            totals[key] = None if None in counts else sum(c for c in counts if c is not None)
        return totals

    def _fresh(self, read: ClusterRead, now: float) -> dict[str, tuple[Value, float]]:
        """This tick's values of the workload's own pods; none at all (every series goes
        missing) when its Deployment is not in the cluster."""
        ref = self.ref
        pods = read.pods_of(ref.namespace, ref.deployment)
        if pods is None:
            return {}
        fresh = _gauges(
            {name: observe.per_pod(read.index(name), ref.namespace, pods) for name in GAUGES}, now
        )
        if ref.policy is not None:
            metric = read.index(ref.policy.metric)
            # What the loop records as the engine's input: the chart draws that very value.
            value = observe.policy_value(metric, ref.namespace, pods, ref.policy.aggregation)
            if value is not None:
                fresh["metric"] = value
        buckets = read.index(TTFT_BUCKETS)
        ttft = self._ttft_p95(observe.bucket_counts(buckets, ref.namespace, pods), now)
        if ttft is not None:
            fresh["ttft_p95"] = (ttft, _stamp(_samples_of(buckets, ref.namespace, pods), now))
        return fresh

    def _ttft_p95(self, counts: dict[str, float], now: float) -> float | None:
        """p95 of the requests whose first token came in the last ``TTFT_WINDOW_S``: the
        loop's quantile over the bucket counts then and now."""
        if not counts:
            return None
        oldest = self.ttft_window[0][1] if self.ttft_window else counts
        if any(counts.get(le, 0.0) < before for le, before in oldest.items()):
            self.ttft_window.clear()  # a replica restarted (its counters reset): start over
            oldest = counts
        self.ttft_window.append((now, counts))
        while self.ttft_window[0][0] < now - TTFT_WINDOW_S:
            self.ttft_window.popleft()
        return observe.histogram_quantile(0.95, self.ttft_window[0][1], counts)

    def snapshot(self) -> dict[str, Any]:
        return {
            "workload": self.ref.id,
            "policy": self.ref.policy.as_dict() if self.ref.policy else None,
            "history": list(self.history),
            "types": self.types,
            "mix": self.ref.mix,
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


def _gauges(mine: Mapping[str, dict[str, Sample]], now: float) -> dict[str, tuple[Value, float]]:
    """Replicas ready and warming, queue, running, KV cache and the per-replica GPU series,
    from one value per pod of each gauge (a pod's GPUs averaged)."""
    serving, holding = mine[REQUESTS_RUNNING], mine[GPU_UTIL]
    stamp = _stamp([*serving.values(), *holding.values()], now)
    fresh: dict[str, tuple[Value, float]] = {
        "ready": (float(len(serving)), stamp),
        "warming": (float(len(set(holding) - set(serving))), stamp),
    }
    for key, name in (
        ("queue", REQUESTS_WAITING),
        ("running", REQUESTS_RUNNING),
        ("kv_cache", KV_CACHE_USAGE),
    ):
        if mine[name]:
            total = math.fsum(s.value for s in mine[name].values())
            fresh[key] = (total, _stamp(mine[name].values(), now))
    for key, name in (("gpu_util", GPU_UTIL), ("gpu_mem", GPU_MEMORY_USED)):
        if mine[name]:
            per_replica = {pod: s.value for pod, s in sorted(mine[name].items())}
            fresh[key] = (per_replica, _stamp(mine[name].values(), now))
    return fresh


def _samples_of(index: observe.PodIndex, namespace: str, pods: set[str]) -> list[Sample]:
    return [sample for pod in pods for sample in index.get((namespace, pod), ())]


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
    """One cell per GPU series; a GPU's workload is the one whose Deployment selects the pod
    holding it (as the loop matches pods), not a guess from the pod's name."""
    samples = read.samples or {}
    serving = set(read.index(REQUESTS_RUNNING))
    memory = {_gpu_key(s): s.value for s in samples.get(GPU_MEMORY_USED, [])}
    by_deployment = {(w.namespace, w.deployment): w for w in workloads}
    cells = []
    for sample in samples.get(GPU_UTIL, []):
        namespace, pod = sample.label("namespace"), sample.label("pod")
        deployment = read.owners.get((namespace, pod))
        owner = by_deployment.get(deployment) if deployment is not None else None
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
