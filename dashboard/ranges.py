"""A workload's stored signal history (``scaling.signal_store``) for the charts' longer ranges.

The page holds only what its live stream sent since it opened; a range reaching further back
reads this: the replica counts, the policy metric and TTFT p95, at most ``MAX_POINTS`` per
series, plus the decisions of the window for the replica chart's markers. Per-pod series
(GPU utilisation and memory) and the queue counts are not stored, so not served.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from django.db.models import prefetch_related_objects

from dashboard.frames import decision_dict
from scaling import signal_store
from scaling.models import Decision, Workload
from scaling.signals import SignalTick

MAX_POINTS = 900
MAX_SPAN_S = 86400.0  # the picker's longest range; the store keeps a day by default
MAX_DECISIONS = 500
# Past this a gap between two stored ticks is no observation: drawn as a gap, not a line.
GAP_S = 120.0


def stored_range(workload: Workload, since: float, until: float) -> dict[str, Any]:
    """The stored series of ``[since, until]``, bucketed to at most ``MAX_POINTS``, and the
    decisions that changed (or tried to change) the replica count in it."""
    ticks = signal_store.load_ticks(workload, since, until)
    step = max(math.ceil((until - since) / MAX_POINTS), 1)
    series = bucketed(ticks, since, step)
    return {
        "since": since,
        "until": until,
        "step_s": step,
        **series,
        "decisions": decisions_in(workload, since, until),
    }


def bucketed(ticks: list[SignalTick], since: float, step: float) -> dict[str, list[Any]]:
    """One point per ``step`` seconds that holds a tick: the last replica counts (a step
    function), the mean of the metric and of TTFT p95; a null point where the ticks stop for
    longer than ``GAP_S`` (and two buckets), so the line breaks there."""
    buckets: dict[int, list[SignalTick]] = {}
    for tick in ticks:
        buckets.setdefault(math.floor((tick.now - since) / step), []).append(tick)
    out: dict[str, list[Any]] = {k: [] for k in ("t", "ready", "warming", "metric", "ttft_p95")}
    previous: float | None = None
    for key in sorted(buckets):
        group = buckets[key]
        t = group[-1].now
        if previous is not None and t - previous > max(GAP_S, 2 * step):
            for name, values in out.items():
                values.append(previous + 1 if name == "t" else None)
        out["t"].append(t)
        out["ready"].append(group[-1].ready)
        out["warming"].append(group[-1].warming)
        out["metric"].append(_mean(tick.metric[1] if tick.metric else None for tick in group))
        out["ttft_p95"].append(_mean(tick.ttft_p95_s for tick in group))
        previous = t
    return out


def _mean(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def decisions_in(workload: Workload, since: float, until: float) -> list[dict[str, Any]]:
    """The window's decisions other than holds (the newest ``MAX_DECISIONS``), oldest first."""
    found = list(
        Decision.objects.filter(
            workload=workload,
            at__gte=datetime.fromtimestamp(since, UTC),
            at__lte=datetime.fromtimestamp(until, UTC),
        )
        .exclude(outcome=Decision.Outcome.HELD)
        .order_by("-at", "-id")[:MAX_DECISIONS]
    )
    # One workload: its variants once (a mixed pool's cards name their unit), no query per row.
    prefetch_related_objects([workload], "variants")
    for decision in found:
        decision.workload = workload
    return [decision_dict(d) for d in reversed(found)]
