"""Clocks that run only on fresh observations, and a fresh window after an outage.

Every clock the algorithms keep (hpa/predictive stabilisation windows and rate-limit periods,
kpa's panic time and scale-to-zero grace, apa's cooldown, predictive's burst holds) is a
timestamp in `Memory` compared with `Observation.now`. A value derived from stale samples is
stale, so wall time without new data must not count on those clocks. Rather than teach each
algorithm two clocks, the engine moves every remembered timestamp forward by the time that
did not count, before the algorithm reads its memory:

1. Evidence time: the newest point of the data the algorithm reads (the oldest of those
   newest points when it reads several signals). None when the guards rejected the data.
2. Counted time since the last decision = how far the evidence advanced (`evidence -
   seen_at`), or nothing when it did not advance (no new sample: the remembered ones are
   replayed), when the guards rejected it, or across an outage.
3. An outage is a gap in the evidence longer than `max_metric_age_s`, or ticks the loop
   could not observe at all (`note_outage`: the cluster API did not answer). The first
   fresh observation after it sets `recovered_at`; for the next recovery window no
   scale-down is taken (`scale_down_blocked`).
4. Shift = wall time since the last decision - counted time; every remembered timestamp
   moves forward by it (a negative shift, when late data catches up, moves them back; they
   never pass `now`).

A tick with no new data still decides (a scale-up on the newest data is safe and would have
been taken on that data's own tick), but never scales down.
"""

from __future__ import annotations

from dataclasses import replace
from operator import itemgetter

from .types import Memory, Params, Signal


def evidence_time(signals: tuple[Signal, ...]) -> float | None:
    """The newest moment every signal the algorithm reads has data for."""
    newest = [max(map(itemgetter(0), s.points)) for s in signals if s.points]
    if not newest or len(newest) != len(signals):
        return None
    return min(newest)


def note_outage(memory: Memory, now: float) -> Memory:
    """The loop could not observe the workload at `now` (for the cluster API failed):
    clocks stop, and the next fresh observation starts a recovery window."""
    if memory.outage_since is not None:
        return memory
    return replace(memory, outage_since=now)


def advance(memory: Memory, now: float, evidence: float | None, max_age_s: float) -> Memory:
    """Steps 2-4 of the module docstring: the memory as this tick's algorithm should see it."""
    if memory.ticked_at is None:  # a fresh memory: nothing to shift
        return replace(memory, ticked_at=now, seen_at=evidence)
    wall = max(now - memory.ticked_at, 0.0)
    new_data = evidence is not None and (memory.seen_at is None or evidence > memory.seen_at)
    counted, recovered = 0.0, memory.recovered_at
    if new_data and evidence is not None:
        gap = evidence - memory.seen_at if memory.seen_at is not None else 0.0
        if memory.outage_since is not None or gap > max_age_s:
            recovered = now
        else:
            counted = gap
    shifted = shift(memory, wall - counted)
    return replace(
        shifted,
        ticked_at=now,
        seen_at=evidence if new_data else memory.seen_at,
        outage_since=None if new_data else memory.outage_since,
        recovered_at=recovered if recovered == now else shifted.recovered_at,
        fresh=new_data,
    )


def shift(memory: Memory, by: float) -> Memory:
    """Every clock in memory moved forward by `by` seconds (the time that did not count)."""
    if by == 0:
        return memory

    def moved(t: float | None) -> float | None:
        return None if t is None else t + by

    return replace(
        memory,
        recommendations=tuple((t + by, r) for t, r in memory.recommendations),
        scale_events=tuple((t + by, c) for t, c in memory.scale_events),
        panic_since=moved(memory.panic_since),
        zero_since=moved(memory.zero_since),
        bursts=tuple((t + by, b) for t, b in memory.bursts),
        recovered_at=moved(memory.recovered_at),
    )


def recovery_window_s(params: Params, max_age_s: float) -> float:
    """How long after an outage no scale-down is taken: the policy's own scale-down window
    (hpa, predictive, slo: the scale-down stabilisation; kpa, apa: the stable window),
    at least `max_age_s`."""
    window = max(params.get("scale_down_stabilization_s", 0.0), params.get("stable_window_s", 0.0))
    return max(window, max_age_s)


def scale_down_blocked(memory: Memory, now: float, params: Params, max_age_s: float) -> str | None:
    """Why a scale-down must wait this tick, or None."""
    if not memory.fresh:
        return "no new sample since the last decision: no scale-down on remembered data"
    if memory.recovered_at is None:
        return None
    window = recovery_window_s(params, max_age_s)
    elapsed = now - memory.recovered_at
    if elapsed < window:
        return (
            f"observations resumed {elapsed:.0f} s ago after an outage: no scale-down "
            f"in the first {window:.0f} s"
        )
    return None
