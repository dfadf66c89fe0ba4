"""The oracle: clairvoyant provisioning, the reference a policy's GPU-hours are compared to.

It knows the whole trace in advance and the performance model exactly. Computed as follows:

1. Cut the replay into windows of ``window_s`` (60 s by default).
2. Per window, the need is the fewest replicas ``n`` (between the floor and ``ceiling``)
   such that the window's requests, replayed alone on ``n`` warm, empty replicas of the same
   deployment and routing (run until they finish), meet the SLO for at least
   ``target_attainment`` (99 %) of the window's feasible requests. Found by doubling then
   bisection (attainment is assumed to grow with ``n``). A window without feasible requests
   needs the floor. The floor is the policy's ``min_replicas`` (every policy is held to it
   too) and the ceiling its ``max_replicas``.
3. Keep a replica through a short dip: per level k = 1, 2, ..., a gap between two stretches
   that need k replicas is bridged when it lasts at most ``cold_start_s`` (holding the
   replica costs the gap, restarting it costs a cold start) — the offline optimum of this
   rent-or-restart choice per level.
4. Provision exactly ahead: each replica added for window w is started ``cold_start_s``
   before w begins, so it is ready on time; removals happen at the window boundary.
5. GPU-hours = sum over windows of replicas x window length x GPUs per replica, plus one
   cold start (``cold_start_s`` x GPUs) for every replica started after time 0. The replay
   starts with the first window's replicas warm, as every policy does. No drain waste.

Why it is a reference and not a proof of optimality: replicas change only at window
boundaries (finer changes could save more), and windows are sized in isolation (work carried
over from the previous window is ignored, which can make the oracle look cheaper than
feasible). To show what its schedule really attains, the schedule is also replayed through
the pool (``slo_attainment``, and ``replay_gpu_hours`` with drains billed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

from simulator.replica import ReplicaState, Request

from .deployment import Deployment
from .result import OracleResult, TimelinePoint, downsample
from .slo import Slo, count_attainment

DEFAULT_WINDOW_S = 60.0
DEFAULT_TARGET_ATTAINMENT = 0.99
DRAIN_LIMIT_S = 600.0  # how long a replay waits for in-flight requests after its end


def window_need(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    start_s: float,
    floor: int,
    ceiling: int,
    target: float = DEFAULT_TARGET_ATTAINMENT,
) -> int:
    """Step 2: the fewest replicas that serve one window's requests at the SLO."""
    perf = deployment.perf
    if not any(slo.feasible(perf, r.input_tokens, r.output_tokens) for r in requests):
        return floor
    low = max(floor, 1)
    if low >= ceiling:
        return ceiling
    if _meets(deployment, slo, requests, start_s, low, target):
        return low
    high = low
    while True:  # doubling until a count meets the target (or the ceiling is reached)
        high = min(high * 2, ceiling)
        if _meets(deployment, slo, requests, start_s, high, target):
            break
        if high == ceiling:
            return ceiling
        low = high
    while high - low > 1:  # bisection: low fails, high meets
        mid = (low + high) // 2
        if _meets(deployment, slo, requests, start_s, mid, target):
            high = mid
        else:
            low = mid
    return high


def _meets(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    start_s: float,
    replicas: int,
    target: float,
) -> bool:
    pool = deployment.new_pool(replicas, now=start_s)
    pool.submit_many(requests)
    pool.advance(start_s + DRAIN_LIMIT_S + (requests[-1].arrival_s - start_s if requests else 0))
    counted = count_attainment(slo, deployment.perf, requests, pool.completed)
    return counted.attainment is None or counted.attainment >= target


def bridge(schedule: Sequence[int], window_s: float, cold_start_s: float) -> list[int]:
    """Step 3: hold replicas through dips no longer than a cold start."""
    out = list(schedule)
    for level in range(1, max(out, default=0) + 1):
        up = [i for i, n in enumerate(out) if n >= level]
        for before, after in pairwise(up):
            gap = after - before - 1
            if gap > 0 and gap * window_s <= cold_start_s:
                for i in range(before + 1, after):
                    out[i] = max(out[i], level)
    return out


def windows(requests: Sequence[Request], end_s: float, window_s: float) -> list[list[Request]]:
    count = max(1, math.ceil(end_s / window_s))
    cut: list[list[Request]] = [[] for _ in range(count)]
    for r in requests:
        cut[min(int(r.arrival_s // window_s), count - 1)].append(r)
    return cut


def run_oracle(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    end_s: float,
    *,
    floor: int = 1,
    ceiling: int = 1000,
    window_s: float = DEFAULT_WINDOW_S,
    target: float = DEFAULT_TARGET_ATTAINMENT,
    progress: Callable[[float], None] | None = None,
) -> OracleResult:
    """Steps 1-5, then replay the schedule through the pool for its real attainment."""
    cut = windows(requests, end_s, window_s)
    needs = []
    for i, part in enumerate(cut):
        needs.append(window_need(deployment, slo, part, i * window_s, floor, ceiling, target))
        if progress is not None:
            progress((i + 1) / len(cut))
    schedule = bridge(needs, window_s, deployment.cold_start_s)
    gpus = deployment.gpus_per_replica
    held_s = sum(
        n * (min(end_s, (i + 1) * window_s) - i * window_s) for i, n in enumerate(schedule)
    )
    starts = sum(max(0, b - a) for a, b in pairwise(schedule))
    gpu_s = (held_s + starts * deployment.cold_start_s) * gpus
    attainment, replay_gpu_s, timeline, events = replay_schedule(
        deployment, slo, requests, end_s, schedule, window_s
    )
    return OracleResult(
        window_s=window_s,
        target_attainment=target,
        gpu_hours=gpu_s / 3600.0,
        mean_replicas=held_s / end_s if end_s > 0 else 0.0,
        peak_replicas=max(schedule, default=0),
        scale_events=events,
        slo_attainment=attainment,
        replay_gpu_hours=replay_gpu_s / 3600.0,
        schedule=tuple(schedule),
        timeline=downsample(timeline),
    )


def replay_schedule(
    deployment: Deployment,
    slo: Slo,
    requests: Sequence[Request],
    end_s: float,
    schedule: Sequence[int],
    window_s: float,
) -> tuple[float | None, float, list[TimelinePoint], int]:
    """Step 4 on the real pool: at every instant ask for max(need now, need one cold start
    ahead). Returns (attainment, GPU-seconds billed up to end_s, timeline, scale events)."""

    def need(t: float) -> int:
        index = int(t // window_s)
        return schedule[index] if 0 <= index < len(schedule) else 0

    cold = deployment.cold_start_s
    marks = {i * window_s for i in range(len(schedule))}
    marks |= {i * window_s - cold for i in range(len(schedule)) if i * window_s - cold > 0}
    pool = deployment.new_pool(max(need(0.0), need(cold)))
    pool.submit_many(requests)
    timeline = [TimelinePoint(0.0, max(need(0.0), need(cold)), max(need(0.0), need(cold)))]
    events = 0
    for t in sorted(m for m in marks if 0 < m < end_s):
        pool.advance(t)
        wanted = max(need(t), need(t + cold))
        if wanted != timeline[-1].replicas:
            events += 1
            pool.set_replicas(wanted, t)
            timeline.append(TimelinePoint(t, wanted, pool.count(ReplicaState.READY)))
    pool.advance(end_s)
    billed = pool.gpu_seconds
    pool.advance(end_s + DRAIN_LIMIT_S)
    counted = count_attainment(slo, deployment.perf, requests, pool.completed)
    return counted.attainment, billed, timeline, events
