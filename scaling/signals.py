"""The signal history the engine reads: one type for the live loop and the back-tester.

Each tick a caller turns what it observed of one workload into a ``SignalTick`` (the live
loop from Prometheus samples, scaling.loop; the back-tester from its pool, scaling.backtest),
``record``s it and asks for the engine's ``Observation``. What is kept, and for how long,
comes from the engine (``scaling.engine.reads`` / ``history_s``), so both callers show the
engine the same series for the same signals: a back-test says what the live loop will do.

The live loop keeps the history on the workload between ticks (``to_json``, in
``Workload.loop_state["history"]``): ``{"metric": [[t, v], ...], "pods": ..., "prompt": ...,
"generation": ..., "ttft": ..., "queue": ...}``, the format rows were written in before this
type, so they are read as they are (no migration; a row without "queue" has no such points).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scaling.engine import (
    OFFERED_WORK,
    TTFT,
    Observation,
    PodSample,
    PodState,
    PolicyParams,
    ReplicaCapacity,
    history_s,
    reads,
)
from scaling.engine.types import Point, Series
from scaling.status import Infeasible

# The stored series: the policy metric, the pods each "average" metric point averaged over,
# prompt and generation tokens/s, TTFT p95 (s), queueing delay p95 (s).
SERIES = ("metric", "pods", "prompt", "generation", "ttft", "queue")
# A bound on each stored series whatever the loop's interval: 600 s of predictive's history
# at a 1 s tick, with room. Past it the oldest points go (the window shortens), on both sides.
MAX_HISTORY_POINTS = 720


@dataclass(frozen=True)
class SignalTick:
    """What one tick observed of one workload: the engine's inputs other than history.

    ``metric`` is the policy metric aggregated as the policy says, stamped with the oldest
    sample it came from; ``metric_pods`` how many pods an "average" value averaged over.
    A signal that is unknown this tick is None: no point, never a zero. ``prompt_tokens_per_s``
    counts the prompt tokens that need prefill: those the replicas' prefix caches served
    are no work (the live loop subtracts vLLM's ``prefix_cache_hits``, the back-tester the
    replicas' own count). ``infeasible`` is shown in the status and read by no algorithm.
    """

    now: float
    current: int
    ready: int
    warming: int = 0
    metric: Point | None = None
    metric_pods: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    ttft_p95_s: float | None = None
    queue_p95_s: float | None = None
    pods: tuple[PodState, ...] = ()
    samples: tuple[PodSample, ...] = ()
    capacity: ReplicaCapacity | None = None
    infeasible: Infeasible | None = None


class SignalHistory:
    """The series one policy's algorithm reads, each kept for ``history_s(policy)``."""

    def __init__(self, policy: PolicyParams, stored: Mapping[str, Any] | None = None) -> None:
        self.horizon_s = history_s(policy)
        self.reads = reads(policy)
        stored = stored or {}
        self._series: dict[str, list[Point]] = {name: _points(stored.get(name)) for name in SERIES}

    def record(self, tick: SignalTick) -> None:
        """Forget points older than the horizon at ``tick.now``, then add this tick's known
        points: finite ones, newer than the series' last (a sample seen twice is one point)."""
        now = tick.now
        points: dict[str, Point | None] = dict.fromkeys(SERIES)
        if tick.metric is not None:
            points["metric"] = tick.metric
            if tick.metric_pods is not None:
                points["pods"] = (tick.metric[0], tick.metric_pods)
        if OFFERED_WORK in self.reads:
            points["prompt"] = _at(now, tick.prompt_tokens_per_s)
            points["generation"] = _at(now, tick.generation_tokens_per_s)
        if TTFT in self.reads:
            points["ttft"] = _at(now, tick.ttft_p95_s)
            points["queue"] = _at(now, tick.queue_p95_s)
        for name, point in points.items():
            self._append(name, now, point)

    def observation(self, tick: SignalTick) -> Observation:
        """The engine's view at ``tick``: its own values and the history recorded so far."""
        return Observation(
            now=tick.now,
            current=tick.current,
            ready=tick.ready,
            warming=tick.warming,
            pods=tick.pods,
            samples=tick.samples,
            series=self.series("metric"),
            series_pods=self.series("pods"),
            prompt_tokens_per_s=self.series("prompt"),
            generation_tokens_per_s=self.series("generation"),
            ttft_p95_s=self.series("ttft"),
            queue_p95_s=self.series("queue"),
            capacity=tick.capacity,
        )

    def series(self, name: str) -> Series:
        return tuple(self._series[name])

    def to_json(self) -> dict[str, list[Point]]:
        """The stored form: every series, empty ones included, as lists of [t, v] pairs
        (a pair is a tuple until it is written: JSON has only arrays)."""
        return {name: list(pts) for name, pts in self._series.items()}

    def _append(self, name: str, now: float, point: Point | None) -> None:
        kept = [p for p in self._series[name] if now - p[0] <= self.horizon_s]
        if point is not None and math.isfinite(point[1]) and (not kept or point[0] > kept[-1][0]):
            kept.append(point)
        self._series[name] = kept[-MAX_HISTORY_POINTS:]


def _at(now: float, value: float | None) -> Point | None:
    return None if value is None else (now, value)


def _points(raw: Any) -> list[Point]:
    """A stored series, tolerant of junk: a corrupt entry is dropped, not fatal."""
    if not isinstance(raw, list):
        return []
    try:  # what the loop wrote itself: finite [t, v] numbers (the fast path, every tick)
        points = [(t, v) for t, v in raw]
        if all(math.isfinite(t) and math.isfinite(v) for t, v in points):
            return points
    except (TypeError, ValueError, OverflowError):
        pass
    points = []
    for item in raw:
        try:
            t, v = float(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        if math.isfinite(t) and math.isfinite(v):
            points.append((t, v))
    return points
