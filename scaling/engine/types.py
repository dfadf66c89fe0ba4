"""The engine's vocabulary: inputs (policy, observation, memory, quota) and the decision.

Every type is a frozen dataclass so a decision is a pure function of its inputs and can be
replayed. Times are plain float seconds on whatever epoch the caller uses; the engine never
reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

# A time series point: (timestamp seconds, value).
Point = tuple[float, float]
Series = tuple[Point, ...]
# Effective parameter values after resolving the policy's None fields against DEFAULTS.
Params = Mapping[str, float]
_V = TypeVar("_V", int, float)
# Algorithms that size from offered work and need no target: they read one only as a
# fallback when no offered work is observed, and hold without it (``PolicyParams.target``).
TARGET_OPTIONAL = frozenset({"predictive", "slo"})


@dataclass(frozen=True)
class PolicyParams:
    """The stored ScalingPolicy, field for field. None means "the algorithm's default"
    (for ``target``: none; only the TARGET_OPTIONAL algorithms may go without one)."""

    algorithm: str
    metric: str
    target: float | None
    min_replicas: int
    max_replicas: int
    aggregation: str = "average"  # "average" (per replica) | "total" (whole pool)
    scale_up_tolerance: float | None = None
    scale_down_tolerance: float | None = None
    scale_up_stabilization_s: float | None = None
    scale_down_stabilization_s: float | None = None
    scale_up_max_percent: float | None = None
    scale_up_max_pods: int | None = None
    scale_up_period_s: float | None = None
    scale_down_max_percent: float | None = None
    scale_down_max_pods: int | None = None
    scale_down_period_s: float | None = None
    stable_window_s: float | None = None
    panic_window_s: float | None = None
    panic_threshold_percent: float | None = None
    max_scale_up_rate: float | None = None
    max_scale_down_rate: float | None = None
    cooldown_s: float | None = None
    scale_to_zero_grace_s: float | None = None
    cold_start_s: float = 60.0
    max_metric_age_s: float = 60.0
    slo_ttft_p95_s: float | None = None

    @property
    def target_value(self) -> float:
        """The target, for the algorithms that read one. The engine refuses a policy without
        one before they run (``guards.policy_problem``), so None here is a bug."""
        if self.target is None:
            raise ValueError(f"the {self.algorithm} algorithm needs a target")
        return self.target


@dataclass(frozen=True)
class PodState:
    """One pod of the workload. `ready=False` covers pods still starting (warming)."""

    name: str
    ready: bool
    started_at: float | None = None


@dataclass(frozen=True)
class PodSample:
    """The latest value of the policy metric for one pod."""

    pod: str
    timestamp: float
    value: float


@dataclass(frozen=True)
class ReplicaCapacity:
    """What one replica sustains, derived by the caller from the GPU profile."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_concurrency: int


@dataclass(frozen=True)
class Observation:
    """What the loop saw at `now`.

    `current` is the Deployment's spec replicas (ready + warming + not yet started);
    `series` is the policy metric over recent history, per replica when the policy's
    aggregation is "average" and for the whole pool when it is "total"; `series_pods` holds,
    for an "average" series, how many pods each point averaged over (empty: take the ready
    count now), so a point's pool total is its value x its pods. `samples` are the per-pod
    latest values (HPA uses them for its missing/unready-pod rules).
    """

    now: float
    current: int
    ready: int
    warming: int = 0
    pods: tuple[PodState, ...] = ()
    samples: tuple[PodSample, ...] = ()
    series: Series = ()
    series_pods: Series = ()
    request_rate: Series = ()
    prompt_tokens_per_s: Series = ()
    generation_tokens_per_s: Series = ()
    ttft_p95_s: Series = ()
    queue_p95_s: Series = ()  # p95 of the wait before the engine scheduled a request (s)
    capacity: ReplicaCapacity | None = None


@dataclass(frozen=True)
class QuotaHeadroom:
    """What the tenant's quota grants this workload this tick (the loop converts the quota
    allocation's grant; the engine knows no quota model).

    replicas: how many more replicas the quota allows; a scale-up is capped at current +
        replicas ("blocked_by_quota").
    detail: why, in words (usage, nominal, borrowing limit); it ends up in the explanation.
    reclaim_to: set when the quota takes replicas back (a borrower's GPUs returned to a tenant
        under its nominal, or usage over a lowered quota past its grace): the count is at
        most this, below the current count if need be, whatever the algorithm wants; the
        growth cap `replicas` is then moot.
    """

    replicas: int
    detail: str = ""
    reclaim_to: int | None = None


@dataclass(frozen=True)
class Memory:
    """State carried between ticks; the loop stores `to_dict()` on the workload.

    recommendations: (time, replicas) the algorithm recommended, for stabilisation windows.
    scale_events: (time, signed change) of the replica count, for rate-limit periods and
        cooldowns. Recorded from what was observed, not from what was decided: when a tick
        sees `Observation.current` differ from `observed_replicas`, the change is dated at the
        previous tick (`ticked_at`, the moment it was asked for). A failed, dry-run or
        overruled apply changes nothing, so it counts nothing; a change made by someone else
        (a quota reclaim, kubectl scale) counts like our own.
    observed_replicas: `Observation.current` as the last decision saw it (None: never seen).
    panic_since: KPA's panic time (last time the panic threshold was crossed), or None.
    max_panic_pods: KPA's high-water mark while panicking.
    zero_since: when KPA first saw no traffic (scale-to-zero grace period), or None.
    bursts: (time, replicas) burst holds predictive computed, kept for its burst horizon as
        a sliding-window maximum (values strictly decrease with time, so the first entry is
        the highest within the horizon).
    headroom: predictive's correction of its queueing model (x replicas, 1.0-3.0), raised
        when feasible requests waited too long to be scheduled, decaying back when early;
        headroom_raised_at: when it was last raised (one raise per cold start);
        headroom_at: when it was last corrected (the decay's clock).
    ticked_at: `now` of the last decision; seen_at: the newest data time it acted on.
    outage_since: when the loop first could not observe the workload (`note_outage`).
    recovered_at: when fresh observations resumed after an outage (a recovery window).
    fresh: whether this tick brought new data (set by the engine each tick).
    Every timestamp here counts only time with fresh observations (freshness.py).
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    scale_events: tuple[tuple[float, int], ...] = ()
    observed_replicas: int | None = None
    panic_since: float | None = None
    max_panic_pods: int = 0
    zero_since: float | None = None
    bursts: tuple[tuple[float, float], ...] = ()
    headroom: float = 1.0
    headroom_raised_at: float | None = None
    headroom_at: float | None = None
    ticked_at: float | None = None
    seen_at: float | None = None
    outage_since: float | None = None
    recovered_at: float | None = None
    fresh: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [list(r) for r in self.recommendations],
            "scale_events": [list(e) for e in self.scale_events],
            "observed_replicas": self.observed_replicas,
            "panic_since": self.panic_since,
            "max_panic_pods": self.max_panic_pods,
            "zero_since": self.zero_since,
            "bursts": [list(b) for b in self.bursts],
            "headroom": self.headroom,
            "headroom_raised_at": self.headroom_raised_at,
            "headroom_at": self.headroom_at,
            "ticked_at": self.ticked_at,
            "seen_at": self.seen_at,
            "outage_since": self.outage_since,
            "recovered_at": self.recovered_at,
            "fresh": self.fresh,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Memory:
        """Tolerant of missing keys and junk so a corrupt blob degrades to a fresh memory."""
        if not data:
            return cls()
        return cls(
            recommendations=_pairs(data.get("recommendations"), int),
            scale_events=_pairs(data.get("scale_events"), int),
            observed_replicas=_optional_int(data.get("observed_replicas")),
            panic_since=_optional_float(data.get("panic_since")),
            max_panic_pods=_int_or_zero(data.get("max_panic_pods")),
            zero_since=_optional_float(data.get("zero_since")),
            bursts=_pairs(data.get("bursts"), _finite),
            headroom=_optional_float(data.get("headroom")) or 1.0,
            headroom_raised_at=_optional_float(data.get("headroom_raised_at")),
            headroom_at=_optional_float(data.get("headroom_at")),
            ticked_at=_optional_float(data.get("ticked_at")),
            seen_at=_optional_float(data.get("seen_at")),
            outage_since=_optional_float(data.get("outage_since")),
            recovered_at=_optional_float(data.get("recovered_at")),
            fresh=data.get("fresh") is not False,
        )


def _pairs(raw: Any, cast: Callable[[Any], _V]) -> tuple[tuple[float, _V], ...]:
    if not isinstance(raw, list | tuple):
        return ()
    out: list[tuple[float, _V]] = []
    for item in raw:
        try:
            out.append((float(item[0]), cast(item[1])))
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
    return tuple(out)


def _finite(raw: Any) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def _optional_float(raw: Any) -> float | None:
    try:
        value = None if raw is None else float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if value is None or math.isfinite(value) else None


def _optional_int(raw: Any) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError, OverflowError):
        return None


def _int_or_zero(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError, OverflowError):
        return 0


@dataclass(frozen=True)
class Step:
    """One constraint applied in order, with the replica count after it."""

    name: str
    value: int
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "note": self.note}


@dataclass(frozen=True)
class MetricValue:
    """A value the decision used, with its timestamp (and pod, when per pod)."""

    label: str
    value: float
    timestamp: float
    pod: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "timestamp": self.timestamp,
            "pod": self.pod,
        }


@dataclass(frozen=True)
class Decision:
    """The engine's answer and its explanation."""

    desired: int
    raw_desired: int | None
    steps: tuple[Step, ...]
    outcome: str  # "scale_up" | "scale_down" | "hold" | "blocked_by_quota"
    reason: str
    metric_values: tuple[MetricValue, ...]
    memory: Memory
    algorithm: str
    effective: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "desired": self.desired,
            "raw_desired": self.raw_desired,
            "steps": [s.to_dict() for s in self.steps],
            "outcome": self.outcome,
            "reason": self.reason,
            "metric_values": [m.to_dict() for m in self.metric_values],
            "memory": self.memory.to_dict(),
            "algorithm": self.algorithm,
            "effective": dict(self.effective),
        }


@dataclass(frozen=True)
class Signal:
    """The data an algorithm will read, named, so the shared guards can vet it first."""

    label: str
    points: Series
    lookback_s: float


@dataclass(frozen=True)
class Proposal:
    """An algorithm's recommendation before the shared min/max and quota steps.

    `desired` already includes the algorithm's own tolerance, stabilisation and rate limits
    (listed in `steps`); `hold_reason` set means the algorithm declined to act.
    """

    desired: int
    raw_desired: int | None
    steps: tuple[Step, ...]
    reason: str
    metric_values: tuple[MetricValue, ...]
    memory: Memory
    hold_reason: str | None = None


# The observed signals an algorithm may read (Algorithm.reads).
METRIC = "metric"  # the policy metric (series and per-pod samples)
OFFERED_WORK = "offered work"  # prompt and generation tokens/s, with the replica capacity
TTFT = "ttft"  # time-to-first-token p95


@dataclass(frozen=True)
class Algorithm:
    """A registry entry: defaults plus the functions the engine calls.

    `signals` names the data `recommend` will read so the shared guards vet it first;
    `reads` says which observed signals it uses (METRIC, OFFERED_WORK, TTFT: what the loop
    queries and the back-test produces; an algorithm reading offered work takes the policy
    metric only as its fallback); `history_s` how many seconds of those signals' history it
    reads, from the effective params (the loop and the back-test keep that much, see
    `inputs.history_s`); `derive` fills defaults that depend on other values (e.g. KPA's
    panic window is 10 % of the stable window).
    """

    name: str
    defaults: Mapping[str, float]
    signals: Callable[[PolicyParams, Params, Observation], tuple[Signal, ...]]
    recommend: Callable[[PolicyParams, Params, Observation, Memory], Proposal]
    memory_horizon_s: Callable[[Params], float]
    reads: frozenset[str]
    history_s: Callable[[Params], float]
    derive: Callable[[PolicyParams, dict[str, float]], dict[str, float]] | None = None
