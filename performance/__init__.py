"""The performance model of GPUs and LLMs: the catalogue of GPU types and model shapes, and
what one inference replica of a model on N GPUs of a type does per second.

A leaf: it imports neither Django nor the product nor the simulator, so the product (the
live loop's replica capacity, the back-tester, ``GpuType.profile``) and the simulator (its
replicas, nodes and exporters) read the same numbers. docs/simulator.md has the sources.
"""

from .catalogue import (
    GPU_PROFILES,
    MODELS,
    PRODUCT_LABELS,
    GpuProfile,
    ModelSpec,
    gpu_profile,
    model_spec,
)
from .replica import ModelDoesNotFit, ReplicaPerf, default_token_budget, replica_perf

__all__ = [
    "GPU_PROFILES",
    "MODELS",
    "PRODUCT_LABELS",
    "GpuProfile",
    "ModelDoesNotFit",
    "ModelSpec",
    "ReplicaPerf",
    "default_token_budget",
    "gpu_profile",
    "model_spec",
    "replica_perf",
]
