"""Reading time series: window means and the policy metric as a pool total or per replica."""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import pairwise, repeat
from operator import itemgetter, le, lt, sub

from .types import MetricValue, Observation, PolicyParams, Series


def latest(series: Series) -> tuple[float, float]:
    return max(series)


def window_points(series: Series, now: float, window_s: float) -> Series:
    """Points in (now - window, now]; the latest point alone if the window holds none,
    since a loop ticking slower than the window still has one fresh reading."""
    inside = tuple(p for p in series if now - window_s < p[0] <= now)
    return inside if inside else (latest(series),)


def window_mean(series: Series, now: float, window_s: float) -> float:
    points = window_points(series, now, window_s)
    return sum(v for _, v in points) / len(points)


def sample_total(policy: PolicyParams, obs: Observation) -> tuple[float, float]:
    """(timestamp, sum) of fresh per-pod samples."""
    fresh = [s for s in obs.samples if obs.now - s.timestamp <= policy.max_metric_age_s]
    stamp = max((s.timestamp for s in fresh), default=obs.now)
    return stamp, sum(s.value for s in fresh)


def metric_signal_points(obs: Observation) -> Series:
    """What the guards vet for the policy metric: the series, else the per-pod samples."""
    if obs.series:
        return obs.series
    return tuple((s.timestamp, s.value) for s in obs.samples)


def value_at(ordered: Series, t: float) -> float:
    """Step interpolation over a time-ordered series: the last value at or before t (the
    first, if none)."""
    index = bisect_right(ordered, (t, math.inf))
    return ordered[index - 1][1] if index else ordered[0][1]


def values_at(ordered: Series, times: list[float]) -> list[float]:
    """`value_at` at each of `times` (ascending), without a bisect per time: the engine
    asks this for every point of a window on every tick. Two series sampled on the same
    ticks (the usual case: the loop records both signals each tick) align as they are; else
    one merge of the two; a bisect per time only for times that do not order (NaN)."""
    stamps = list(map(itemgetter(0), ordered))
    rising = all(map(lt, stamps, stamps[1:]))
    skip = len(stamps) - len(times)
    if rising and skip >= 0 and stamps[skip:] == times:
        return list(map(itemgetter(1), ordered[skip:]))
    if not ordered or not all(map(le, stamps, stamps[1:])) or not all(map(le, times, times[1:])):
        return [value_at(ordered, t) for t in times]
    found, j, end, first = [], 0, len(stamps), ordered[0][1]
    for t in times:
        while j < end and stamps[j] <= t:
            j += 1
        found.append(ordered[j - 1][1] if j else first)
    return found


def busy_steps(points: list[tuple[float, float]]) -> tuple[list[float], list[float], list[float]]:
    """For time-ordered points: the time and value differences between busy neighbours (both
    values > 0, time advancing), and the busy values. Busy all through with time rising (the
    usual case) is every neighbour, taken in C-level passes."""
    times = list(map(itemgetter(0), points))
    values = list(map(itemgetter(1), points))
    if all(map(lt, times, times[1:])) and all(map(lt, repeat(0), values)):
        return list(map(sub, times[1:], times)), list(map(sub, values[1:], values)), values
    pairs = [
        (t1 - t0, v1 - v0)
        for (t0, v0), (t1, v1) in pairwise(points)
        if t1 > t0 and v0 > 0 and v1 > 0
    ]
    busy = [v for v in values if v > 0]
    return [dt for dt, _ in pairs], [dv for _, dv in pairs], busy


def totals(policy: PolicyParams, obs: Observation) -> Series:
    """The policy metric's series for the whole pool. Each point of a per-replica
    ("average") series is multiplied by the pods it averaged over then, as Knative's scraper
    multiplies each scrape's average per-pod concurrency by the ready pods at that scrape;
    without that count, by the ready count now."""
    if policy.aggregation != "average":
        return obs.series
    pods = tuple(sorted(obs.series_pods))
    if not pods:
        return tuple((t, v * obs.ready) for t, v in obs.series)
    counts = values_at(pods, [t for t, _ in obs.series])
    return tuple((t, v * n) for (t, v), n in zip(obs.series, counts, strict=True))


def pool_total(policy: PolicyParams, obs: Observation, window_s: float) -> float:
    """Mean over the window of the policy metric for the whole pool (see `totals`).

    Multiplying a window mean of per-replica values by the ready count now would overshoot
    after every scale-up: the pre-scale-up averages were over fewer pods.
    """
    if obs.series:
        return window_mean(totals(policy, obs), obs.now, window_s)
    return sample_total(policy, obs)[1]


def per_replica(policy: PolicyParams, obs: Observation, window_s: float) -> float:
    """Mean over the window of the policy metric per ready replica."""
    if obs.series:
        mean = window_mean(obs.series, obs.now, window_s)
        if policy.aggregation == "average":
            return mean
        return mean / max(obs.ready, 1)
    fresh = [s.value for s in obs.samples if obs.now - s.timestamp <= policy.max_metric_age_s]
    if policy.aggregation == "average":
        return sum(fresh) / max(len(fresh), 1)
    return sum(fresh) / max(obs.ready, 1)


def used_values(label: str, series: Series, now: float, window_s: float) -> tuple[MetricValue, ...]:
    return tuple(MetricValue(label, v, t) for t, v in window_points(series, now, window_s))
