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
    """Clairvoyant provisioning on the same trace (how it is computed and why it is a lower
    bound: scaling/backtest/oracle.py and docs/backtest.md).

    ``gpu_hours`` is the bound: no schedule that meets the goal (``target_attainment`` of the
    feasible requests) spends less. ``schedule`` is the cheapest per-window plan found within
    the miss budget (``schedule_gpu_hours`` as the bound counts it); replayed through the pool
    with carry-over it attains ``slo_attainment`` for ``replay_gpu_hours`` (drains billed).
    ``ceiling`` is the replica cap it was held to (None: none); ``capped_share`` the share of
    time its schedule sits there; ``goal_met`` False when the goal is out of reach under the
    cap (the bound is then for ``bound_attainment``, the best it can do).
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
    schedule_gpu_hours: float = 0.0
    ceiling: int | None = None
    capped_share: float = 0.0
    goal_met: bool = True
    bound_attainment: float | None = None
    price_per_gpu_hour: float | None = None  # USD; None: not priced (see BacktestResult)

    @property
    def cost_usd(self) -> float | None:
        """The bound in money: no schedule meeting the goal costs less at this price."""
        return _cost(self.gpu_hours, self.price_per_gpu_hour)

    @property
    def replay_cost_usd(self) -> float | None:
        """What the oracle's schedule cost replayed (drains billed)."""
        return _cost(self.replay_gpu_hours, self.price_per_gpu_hour)

    @property
    def warnings(self) -> list[str]:
        out = []
        if not self.goal_met:
            out.append(
                f"oracle: {self.target_attainment:.0%} attainment is out of reach under "
                f"{self.ceiling} replicas (at best {_share(self.bound_attainment)}); its "
                "GPU-hours are a bound for that attainment, not for the goal"
            )
        if self.capped_share > 0:
            out.append(
                f"oracle: at its cap of {self.ceiling} replicas {_share(self.capped_share)} "
                "of the time"
            )
        if self.slo_attainment is not None and self.slo_attainment < self.target_attainment:
            out.append(
                f"oracle: its schedule replays at {_share(self.slo_attainment)} "
                f"(under {self.target_attainment:.0%}): work carried over between windows "
                "costs more than the bound counts"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "target_attainment": self.target_attainment,
            "gpu_hours": _round(self.gpu_hours),
            "schedule_gpu_hours": _round(self.schedule_gpu_hours),
            "mean_replicas": _round(self.mean_replicas),
            "peak_replicas": self.peak_replicas,
            "scale_events": self.scale_events,
            "slo_attainment": _round(self.slo_attainment),
            "replay_gpu_hours": _round(self.replay_gpu_hours),
            "price_per_gpu_hour": self.price_per_gpu_hour,
            "cost_usd": _round(self.cost_usd),
            "replay_cost_usd": _round(self.replay_cost_usd),
            "ceiling": self.ceiling,
            "capped_share": _round(self.capped_share),
            "goal_met": self.goal_met,
            "bound_attainment": _round(self.bound_attainment),
            "warnings": self.warnings,
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
    max_replicas: int | None = None  # the policy's cap
    at_max_share: float = 0.0  # share of ticks whose decision sat at max_replicas
    # USD per GPU-hour of ``gpu_type`` and where it came from ("given": GpuType.hourly_cost
    # or --price; "assumed": deployment.ASSUMED_PRICE_USD_PER_GPU_HOUR); None: not priced.
    price_per_gpu_hour: float | None = None
    price_source: str | None = None

    @property
    def cost_usd(self) -> float | None:
        """GPU-hours x price: what the replayed pool cost (warming and draining billed)."""
        return _cost(self.gpu_hours, self.price_per_gpu_hour)

    @property
    def cost_per_hour(self) -> float | None:
        """USD per hour of trace (the mean spend rate, comparable across trace lengths)."""
        if self.cost_usd is None or self.duration_s <= 0:
            return None
        return self.cost_usd / (self.duration_s / 3600.0)

    @property
    def cost_per_1k_requests(self) -> float | None:
        """USD per thousand requests of the trace (every policy replays the same ones)."""
        if self.cost_usd is None or self.requests <= 0:
            return None
        return self.cost_usd / self.requests * 1000.0

    @property
    def infeasible(self) -> int:
        return self.requests - self.feasible

    @property
    def infeasible_text(self) -> str | None:
        """ "412 requests (18 %) were too long to meet a 2 s TTFT on A100-80GB", or None."""
        if not self.infeasible:
            return None
        return infeasible_sentence(
            self.infeasible,
            self.infeasible_share,
            self.slo_ttft_s,
            self.gpu_type,
            self.gpus_per_replica,
        )

    @property
    def warnings(self) -> list[str]:
        """What makes the comparison less than it seems (the oracle's own come with it)."""
        out = []
        if self.at_max_share > 0:
            out.append(
                f"{self.algorithm}: at max_replicas ({self.max_replicas}) "
                f"{_share(self.at_max_share)} of the time; it might have wanted more"
            )
        return out

    @property
    def gpu_hours_vs_oracle(self) -> float | None:
        """Against the oracle's lower bound."""
        if self.oracle is None or self.oracle.gpu_hours <= 0:
            return None
        return self.gpu_hours / self.oracle.gpu_hours

    @property
    def gpu_hours_vs_oracle_schedule(self) -> float | None:
        """Against what the oracle's schedule spent replayed (the other end of the bracket
        the optimum lies in when that schedule meets the goal)."""
        if self.oracle is None or self.oracle.replay_gpu_hours <= 0:
            return None
        return self.gpu_hours / self.oracle.replay_gpu_hours

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
            "infeasible": self.infeasible,
            "infeasible_share": _round(self.infeasible_share),
            "infeasible_text": self.infeasible_text,
            "ttft_s": {
                "p50": _round(self.ttft_p50_s),
                "p95": _round(self.ttft_p95_s),
                "p99": _round(self.ttft_p99_s),
            },
            "gpu_hours": _round(self.gpu_hours),
            "price_per_gpu_hour": self.price_per_gpu_hour,
            "price_source": self.price_source,
            "cost_usd": _round(self.cost_usd),
            "cost_per_hour": _round(self.cost_per_hour),
            "cost_per_1k_requests": _round(self.cost_per_1k_requests),
            "mean_replicas": _round(self.mean_replicas),
            "peak_replicas": self.peak_replicas,
            "scale_events": self.scale_events,
            "mean_gpu_util": _round(self.mean_gpu_util),
            "gpu_hours_vs_oracle": _round(self.gpu_hours_vs_oracle),
            "gpu_hours_vs_oracle_schedule": _round(self.gpu_hours_vs_oracle_schedule),
            "max_replicas": self.max_replicas,
            "at_max_share": _round(self.at_max_share),
            "warnings": self.warnings,
            "outcomes": dict(self.outcomes),
            "timeline": [p.to_dict() for p in self.timeline],
            "oracle": self.oracle.to_dict() if self.oracle is not None else None,
        }


def infeasible_sentence(
    count: int,
    share: float | None,
    ttft_s: float,
    gpu_type: str,
    gpus_per_replica: int,
    at_least: bool = False,
) -> str:
    """ "412 requests (18 %) were too long to meet a 2 s TTFT on A100-80GB": the back-test's
    sentence, and the live status' ("at least ..." when a histogram bucket straddles the
    longest feasible prompt)."""
    return (
        ("at least " if at_least else "") + f"{count:,} request{'s' if count != 1 else ''} "
        f"({_share(share)}) {'were' if count != 1 else 'was'} "
        f"too long to meet a {ttft_s:g} s TTFT on {gpu_type}"
        + (f" x{gpus_per_replica}" if gpus_per_replica > 1 else "")
    )


def _cost(gpu_hours: float, price: float | None) -> float | None:
    return None if price is None else gpu_hours * price


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _share(value: float | None) -> str:
    """A share as a percentage for messages: 0.1834 -> "18 %", small ones with a decimal."""
    if value is None:
        return "-"
    pct = value * 100
    return f"{pct:.1f} %" if pct < 10 or 99 < pct < 99.95 else f"{pct:.0f} %"
