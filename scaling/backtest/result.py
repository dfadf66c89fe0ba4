"""What a back-test reports, JSON-safe through ``to_dict()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MAX_TIMELINE_POINTS = 1000


@dataclass(frozen=True)
class TimelinePoint:
    """At ``t``: the replica count asked for (``replicas``) and how many were ready."""

    t: float
    replicas: int
    ready: int

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "replicas": self.replicas, "ready": self.ready}


def downsample(
    points: list[TimelinePoint], limit: int = MAX_TIMELINE_POINTS
) -> tuple[TimelinePoint, ...]:
    """At most ``limit`` points: one per bucket, the one with the most replicas (so peaks
    survive), plus the last point."""
    if len(points) <= limit:
        return tuple(points)
    buckets, n = limit - 1, len(points)
    kept = [
        max(points[b * n // buckets : (b + 1) * n // buckets], key=lambda p: p.replicas)
        for b in range(buckets)
    ]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return tuple(kept)


@dataclass(frozen=True)
class OracleResult:
    """Clairvoyant provisioning on the same trace (how it is computed: scaling/backtest/oracle.py
    and docs/backtest.md).

    ``gpu_hours`` is the bound: replicas held per window, plus one cold start for every replica
    started, no drain. ``slo_attainment`` comes from replaying that schedule through the pool
    (``replay_gpu_hours`` is what the replay billed, drains included).
    """

    window_s: float
    target_attainment: float
    gpu_hours: float
    mean_replicas: float
    peak_replicas: int
    scale_events: int
    slo_attainment: float | None
    replay_gpu_hours: float
    schedule: tuple[int, ...]  # replicas per window
    timeline: tuple[TimelinePoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "target_attainment": self.target_attainment,
            "gpu_hours": _round(self.gpu_hours),
            "mean_replicas": _round(self.mean_replicas),
            "peak_replicas": self.peak_replicas,
            "scale_events": self.scale_events,
            "slo_attainment": _round(self.slo_attainment),
            "replay_gpu_hours": _round(self.replay_gpu_hours),
            "schedule": list(self.schedule),
            "timeline": [p.to_dict() for p in self.timeline],
        }


@dataclass(frozen=True)
class BacktestResult:
    """One policy replayed over one trace. Times in seconds, shares 0..1."""

    algorithm: str
    trace: str
    gpu_type: str
    model: str
    gpus_per_replica: int
    cold_start_s: float
    slo_ttft_s: float
    slo_tpot_s: float
    tick_s: float
    duration_s: float
    requests: int
    completed: int
    rejected: int
    feasible: int
    slo_met: int
    slo_attainment: float | None
    infeasible_share: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ttft_p99_s: float | None
    gpu_hours: float
    mean_replicas: float
    peak_replicas: int
    scale_events: int
    mean_gpu_util: float
    outcomes: dict[str, int] = field(default_factory=dict)
    timeline: tuple[TimelinePoint, ...] = ()
    oracle: OracleResult | None = None

    @property
    def gpu_hours_vs_oracle(self) -> float | None:
        if self.oracle is None or self.oracle.gpu_hours <= 0:
            return None
        return self.gpu_hours / self.oracle.gpu_hours

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "trace": self.trace,
            "gpu_type": self.gpu_type,
            "model": self.model,
            "gpus_per_replica": self.gpus_per_replica,
            "cold_start_s": self.cold_start_s,
            "slo": {"ttft_s": self.slo_ttft_s, "tpot_s": self.slo_tpot_s},
            "tick_s": self.tick_s,
            "duration_s": _round(self.duration_s),
            "requests": self.requests,
            "completed": self.completed,
            "rejected": self.rejected,
            "feasible": self.feasible,
            "slo_met": self.slo_met,
            "slo_attainment": _round(self.slo_attainment),
            "infeasible_share": _round(self.infeasible_share),
            "ttft_s": {
                "p50": _round(self.ttft_p50_s),
                "p95": _round(self.ttft_p95_s),
                "p99": _round(self.ttft_p99_s),
            },
            "gpu_hours": _round(self.gpu_hours),
            "mean_replicas": _round(self.mean_replicas),
            "peak_replicas": self.peak_replicas,
            "scale_events": self.scale_events,
            "mean_gpu_util": _round(self.mean_gpu_util),
            "gpu_hours_vs_oracle": _round(self.gpu_hours_vs_oracle),
            "outcomes": dict(self.outcomes),
            "timeline": [p.to_dict() for p in self.timeline],
            "oracle": self.oracle.to_dict() if self.oracle is not None else None,
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)
