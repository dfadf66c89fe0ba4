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
from collections.abc import AsyncIterator, Callable
from typing import Any

from clusters.models import Cluster
from dashboard import observed
from scaling.backtest import jobs
from scaling.engine import PolicyParams
from scaling.models import ScalingPolicy, Workload

OBSERVED = "observed"
TRACES = {OBSERVED: "This workload's last hour (observed)", **jobs.TRACES}
# Ten minutes of a recorded trace keep a preview to seconds on one core.
PREVIEW_DURATION_S = 600.0


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
