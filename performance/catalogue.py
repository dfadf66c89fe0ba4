"""The catalogue: GPU types (datasheet numbers and the labels exporters put on them) and LLM
shapes (from their config.json). Sources in docs/simulator.md."""

from __future__ import annotations

from dataclasses import dataclass


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


def gpu_profile(node_label: str, name: str) -> GpuProfile | None:
    """The profile of a GPU type known by its node label (``nvidia.com/gpu.product``) and
    its name, or None. The label is what the nodes advertise, so it wins: an admin may call
    an A100 "a100-big"; the name is the fallback for types registered under a profile name."""
    return GPU_PROFILES.get(PRODUCT_LABELS.get(node_label, name))
