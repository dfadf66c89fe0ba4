"""What-if previews of an edited (unsaved) policy.

The live what-if (``signal_whatif``): the engine replayed on this workload's own stored
signals (``scaling.signal_store``) over the last 15 minutes to 6 hours, beside the replica
count that was observed; fast enough to redraw while the operator types.

The recorded-trace preview, the second choice: back-test the edited policy and the stored one
over the same trace, streaming progress, so the editor shows both replica curves and SLO
attainments before saving.

The trace is the workload's own last hour as its cluster's Prometheus recorded it
(``dashboard.observed``; the result then carries ``actual``, the replicas that really served)
or ten minutes of a recorded Azure trace.

The back-test (``scaling.backtest.jobs``, as the API's job and the command run it) is
CPU-bound pure Python: it runs in a worker
thread while the response streams newline-delimited JSON: ``{"progress": 0..1}`` lines, then
one ``{"result": {"edited": ..., "stored": ...}}`` or ``{"error": "..."}`` line.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from itertools import pairwise
from typing import Any

from clusters.models import Cluster
from dashboard import observed
from scaling import signal_store
from scaling.backtest import jobs, replay_signals
from scaling.capacity import replica_capacity
from scaling.engine import OFFERED_WORK, PolicyParams, ReplicaCapacity, reads
from scaling.engine.predictive import mean_wait_s
from scaling.models import ScalingPolicy, Workload
from scaling.signals import SignalTick

OBSERVED = "observed"
TRACES = {OBSERVED: "This workload's last hour (observed)", **jobs.TRACES}
# Ten minutes of a recorded trace keep a preview to seconds on one core.
PREVIEW_DURATION_S = 600.0


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


def observed_unavailable(workload: Workload) -> str:
    """Why the workload has no observed history to replay ("" when it may have one)."""
    cluster = workload.cluster
    if cluster.metrics_source != Cluster.MetricsSource.PROMETHEUS:
        why = (
            f"cluster {cluster.name} is read from its exporters directly, which keep no "
            "request history"
        )
    elif not cluster.metrics_url:
        why = f"cluster {cluster.name} has no Prometheus URL"
    else:
        return ""
    return (
        f"No observed load to replay: {why}. Pick a recorded trace (the live what-if "
        "above replays the control plane's own signal history)."
    )


def trace_source(workload: Workload, trace: str, now: float) -> str | observed.ObservedQuery:
    """The recorded trace's name, or what to read for the workload's observed hour."""
    if trace != OBSERVED:
        return trace
    return observed.ObservedQuery(
        prometheus_url=workload.cluster.metrics_url,
        namespace=workload.namespace,
        deployment=workload.deployment,
        seed=workload.pk,
        end=now,
        window_s=observed.WINDOW_S,
        step_s=observed.STEP_S,
    )


def replay_settings(workload: Workload, policy: ScalingPolicy) -> dict[str, Any]:
    """The API job's replay (the workload's model, GPU type and pool) for ten minutes of a
    recorded trace."""
    return jobs.replay_settings(workload, policy, PREVIEW_DURATION_S)


def run_pair(
    edited: PolicyParams,
    stored: PolicyParams,
    source: str | observed.ObservedQuery,
    settings: dict[str, Any],
    report: Callable[[float], None],
) -> dict[str, Any]:
    """Both back-tests as one job without the oracle (a preview is for comparing the two
    curves), progress reported as one share over the two runs. An observed source is read
    first (Prometheus, in this worker thread) and replayed whole, starting from the replicas
    that served at its start."""
    out: dict[str, Any] = {}
    trace: Any = source
    serving: int | None = None
    if isinstance(source, observed.ObservedQuery):
        load = observed.read_observed_load(source)
        trace, serving = load.trace, load.initial_replicas
        settings = {**settings, "duration_s": load.duration_s}
        out["actual"] = load.to_dict()
    results = jobs.run_job(
        [edited, stored],
        trace,
        settings,
        oracle=False,
        initial_replicas=serving,
        progress=lambda share, _algorithm: report(share),
    )
    out["edited"], out["stored"] = (result.to_dict() for result in results)
    return out


async def stream(
    edited: PolicyParams,
    stored: PolicyParams,
    trace: str | observed.ObservedQuery,
    settings: dict[str, Any],
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    shares: asyncio.Queue[float] = asyncio.Queue()

    def report(share: float) -> None:
        loop.call_soon_threadsafe(shares.put_nowait, share)

    job = loop.run_in_executor(None, run_pair, edited, stored, trace, settings, report)
    last = -1.0
    while not job.done():
        try:
            share = await asyncio.wait_for(shares.get(), timeout=0.5)
        except TimeoutError:
            continue
        if share - last >= 0.01:  # at most ~100 progress lines
            last = share
            yield _line({"progress": round(share, 3)})
    try:
        yield _line({"result": job.result()})
    except ValueError as exc:  # no observed load, bad trace, settings it cannot honour
        yield _line({"error": str(exc)})


def _line(body: dict[str, Any]) -> bytes:
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()
