"""The deployment a back-test replays on, and the requests it replays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from performance import GPU_PROFILES, ReplicaPerf, model_spec, replica_perf
from scaling.capacity import DEFAULT_MAX_CONCURRENCY
from simulator.pool import DEFAULT_ROUTING as DEFAULT_ROUTING  # the back-test's is the pool's
from simulator.pool import ROUTING_STRATEGIES, ServingPool
from simulator.replica import Request
from simulator.traces import Trace, load_trace

DEFAULT_GPU_TYPE = "A100-80GB"
DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"

TraceInput = Trace | str | Path | Sequence[Request]

# USD per GPU-hour a back-test prices a type at when nobody gave a price (the workload's
# GpuType.hourly_cost is 0, no --price). ASSUMPTIONS, not quotes: the demo's GpuType prices
# (controlplane/management/commands/load_demo.py), round figures of the order of 2024-25
# on-demand cloud rates per GPU; set GpuType.hourly_cost to what you pay.
ASSUMED_PRICE_USD_PER_GPU_HOUR: dict[str, float] = {
    "H100-80GB": 4.50,
    "A100-80GB": 2.20,
    "A40-48GB": 0.90,
    "L4-24GB": 0.60,
}
PRICE_GIVEN = "given"  # price_source: the caller's (GpuType.hourly_cost or --price)
PRICE_ASSUMED = "assumed"  # price_source: ASSUMED_PRICE_USD_PER_GPU_HOUR


def gpu_price(gpu_type: str, given: float | None) -> tuple[float, str]:
    """(USD per GPU-hour, where it came from): ``given`` when it is a positive price, else
    the assumed catalogue price. Raises ValueError for a negative or non-finite one."""
    if given is not None:
        if not 0 <= given < float("inf"):
            raise ValueError("the price must be a number of USD per GPU-hour >= 0")
        if given > 0:
            return given, PRICE_GIVEN
    return ASSUMED_PRICE_USD_PER_GPU_HOUR.get(gpu_type, 0.0), PRICE_ASSUMED


@dataclass(frozen=True)
class Deployment:
    """One model on one GPU type: what every replica of the replayed pool is.

    Raises ValueError for an unknown GPU type or routing, a model that does not fit
    (``performance.ModelDoesNotFit``) or a non-positive count.
    """

    gpu_type: str = DEFAULT_GPU_TYPE
    model: str = DEFAULT_MODEL
    gpus_per_replica: int = 1
    cold_start_s: float = 60.0
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    routing: str = DEFAULT_ROUTING

    def __post_init__(self) -> None:
        if self.gpu_type not in GPU_PROFILES:
            known = ", ".join(GPU_PROFILES)
            raise ValueError(f"unknown GPU type {self.gpu_type!r} (known: {known})")
        if self.routing not in ROUTING_STRATEGIES:
            raise ValueError(f"unknown routing strategy {self.routing!r}")
        if self.gpus_per_replica < 1 or self.max_concurrency < 1:
            raise ValueError("gpus_per_replica and max_concurrency must be at least 1")
        if not self.cold_start_s >= 0:
            raise ValueError("cold_start_s must be a number >= 0")
        self.perf  # noqa: B018 - fail early when the model does not fit

    @property
    def perf(self) -> ReplicaPerf:
        return replica_perf(
            GPU_PROFILES[self.gpu_type], model_spec(self.model), self.gpus_per_replica
        )

    def new_pool(
        self, replicas: int, now: float = 0.0, others: Mapping[str, int] | None = None
    ) -> ServingPool:
        """A pool of ``replicas`` warm replicas at ``now`` on ``gpu_type``, plus, for a mixed
        pool, ``others``: warm replicas per other catalogue GPU type (each with that type's
        speed and KV cache; ``ServingPool.set_replicas(n, now, gpu_type=...)`` scales one
        type later). Raises ValueError for an unknown type, ``ModelDoesNotFit`` for one the
        model does not fit."""
        pool = ServingPool(
            GPU_PROFILES[self.gpu_type],
            model_spec(self.model),
            gpus_per_replica=self.gpus_per_replica,
            cold_start_s=self.cold_start_s,
            max_concurrency=self.max_concurrency,
            routing=self.routing,
            replicas=replicas,
            now=now,
            warm=True,
        )
        for gpu_type, count in (others or {}).items():
            pool.set_replicas(count, now, cold_start_s=0.0, gpu_type=gpu_type)
        return pool


def trace_requests(
    trace: TraceInput, start_s: float = 0.0, duration_s: float | None = None
) -> tuple[str, list[Request]]:
    """(name, requests arriving in [start_s, start_s + duration_s)), re-based to start at 0.

    ``trace`` is a parsed Trace, ``conv`` / ``code`` / a file path (parsed by
    ``simulator.traces.load_trace``, which raises ``TraceError``), or ready-made requests.
    Raises ValueError for a negative start, a duration that is not positive, or a start at
    or past the trace's last request (nothing would be replayed).
    """
    if not 0 <= start_s < float("inf"):
        raise ValueError("the start must be a number of seconds >= 0")
    if duration_s is not None and not 0 < duration_s < float("inf"):
        raise ValueError("the duration must be a positive number of seconds")
    end = float("inf") if duration_s is None else start_s + duration_s
    if isinstance(trace, str | Path):
        trace = load_trace(trace)
    if isinstance(trace, Trace):
        name = trace.name
        rows = zip(trace.times, trace.inputs, trace.outputs, strict=True)
        picked = [
            Request(t - start_s, i, o, trace.hash_ids(k))
            for k, (t, i, o) in enumerate(rows)
            if start_s <= t < end
        ]
    else:
        name = "requests"
        picked = [
            Request(r.arrival_s - start_s, r.input_tokens, r.output_tokens, r.hash_ids)
            for r in trace
            if start_s <= r.arrival_s < end
        ]
    last = max(trace.times if isinstance(trace, Trace) else (r.arrival_s for r in trace), default=0)
    if start_s > 0 and start_s >= last:
        raise ValueError(f"the start, {start_s:g} s, is past the trace's last request ({last:g} s)")
    picked.sort(key=lambda r: r.arrival_s)
    return name, picked
