"""GPU performance model: what one inference replica can do per second.

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


@dataclass(frozen=True, slots=True)
class GpuProfile:
    """One GPU type: datasheet numbers plus the labels real exporters put on it."""

    name: str  # our short name, e.g. "A100-80GB"
    product_label: str  # node label nvidia.com/gpu.product (GPU feature discovery)
    model_name: str  # dcgm-exporter's modelName label
    memory_mib: int
    bandwidth_gbs: float  # peak memory bandwidth, GB/s
    dense_tflops: float  # peak dense FP16/BF16 tensor TFLOPS
    tdp_w: float
    idle_w: float  # assumption: idle draw with a model loaded
    max_sm_clock_mhz: int
    idle_sm_clock_mhz: int


GPU_PROFILES: dict[str, GpuProfile] = {
    p.name: p
    for p in (
        GpuProfile(
            "H100-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA H100 80GB HBM3",
            81559, 3350.0, 989.0, 700.0, 70.0, 1980, 345,
        ),
        GpuProfile(
            "A100-80GB", "NVIDIA-A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB",
            81920, 2039.0, 312.0, 400.0, 55.0, 1410, 210,
        ),
        GpuProfile(
            "A40-48GB", "NVIDIA-A40", "NVIDIA A40",
            46068, 696.0, 149.7, 300.0, 30.0, 1740, 210,
        ),
        GpuProfile(
            "L4-24GB", "NVIDIA-L4", "NVIDIA L4",
            23034, 300.0, 121.0, 72.0, 16.0, 2040, 210,
        ),
    )
}  # fmt: skip

PRODUCT_LABELS: dict[str, str] = {p.product_label: p.name for p in GPU_PROFILES.values()}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The shape of one LLM, as published in its config.json."""

    name: str
    params_b: float  # total parameters, billions (what sits in memory)
    active_params_b: float  # parameters touched per token (differs for mixture-of-experts)
    layers: int
    kv_heads: int
    head_dim: int
    weight_bytes_per_param: float = 2.0  # BF16; 0.5625 for 4-bit AWQ with scales

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * self.weight_bytes_per_param

    @property
    def kv_bytes_per_token(self) -> int:
        # K and V, per layer, per KV head, FP16.
        return 2 * self.layers * self.kv_heads * self.head_dim * 2


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("meta-llama/Llama-3.1-8B-Instruct", 8.03, 8.03, 32, 8, 128),
        ModelSpec("meta-llama/Llama-3.1-70B-Instruct", 70.6, 70.6, 80, 8, 128),
        ModelSpec("Qwen/Qwen2.5-Coder-7B-Instruct", 7.62, 7.62, 28, 4, 128),
        ModelSpec("Qwen/Qwen2.5-Coder-1.5B-Instruct", 1.54, 1.54, 28, 2, 128),
        ModelSpec("Qwen/Qwen2.5-14B-Instruct", 14.7, 14.7, 48, 8, 128),
        ModelSpec("mistralai/Mistral-7B-Instruct-v0.3", 7.25, 7.25, 32, 8, 128),
        ModelSpec("microsoft/Phi-3-mini-4k-instruct", 3.82, 3.82, 32, 32, 96),
        # 46.7 B parameters do not fit two 48 GB cards in BF16: served 4-bit (AWQ).
        ModelSpec("mistralai/Mixtral-8x7B-Instruct-v0.1", 46.7, 12.9, 32, 8, 128, 0.5625),
    )
}


def model_spec(name: str) -> ModelSpec:
    """The catalogue entry for ``name``; unknown models get an 8B-class stand-in."""
    spec = MODELS.get(name)
    if spec is not None:
        return spec
    return ModelSpec(name, 8.0, 8.0, 32, 8, 128)


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
