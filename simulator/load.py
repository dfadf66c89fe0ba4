"""Load generators: trace replay and seeded synthetic patterns, queried by time window.

Every source answers ``arrivals(t0, t1)`` with the requests arriving in ``[t0, t1)`` (seconds
since the load started), deterministically: the same window always yields the same requests,
whatever windows were asked before. That lets the live server poll in 100 ms slices and the
back-tester in one go and see identical traffic.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from functools import lru_cache
from typing import Protocol

from simulator.config import LoadConfig
from simulator.replica import Request
from simulator.traces import Trace, load_trace


class LoadSource(Protocol):
    def arrivals(self, t0: float, t1: float) -> list[Request]: ...


class TraceLoad:
    """Replays a trace ``speed`` times faster at ``rate_scale`` times the rate, looping.

    Rate scaling is deterministic: each request is kept ``floor(rate_scale)`` times plus once
    more with probability ``frac(rate_scale)`` (seeded), and extra copies are spread over the
    gap to the next request so duplication adds no artificial bursts.
    """

    def __init__(self, trace: Trace, speed: float = 1.0, rate_scale: float = 1.0, seed: int = 0):
        self.times, self.inputs, self.outputs = _expand(trace, speed, rate_scale, seed)
        mean_gap = trace.duration_s / max(1, len(trace) - 1) / speed
        self.period_s = trace.duration_s / speed + mean_gap

    def arrivals(self, t0: float, t1: float) -> list[Request]:
        out: list[Request] = []
        if not self.times or t1 <= t0:
            return out
        loop = math.floor(t0 / self.period_s)
        while loop * self.period_s < t1:
            base = loop * self.period_s
            lo = bisect_left(self.times, t0 - base)
            hi = bisect_left(self.times, t1 - base)
            for i in range(lo, hi):
                out.append(Request(base + self.times[i], self.inputs[i], self.outputs[i]))
            loop += 1
        return out


@lru_cache(maxsize=32)
def _expand(
    trace: Trace, speed: float, rate_scale: float, seed: int
) -> tuple[list[float], list[int], list[int]]:
    rng = random.Random(seed)
    whole, frac = divmod(rate_scale, 1.0)
    rows: list[tuple[float, int, int]] = []
    n = len(trace)
    for i in range(n):
        copies = int(whole) + (1 if rng.random() < frac else 0)
        t = trace.times[i]
        gap = (trace.times[i + 1] - t) if i + 1 < n else 0.0
        for copy in range(copies):
            offset = 0.0 if copy == 0 else rng.uniform(0.0, gap)
            rows.append(((t + offset) / speed, trace.inputs[i], trace.outputs[i]))
    rows.sort(key=lambda row: row[0])
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


class SyntheticLoad:
    """Poisson arrivals whose rate follows a pattern; log-normal token lengths.

    Each whole second has its own seeded generator, so a window's requests do not depend on
    how earlier windows were cut.
    """

    def __init__(self, config: LoadConfig) -> None:
        self.config = config

    def rate(self, t: float) -> float:
        c = self.config
        if c.kind == "step":
            return c.high_rps if (t % c.period_s) >= c.period_s / 2 else c.rate_rps
        if c.kind == "diurnal":
            phase = (1 - math.cos(2 * math.pi * t / c.period_s)) / 2
            return c.rate_rps + (c.peak_rps - c.rate_rps) * phase
        if c.kind == "bursty":
            cycle = math.floor(t / c.period_s)
            start = random.Random(c.seed * 7919 + cycle).uniform(
                0.0, max(0.0, c.period_s - c.burst_s)
            )
            inside = start <= t - cycle * c.period_s < start + c.burst_s
            return c.burst_rps if inside else c.rate_rps
        return c.rate_rps

    def arrivals(self, t0: float, t1: float) -> list[Request]:
        out: list[Request] = []
        for second in range(math.floor(t0), math.ceil(t1)):
            out.extend(r for r in self._second(second) if t0 <= r.arrival_s < t1)
        return out

    def _second(self, second: int) -> list[Request]:
        c = self.config
        rng = random.Random(c.seed * 1_000_003 + second)
        rate = self.rate(second + 0.5)
        out: list[Request] = []
        if rate <= 0:
            return out
        t = second + rng.expovariate(rate)
        while t < second + 1:
            out.append(
                Request(
                    t,
                    _lognormal(rng, c.input_mean, c.input_sigma),
                    _lognormal(rng, c.output_mean, c.output_sigma),
                )
            )
            t += rng.expovariate(rate)
        return out


def _lognormal(rng: random.Random, mean: float, sigma: float) -> int:
    mu = math.log(mean) - sigma * sigma / 2  # so that the distribution's mean is ``mean``
    return max(1, min(32_000, round(rng.lognormvariate(mu, sigma))))


def make_load(config: LoadConfig) -> LoadSource:
    if config.kind == "trace":
        trace = load_trace(config.trace or "conv")
        return TraceLoad(trace, config.speed, config.rate_scale, config.seed)
    return SyntheticLoad(config)
