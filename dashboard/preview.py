"""What-if preview: back-test the edited (unsaved) policy and the stored one over the same
trace, streaming progress, so the editor shows both replica curves and SLO attainments before
saving.

The back-test (``scaling.backtest.run_backtest``) is CPU-bound pure Python: it runs in a worker
thread while the response streams newline-delimited JSON: ``{"progress": 0..1}`` lines, then
one ``{"result": {"edited": ..., "stored": ...}}`` or ``{"error": "..."}`` line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from typing import Any

from scaling.backtest import run_backtest
from scaling.engine import PolicyParams
from scaling.models import ScalingPolicy, Workload
from simulator.model import PRODUCT_LABELS

TRACES = {"conv": "Azure LLM conversation trace", "code": "Azure LLM code trace"}
# Ten minutes of trace keep a preview to seconds on one core.
PREVIEW_DURATION_S = 600.0


def policy_params(policy: ScalingPolicy) -> PolicyParams:
    return PolicyParams(**{f.name: getattr(policy, f.name) for f in fields(PolicyParams)})


def replay_settings(workload: Workload, policy: ScalingPolicy) -> dict[str, Any]:
    """The pool the trace is replayed on: the workload's model and GPU type."""
    gpu = workload.gpu_type
    settings: dict[str, Any] = {
        "gpu_type": PRODUCT_LABELS.get(gpu.node_label, gpu.name),
        "model": workload.model_name,
        "gpus_per_replica": workload.gpus_per_replica,
        "duration_s": PREVIEW_DURATION_S,
        "oracle": False,
    }
    if policy.max_concurrency:
        settings["max_concurrency"] = policy.max_concurrency
    if policy.routing:
        settings["routing"] = policy.routing
    return settings


def run_pair(
    edited: PolicyParams,
    stored: PolicyParams,
    trace: str,
    settings: dict[str, Any],
    report: Callable[[float], None],
) -> dict[str, Any]:
    """Both back-tests, progress reported as one share over the two runs."""
    out = {}
    for i, (name, params) in enumerate((("edited", edited), ("stored", stored))):

        def progress(share: float, done: int = i) -> None:
            report((done + share) / 2)

        out[name] = run_backtest(params, trace, progress=progress, **settings).to_dict()
    return out


async def stream(
    edited: PolicyParams, stored: PolicyParams, trace: str, settings: dict[str, Any]
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
    except ValueError as exc:  # bad trace or settings the replay cannot honour
        yield _line({"error": str(exc)})


def _line(body: dict[str, Any]) -> bytes:
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()
