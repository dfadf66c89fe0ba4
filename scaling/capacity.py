"""What one replica can serve, from the GPU performance model (``performance``): the
offered-work algorithms size the pool in replica-seconds of prefill and decode. The live
loop and the back-tester use the same figures."""

from __future__ import annotations

import math
from functools import lru_cache

from performance import GpuProfile, ModelDoesNotFit, ReplicaPerf, model_spec, replica_perf
from scaling.engine import ReplicaCapacity

DEFAULT_MAX_CONCURRENCY = 256  # vLLM's default max_num_seqs
DEFAULT_TPOT_S = 0.1  # the default inter-token latency objective
# Prefill iterations interleave with decode steps and stretch inter-token latency, so a decode
# step may use only this share of the inter-token bound.
DECODE_STEP_SHARE = 0.5


def capacity_of(perf: ReplicaPerf, tpot_s: float, max_concurrency: int) -> ReplicaCapacity:
    """What one replica sustains within an inter-token latency objective.

    1. Prefill tokens/s = 1 / prefill time per token (compute-bound, batch-independent).
    2. Decode: the largest batch ``b`` whose step ``step_s(b)`` takes at most
       DECODE_STEP_SHARE of the inter-token bound, capped by ``max_concurrency`` and at
       least 1; decode tokens/s = b / step_s(b).
    """
    budget = DECODE_STEP_SHARE * tpot_s
    batch = math.floor((budget - perf.step_base_s) / perf.step_per_seq_s)
    batch = min(max(batch, 1), max_concurrency)
    return ReplicaCapacity(
        prefill_tokens_per_s=1.0 / perf.prefill_per_token_s,
        decode_tokens_per_s=batch / perf.step_s(batch),
        max_concurrency=max_concurrency,
    )


@lru_cache(maxsize=256)
def replica_capacity(
    profile: GpuProfile | None,
    model: str,
    gpus_per_replica: int,
    max_concurrency: int | None,
    tpot_s: float = DEFAULT_TPOT_S,
) -> ReplicaCapacity | None:
    """Capacity of one replica of ``model`` on ``gpus_per_replica`` x ``profile`` (a
    ``GpuType.profile``), or None when the GPU type has no profile or the model does not fit
    (the algorithms then fall back to the policy metric)."""
    if profile is None:
        return None
    try:
        perf = replica_perf(profile, model_spec(model), gpus_per_replica)
    except ModelDoesNotFit:
        return None
    return capacity_of(perf, tpot_s, max_concurrency or DEFAULT_MAX_CONCURRENCY)
