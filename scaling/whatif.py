"""The live what-if: an edited (unsaved) policy replayed on a workload's stored signals
(``scaling.signal_store``, ``scaling.backtest.replay_signals``), beside the replicas that really
ran, with scale events, GPU-hours and, where the stored signals allow it, an estimate of SLO
attainment. Served by the dashboard (``POST /workloads/<id>/whatif/``) and the API
(``POST /api/v1/policies/<id>/whatif/``) alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise
from typing import Any

from scaling import signal_store
from scaling.backtest import replay_signals
from scaling.capacity import replica_capacity
from scaling.engine import OFFERED_WORK, ReplicaCapacity, reads
from scaling.engine.predictive import mean_wait_s
from scaling.models import ScalingPolicy, Workload
from scaling.signals import SignalTick

# The live what-if's windows (seconds), as the page offers them.
WINDOWS = {"900": 900.0, "3600": 3600.0, "21600": 21600.0}
# Past this a gap between two stored ticks is no observation (the loop was not running, the
# workload unobservable): the GPUs of the gap are not counted. Minute means are 60 s apart.
MAX_STEP_S = 120.0


def signal_whatif(
    workload: Workload, edited: ScalingPolicy, window_s: float, now: float
) -> dict[str, Any]:
    """What ``edited`` would have wanted at each stored tick of the last ``window_s``
    (``replay_signals``, open loop: the ticks keep the replicas that really ran), beside the
    observed replica count, with scale events and GPU-hours of both. The replica capacity the
    offered-work algorithms read is the edited policy's, as the loop would compute it."""
    params = edited.engine_params()
    ticks = signal_store.load_ticks(workload, now - window_s, now)
    capacity = replica_capacity(
        workload.gpu_type.profile,
        workload.model_name,
        workload.gpus_per_replica,
        edited.max_concurrency,
    )
    if OFFERED_WORK in reads(params):
        ticks = [replace(t, capacity=capacity) for t in ticks]
    decisions = replay_signals(params, ticks)
    times = [t.now for t in ticks]
    observed_replicas = [t.current for t in ticks]
    wanted = [d.desired for d in decisions]
    gpus = workload.gpus_per_replica
    slo, slo_note = slo_estimate(ticks, wanted, capacity, edited.slo_ttft_p95_s)
    return {
        "window_s": window_s,
        "t": times,
        "observed": observed_replicas,
        "whatif": wanted,
        "reasons": [d.reason for d in decisions],
        "summary": {
            "observed": _summary(times, observed_replicas, gpus),
            "whatif": _summary(times, wanted, gpus),
        },
        "slo": slo,
        "slo_note": slo_note,
    }


SLO_METHOD = (
    "An estimate, not a replay: at each stored tick the load in replicas of work (prompt "
    "and generation tokens/s over one replica's capacity) and the observed queueing delay "
    "p95 fit an M/G/c queue (Allen-Cunneen, as predictive sizes with); the delay is "
    "rescaled to the edited replica count and TTFT p95 moved by the difference. Prefill "
    "time and the spread of requests are taken as observed."
)


def slo_estimate(
    ticks: Sequence[SignalTick],
    wanted: Sequence[int],
    capacity: ReplicaCapacity | None,
    objective_s: float | None,
) -> tuple[dict[str, Any] | None, str]:
    """The share of ticks whose TTFT p95 met ``objective_s`` as observed, and as estimated
    under the edited replica counts (``SLO_METHOD``); None and why when no honest estimate
    can be made from the stored signals."""
    if objective_s is None:
        return None, "No SLO estimate: the policy has no TTFT p95 objective."
    if capacity is None:
        return None, "No SLO estimate: no replica capacity for this model and GPU type."
    met_observed = met_whatif = 0
    counted = 0
    for tick, replicas in zip(ticks, wanted, strict=True):
        estimate = _ttft_at(tick, replicas, capacity)
        if estimate is None or tick.ttft_p95_s is None:
            continue
        counted += 1
        met_observed += tick.ttft_p95_s <= objective_s
        met_whatif += estimate <= objective_s
    if counted == 0:
        return None, (
            "No SLO estimate: no stored tick in this window has TTFT p95, queueing delay p95 "
            "and token rates together."
        )
    body = {
        "signal": "ttft",
        "objective_s": objective_s,
        "observed": round(met_observed / counted, 4),
        "whatif": round(met_whatif / counted, 4),
        "ticks": counted,
        "method": SLO_METHOD,
    }
    return body, SLO_METHOD


def _ttft_at(tick: SignalTick, replicas: int, capacity: ReplicaCapacity) -> float | None:
    """TTFT p95 at ``tick`` had ``replicas`` served its load, or None when unknown."""
    ttft, queue, serving = tick.ttft_p95_s, tick.queue_p95_s, tick.ready or tick.current
    prompt, generation = tick.prompt_tokens_per_s, tick.generation_tokens_per_s
    if ttft is None or queue is None or prompt is None or generation is None or serving < 1:
        return None
    load = prompt / capacity.prefill_tokens_per_s + generation / capacity.decode_tokens_per_s
    if replicas < 1 or load >= replicas:
        return math.inf  # no replicas, or more work than they serve: the queue grows
    observed_unit = mean_wait_s(serving, load, 1.0)
    if not math.isfinite(observed_unit) or observed_unit <= 0:
        return ttft  # the observed count ran saturated or idle: nothing to rescale from
    # The wait is linear in the dispersion, so the observed delay fixes it: the ratio of
    # the two unit waits rescales the observed delay to the edited count.
    rescaled = queue * mean_wait_s(replicas, load, 1.0) / observed_unit
    return max(ttft - queue + rescaled, 0.0)


def _summary(times: Sequence[float], replicas: Sequence[int], gpus: int) -> dict[str, Any]:
    changes = sum(1 for a, b in pairwise(replicas) if a != b)
    steps = [min(b - a, MAX_STEP_S) for a, b in pairwise(times)]
    gpu_s = sum(r * gpus * dt for r, dt in zip(replicas, steps, strict=False))
    return {"scale_events": changes, "gpu_hours": round(gpu_s / 3600.0, 3)}


def history_mismatch(stored: ScalingPolicy, edited: ScalingPolicy) -> dict[str, str]:
    """Fields the stored signals cannot answer for: the history is of the stored metric as
    the stored policy aggregated it."""
    errors = {}
    for name in ("metric", "aggregation"):
        if getattr(stored, name) != getattr(edited, name):
            errors[name] = (
                f"The stored signal history is of {stored.metric} ({stored.aggregation}); the "
                "what-if replays it, so it cannot show another metric or aggregation. Save, and "
                "the history of the new one starts, or preview on a recorded trace."
            )
    return errors
