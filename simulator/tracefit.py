"""A trace spec fitted to a recorded trace: traffic like it, from a seed, at any length.

1. Rate: per-second arrival counts give the mean rate and the burstiness (index of
   dispersion D = variance / mean; 1 for Poisson). If the per-minute counts are no more
   dispersed than a Poisson process's would be (D of minute counts <= ``MINUTE_DISPERSION``)
   and D <= ``SECOND_DISPERSION``, the spec is one Poisson process at the mean rate.
2. Otherwise it is piecewise Poisson, the rate of each window of the trace in turn (equal
   neighbours merged): windows of ``WINDOW_S`` when arrivals within a minute are close to
   Poisson, else of ``BURST_WINDOW_S``, so bursts of 10-40 s (the Azure code trace's) keep
   their height and length and the per-second D comes out close to the trace's. (A
   stochastic on/off per window was tried: its random on-time made the mean rate vary by
   +-18 % between seeds on the code trace; these windows keep it to Poisson noise.)
3. Lengths: input and output each a lognormal through the observed median and p90, clipped
   to the observed min and max. (Their correlation is not kept.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import fmean, pvariance

from .traces import Trace
from .tracespec import Z90, Arrival, LogNormal, Piecewise, Poisson, RequestClass, Segment, TraceSpec

WINDOW_S = 60
MINUTE_DISPERSION = 2.0
SECOND_DISPERSION = 1.5
BURST_WINDOW_S = 10


def fit_spec(trace: Trace, name: str | None = None) -> TraceSpec:
    """A spec whose traces have ``trace``'s rate over time, burstiness and length quantiles."""
    if len(trace) < 2:
        raise ValueError("a trace of fewer than 2 requests has no rate to fit")
    duration = max(1.0, math.ceil(trace.duration_s))
    counts = per_second_counts(trace.times, int(duration))
    rate = len(trace) / duration
    burstiness = dispersion(counts)
    return TraceSpec(
        name=name or f"{trace.name}-fit",
        duration_s=duration,
        arrival=_fit_arrival(counts, rate, burstiness),
        classes=(RequestClass(1.0, fit_lognormal(trace.inputs), fit_lognormal(trace.outputs)),),
        description=(
            f"fitted to {trace.name}: {len(trace)} requests over {duration:g} s, mean "
            f"{rate:.3f} req/s, index of dispersion of per-second counts {burstiness:.2f}"
        ),
    )


def per_second_counts(times: Sequence[float], seconds: int) -> list[int]:
    counts = [0] * seconds
    for t in times:
        counts[min(int(t), seconds - 1)] += 1
    return counts


def dispersion(counts: Sequence[int]) -> float:
    """Variance / mean of counts (1 for a Poisson process); 0 when there are none."""
    mean = fmean(counts)
    return pvariance(counts, mean) / mean if mean > 0 else 0.0


def fit_lognormal(values: Sequence[int]) -> LogNormal:
    ordered = sorted(values)
    median = max(1.0, _quantile(ordered, 0.5))
    p90 = max(median, _quantile(ordered, 0.9))
    return LogNormal(
        median, round(math.log(p90 / median) / Z90, 4), max(1, ordered[0]), max(1, ordered[-1])
    )


def _quantile(ordered: Sequence[int], q: float) -> float:
    return float(ordered[int(q * (len(ordered) - 1))])


def _fit_arrival(counts: list[int], rate: float, burstiness: float) -> Arrival:
    minutes = _windows(counts, WINDOW_S)
    per_minute = [sum(w) for w in minutes[:-1] or minutes]
    if burstiness <= SECOND_DISPERSION and dispersion(per_minute) <= MINUTE_DISPERSION:
        return Poisson(round(rate, 4))
    within = fmean(dispersion(w) for w in minutes)
    window = WINDOW_S if within <= SECOND_DISPERSION else BURST_WINDOW_S
    segments: list[Segment] = []
    for w in _windows(counts, window):
        rate_w = round(fmean(w), 4)
        last = segments[-1] if segments else None
        if last is not None and isinstance(last.arrival, Poisson) and last.arrival.rate == rate_w:
            segments[-1] = Segment(last.duration_s + len(w), last.arrival)
        else:
            segments.append(Segment(float(len(w)), Poisson(rate_w)))
    return Piecewise(tuple(segments))


def _windows(counts: list[int], size: int) -> list[list[int]]:
    return [counts[i : i + size] for i in range(0, len(counts), size)]
