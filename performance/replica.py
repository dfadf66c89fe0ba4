"""What one inference replica can do per second: ``model`` served on ``gpus`` x ``gpu``.

Everything here is arithmetic on public hardware specs and model shapes; the queueing and
batching that turn these numbers into latencies live in :mod:`simulator.replica`.

The model (sources and assumptions in docs/simulator.md):

- Decode is memory-bound: one step streams the weights once, plus each sequence's KV cache,
  so ``step_s(b) = t0 + k * b`` with ``t0 = overhead + weight_bytes / bandwidth`` and
  ``k = 2 * active_params / flops + kv_bytes_per_token * REF_CONTEXT / bandwidth``.
- Prefill is compute-bound: ``n * 2 * active_params / flops`` for ``n`` prompt tokens.
- One engine iteration (vLLM's chunked-prefill scheduler, :mod:`simulator.replica`) runs
  ``d`` decoding sequences and ``p`` prompt tokens in one forward pass; it streams the weights
  once, and a prompt chunk's compute hides that stream (a roofline ``max``), while each
  decoding sequence adds its own compute and KV read:
  ``iteration_s(d, p) = overhead + max(weight_bytes / bandwidth, p * 2 * active_params / flops)
  + k * d``. So ``iteration_s(d, 0) == step_s(d)``.
- The token budget of an iteration is vLLM's online-serving default
  ``max_num_batched_tokens``: 8192 on GPUs with at least 70 GiB that are not A100s, else
  2048 (A100s keep 2048: larger budgets lowered their throughput).
- KV capacity is what vLLM leaves after the weights:
  ``(GPU_MEMORY_UTILIZATION * memory - weight_bytes) / kv_bytes_per_token``.
- ``bandwidth`` and ``flops`` are the datasheet peaks times an efficiency, times the number
  of GPUs in the replica (tensor parallel) times a tensor-parallel efficiency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .catalogue import GpuProfile, ModelSpec

MIB = 1024 * 1024

# Assumptions, not measurements; each is discussed in docs/simulator.md.
BANDWIDTH_EFFICIENCY = 0.7  # share of datasheet HBM/GDDR bandwidth a decode step achieves
COMPUTE_EFFICIENCY = 0.5  # model FLOPs utilisation of prefill
TENSOR_PARALLEL_EFFICIENCY = 0.85  # per-GPU efficiency once a replica spans several GPUs
ITERATION_OVERHEAD_S = 0.002  # scheduler + kernel launch per engine iteration
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's --gpu-memory-utilization default
REF_CONTEXT_TOKENS = 1024  # context length whose KV each decoding sequence reads per step
UNCHUNKED_PREFILL_TOKENS = 8192  # without chunked prefill: prompt tokens batched per prefill
LARGE_GPU_MIB = 70 * 1024  # vLLM raises its token budget on GPUs with at least 70 GiB ...
LARGE_GPU_TOKEN_BUDGET = 8192  # ... to this (vllm serve), except on A100s
TOKEN_BUDGET = 2048  # vllm serve's max_num_batched_tokens elsewhere
DECODE_POWER_FLOOR = 0.6  # share of dynamic power a tiny decode batch draws
FULL_POWER_BATCH = 64  # decode batch at which the GPU draws its full dynamic power


class ModelDoesNotFit(ValueError):
    """The weights leave no room for KV cache on this many GPUs."""


@dataclass(frozen=True, slots=True)
class ReplicaPerf:
    """Derived performance of one replica: ``model`` served on ``gpus`` x ``gpu``."""

    gpu: GpuProfile
    model: ModelSpec
    gpus: int
    step_base_s: float  # t0
    step_per_seq_s: float  # k
    prefill_per_token_s: float
    kv_capacity_tokens: int
    token_budget: int  # max tokens one engine iteration processes (max_num_batched_tokens)
    chunked_prefill: bool = True  # False: the scheduler of vLLM V0 without chunked prefill

    def step_s(self, batch: int) -> float:
        """Duration of one decode iteration with ``batch`` running sequences."""
        return self.step_base_s + self.step_per_seq_s * batch

    def iteration_s(self, decodes: int, prompt_tokens: int) -> float:
        """Duration of one chunked-prefill iteration: ``decodes`` sequences gain a token
        and ``prompt_tokens`` prompt tokens are prefilled, in one forward pass."""
        weights_s = self.step_base_s - ITERATION_OVERHEAD_S
        prefill_s = self.prefill_per_token_s * prompt_tokens
        return self.step_base_s + max(0.0, prefill_s - weights_s) + self.step_per_seq_s * decodes

    def prefill_s(self, tokens: int) -> float:
        """Duration of one prefill-only iteration over ``tokens`` prompt tokens (the
        scheduler without chunked prefill)."""
        return ITERATION_OVERHEAD_S + self.prefill_per_token_s * tokens

    def lone_prefill_s(self, tokens: int) -> float:
        """Time to first token of a ``tokens``-token prompt alone on an idle replica."""
        if not self.chunked_prefill:
            return self.prefill_s(tokens)
        full, rest = divmod(tokens, self.token_budget)
        last = self.iteration_s(0, rest) if rest else 0.0
        return full * self.iteration_s(0, self.token_budget) + last

    def decode_intensity(self, batch: int) -> float:
        """Share of dynamic power and SM activity a decode step with ``batch`` draws."""
        fill = min(1.0, batch / FULL_POWER_BATCH)
        return DECODE_POWER_FLOOR + (1.0 - DECODE_POWER_FLOOR) * fill

    @property
    def memory_used_mib(self) -> int:
        """Per-GPU framebuffer held by a loaded vLLM (it pre-allocates the KV cache)."""
        return int(self.gpu.memory_mib * GPU_MEMORY_UTILIZATION)


def default_token_budget(gpu: GpuProfile, chunked_prefill: bool = True) -> int:
    """``max_num_batched_tokens`` as ``vllm serve`` sets it when left unset (vLLM V1
    ``EngineArgs``): 8192 on GPUs of at least 70 GiB other than A100s, else 2048. Without
    chunked prefill the budget caps the prompts batched into one prefill iteration."""
    if not chunked_prefill:
        return UNCHUNKED_PREFILL_TOKENS
    if gpu.memory_mib >= LARGE_GPU_MIB and "A100" not in gpu.name:
        return LARGE_GPU_TOKEN_BUDGET
    return TOKEN_BUDGET


def replica_perf(
    gpu: GpuProfile,
    model: ModelSpec,
    gpus: int = 1,
    *,
    chunked_prefill: bool = True,
    token_budget: int | None = None,
) -> ReplicaPerf:
    """Derive a replica's performance numbers from the datasheet and the model shape.

    ``token_budget`` defaults to :func:`default_token_budget`; ``chunked_prefill=False``
    selects the older scheduler that runs whole prefills alone (see simulator.replica).
    """
    if token_budget is None:
        token_budget = default_token_budget(gpu, chunked_prefill)
    if token_budget < 1:
        raise ValueError("token_budget must be at least 1")
    tp = 1.0 if gpus == 1 else TENSOR_PARALLEL_EFFICIENCY
    bandwidth = gpu.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY * gpus * tp
    flops = gpu.dense_tflops * 1e12 * COMPUTE_EFFICIENCY * gpus * tp
    flops_per_token = 2.0 * model.active_params_b * 1e9
    free_bytes = GPU_MEMORY_UTILIZATION * gpus * gpu.memory_mib * MIB - model.weight_bytes
    kv_tokens = math.floor(free_bytes / model.kv_bytes_per_token)
    if kv_tokens < 1024:
        raise ModelDoesNotFit(f"{model.name} does not fit on {gpus} x {gpu.name}")
    return ReplicaPerf(
        gpu=gpu,
        model=model,
        gpus=gpus,
        step_base_s=ITERATION_OVERHEAD_S + model.weight_bytes / bandwidth,
        step_per_seq_s=flops_per_token / flops
        + model.kv_bytes_per_token * REF_CONTEXT_TOKENS / bandwidth,
        prefill_per_token_s=flops_per_token / flops,
        kv_capacity_tokens=kv_tokens,
        token_budget=token_budget,
        chunked_prefill=chunked_prefill,
    )
