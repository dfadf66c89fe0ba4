"""The live what-if: an edited (unsaved) policy replayed on a workload's stored signals
(``scaling.signal_store``, ``scaling.backtest.replay_signals``), beside the replicas that really
ran, with scale events, GPU-hours and, where the stored signals allow it, an estimate of SLO
attainment. Served by the dashboard (``POST /workloads/<id>/whatif/``) and the API
(``POST /api/v1/policies/<id>/whatif/``) alike.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, Generic, TypeVar

from scaling import signal_store
from scaling.backtest.deployment import PRICE_ASSUMED, gpu_price
from scaling.capacity import replica_capacity
from scaling.engine import (
    OFFERED_WORK,
    Decision,
    Memory,
    Observation,
    PolicyParams,
    ReplicaCapacity,
    decide,
    history_s,
    reads,
)
from scaling.engine.predictive import mean_wait_s
from scaling.models import ScalingPolicy, Workload
from scaling.signals import SignalHistory, SignalTick

K = TypeVar("K")
V = TypeVar("V")

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
    offered-work algorithms read is the edited policy's, as the loop would compute it.

    Fast while the operator types (``_OBSERVED``, ``_ANSWERS``): the stored ticks are read
    every time (new ticks arrive every loop tick; rows parsed before are not read again,
    ``load_window``), but what the engine is shown at each of
    them is built once per tick set and signal window (what ``decide`` derives from each
    observation and a few policy fields is memoised on it, engine/memo.py), and a policy
    asked again over the same ticks gets its earlier answer."""
    params = edited.engine_params()
    capacity = replica_capacity(
        workload.gpu_type.profile,
        workload.model_name,
        workload.gpus_per_replica,
        edited.max_concurrency,
    )
    # The stored ticks' identity is the key (``load_window``: the rows read and the part of
    # them the window keeps, not every tick hashed): new ticks and compaction change the
    # answer, nothing else does.
    ticks_id, stored = signal_store.load_window(workload, now - window_s, now)
    key = (ticks_id, params, capacity, workload.gpus_per_replica)
    answer = _ANSWERS.get(key)
    if answer is None:
        answer = _replayed(ticks_id, stored, params, capacity, workload.gpus_per_replica)
        _ANSWERS.put(key, answer)
    # A new outer dict (callers add to it); the lists inside are shared with the memo and
    # only ever serialised.
    return {"window_s": window_s, **answer, **priced(workload, answer["summary"])}


def priced(workload: Workload, summary: dict[str, Any]) -> dict[str, Any]:
    """The price per GPU-hour (the GpuType's ``hourly_cost``, else an assumed catalogue price:
    ``gpu_price``, as the back-test prices) and, per curve, ``cost_usd`` over the window and
    ``cost_per_hour`` over the time the ticks cover; the cost is None, with ``cost_note``
    saying why, where GPU-hours cannot be priced. No cost per request: the stored ticks hold
    token rates, not request counts."""
    price, source = gpu_price(workload.gpu_type.name, float(workload.gpu_type.hourly_cost))
    note = ""
    if list(workload.variants.all()):  # prefetched by the dashboard's view
        note = (
            f"No cost: this workload runs on several GPU types and its stored replica counts "
            f"are {workload.gpu_type.name} equivalents, not GPUs of one price."
        )
    elif price <= 0:
        note = f"No cost: no price per GPU-hour for {workload.gpu_type.name} (set its hourly cost)."
    charged = None if note else price
    return {
        # New dicts: the memoised summary is shared by every request over these ticks.
        "summary": {
            name: {**curve, **_cost(curve, charged, source)} for name, curve in summary.items()
        },
        "price_per_gpu_hour": price,
        "price_source": source,
        "cost_note": note,
    }


def _cost(curve: dict[str, Any], price: float | None, source: str) -> dict[str, Any]:
    """The curve's GPU-hours (as shown) at ``price``: over the window and per hour covered,
    and the words the page prints beside its GPU-hours (the trace preview's)."""
    if price is None:
        return {"cost_usd": None, "cost_per_hour": None, "cost_text": ""}
    cost = curve["gpu_hours"] * price
    hours = curve["hours"]
    per_hour = cost / hours if hours > 0 else None
    text = f"${cost:.2f} over the window"
    if per_hour is not None:
        text += f", ${per_hour:.2f}/h"
    if source == PRICE_ASSUMED:
        text += f" at an assumed ${price:.2f}/GPU-h"
    return {
        "cost_usd": round(cost, 4),
        "cost_per_hour": None if per_hour is None else round(per_hour, 4),
        "cost_text": text,
    }


def _replayed(
    ticks_id: Hashable,
    stored: list[SignalTick],
    params: PolicyParams,
    capacity: ReplicaCapacity | None,
    gpus: int,
) -> dict[str, Any]:
    offered = OFFERED_WORK in reads(params)
    view_key = (ticks_id, history_s(params), reads(params), capacity if offered else None)
    observed = _OBSERVED.get(view_key)
    if observed is None:
        ticks = [replace(t, capacity=capacity) for t in stored] if offered else stored
        observed = observe(params, ticks)
        _OBSERVED.put(view_key, observed)
    decisions = decide_each(params, observed.observations)
    times = [t.now for t in observed.ticks]
    observed_replicas = [t.current for t in observed.ticks]
    wanted = [d.desired for d in decisions]
    slo, slo_note = slo_estimate(observed.ticks, wanted, capacity, params.slo_ttft_p95_s)
    return {
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


@dataclass(frozen=True)
class Observed:
    """The ticks of a replay and what the engine is shown at each (``replay_signals``'s
    ``SignalHistory`` as it stands after each tick): they depend on the policy only through
    its signal window and the signals its algorithm reads."""

    ticks: list[SignalTick]
    observations: list[Observation]


def observe(policy: PolicyParams, ticks: list[SignalTick]) -> Observed:
    """Step 1 of ``replay_signals``, for every tick at once."""
    history = SignalHistory(policy)
    observations = []
    for tick in ticks:
        history.record(tick)
        observations.append(history.observation(tick))
    return Observed(ticks, observations)


def decide_each(policy: PolicyParams, observations: Sequence[Observation]) -> list[Decision]:
    """Step 2 of ``replay_signals``: the engine on each observation, memory carried."""
    memory = Memory()
    decisions = []
    for observation in observations:
        decision = decide(policy, observation, memory)
        decisions.append(decision)
        memory = decision.memory
    return decisions


class _Recent(Generic[K, V]):
    """The last ``size`` entries used, per process (each server process keeps its own)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[K, V] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


# Per server process, at most ~70 MB: an engine view is up to ~4 MB (6 h of history with an
# hour of 5 s ticks, predictive's 600 s of every series at each tick), plus what ``decide``
# memoises on its observations (engine/memo.py; measured for predictive on an hour of 5 s
# ticks: 1.7x the view for the first policy, ~0.2x per further value of a field its forecast
# reads, at most 8 such), an answer with its key's ticks ~0.4 MB. Enough for the windows and
# algorithms an operator flips between.
_OBSERVED: _Recent[tuple[Any, ...], Observed] = _Recent(4)
_ANSWERS: _Recent[tuple[Any, ...], dict[str, Any]] = _Recent(16)


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
    # ``hours``: the time the ticks cover (gaps past MAX_STEP_S left out), what a cost per
    # hour divides by.
    return {
        "scale_events": changes,
        "gpu_hours": round(gpu_s / 3600.0, 3),
        "hours": round(sum(steps) / 3600.0, 4),
    }


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
