"""What one replica can serve, from the GPU performance model (simulator.model): the
offered-work algorithms size the pool in replica-seconds of prefill and decode."""

from __future__ import annotations

from functools import lru_cache

from scaling.engine import ReplicaCapacity
from simulator.model import GPU_PROFILES, ModelDoesNotFit, model_spec, replica_perf

DEFAULT_MAX_CONCURRENCY = 256  # vLLM's default max_num_seqs


@lru_cache(maxsize=256)
def replica_capacity(
    gpu_type: str, model: str, gpus_per_replica: int, max_concurrency: int | None
) -> ReplicaCapacity | None:
    """Prefill and decode tokens per second of one replica at its full batch, or None when
    the GPU type has no profile (the algorithms then fall back to the policy metric)."""
    profile = GPU_PROFILES.get(gpu_type)
    if profile is None:
        return None
    try:
        perf = replica_perf(profile, model_spec(model), gpus_per_replica)
    except ModelDoesNotFit:
        return None
    batch = max_concurrency or DEFAULT_MAX_CONCURRENCY
    return ReplicaCapacity(
        prefill_tokens_per_s=1.0 / perf.prefill_per_token_s,
        decode_tokens_per_s=batch / perf.step_s(batch),
        max_concurrency=batch,
    )
