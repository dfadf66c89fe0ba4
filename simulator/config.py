"""Fleet configuration: clusters, nodes, workloads and their load, as typed dataclasses.

``load_config(None)`` reads the demo fleet (``simulator/demo.json``); the control plane's
``load_demo`` reads the same file through this function. The JSON shape is documented in
docs/simulator.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from performance import GPU_PROFILES, model_spec, replica_perf
from simulator.pool import DEFAULT_ROUTING

DEMO_CONFIG = Path(__file__).resolve().parent / "demo.json"
LOAD_KINDS = ("trace", "constant", "step", "diurnal", "bursty")


class ConfigError(ValueError):
    """The configuration file is not valid; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """Where a workload's requests come from. Fields unused by ``kind`` are ignored."""

    kind: str = "constant"
    trace: str | None = None  # "conv", "code" or a file path (kind == "trace")
    speed: float = 1.0  # trace time compression: 2.0 replays twice as fast
    rate_scale: float = 1.0  # keep (<1) or duplicate (>1) trace requests
    rate_rps: float = 1.0  # base rate of synthetic patterns
    peak_rps: float = 4.0  # diurnal peak
    high_rps: float = 4.0  # step: the high level
    burst_rps: float = 10.0  # bursty: rate inside a burst
    burst_s: float = 30.0  # bursty: burst length
    period_s: float = 3600.0  # diurnal / step / bursty period
    input_mean: float = 1024.0  # synthetic prompt tokens: log-normal mean
    input_sigma: float = 0.8
    output_mean: float = 200.0  # synthetic generated tokens: log-normal mean
    output_sigma: float = 0.8
    seed: int = 0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    gpu_type: str  # a key of performance.GPU_PROFILES
    gpus: int


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    namespace: str
    name: str  # the Deployment name
    model: str
    gpu_type: str
    gpus_per_replica: int = 1
    replicas: int = 1
    max_concurrency: int = 256
    routing: str = DEFAULT_ROUTING
    cold_start_s: float = 60.0
    load: LoadConfig = field(default_factory=LoadConfig)


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    namespace: str
    name: str
    gpus: int  # spec.hard["requests.nvidia.com/gpu"]


@dataclass(frozen=True, slots=True)
class FaultConfig:
    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500,)
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    metrics_down: bool = False
    failed_nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    nodes: tuple[NodeConfig, ...]
    namespaces: tuple[str, ...]
    workloads: tuple[WorkloadConfig, ...]
    quotas: tuple[QuotaConfig, ...] = ()
    faults: FaultConfig = field(default_factory=FaultConfig)
    # Bearer token -> user name. Empty: the API authenticates no one (every caller is admin).
    tokens: dict[str, str] = field(default_factory=dict)
    # Users allowed everything; any other authenticated user is allowed nothing (403).
    admins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FleetConfig:
    clusters: tuple[ClusterConfig, ...]

    def cluster(self, name: str) -> ClusterConfig:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)


def load_config(path: str | Path | None = None) -> FleetConfig:
    """Read and validate a fleet file; ``None`` means the demo fleet."""
    source = Path(path) if path is not None else DEMO_CONFIG
    try:
        raw = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return parse_config(raw)


def parse_config(raw: Any) -> FleetConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("clusters"), list):
        raise ConfigError("top level must be an object with a 'clusters' list")
    clusters = tuple(_cluster(c, i) for i, c in enumerate(raw["clusters"]))
    names = [c.name for c in clusters]
    if len(set(names)) != len(names):
        raise ConfigError("cluster names must be unique")
    return FleetConfig(clusters)


def _cluster(raw: Any, index: int) -> ClusterConfig:
    where = f"clusters[{index}]"
    _require(isinstance(raw, dict) and isinstance(raw.get("name"), str), f"{where}.name")
    name = raw["name"]
    nodes = tuple(
        node
        for i, group in enumerate(raw.get("nodes", []))
        for node in _node_group(group, name, f"{where}.nodes[{i}]")
    )
    workloads = tuple(
        _workload(w, f"{where}.workloads[{i}]") for i, w in enumerate(raw.get("workloads", []))
    )
    declared = list(raw.get("namespaces", []))
    namespaces = tuple(dict.fromkeys([*declared, *(w.namespace for w in workloads)]))
    quotas = tuple(
        QuotaConfig(q["namespace"], q.get("name", "gpu-quota"), int(q["gpus"]))
        for q in raw.get("quotas", [])
    )
    tokens = raw.get("tokens", {})
    _require(
        isinstance(tokens, dict) and all(isinstance(v, str) for v in tokens.values()),
        f"{where}.tokens (token -> user name)",
    )
    admins = tuple(raw.get("admins", ()))
    faults = _faults(raw.get("faults"))
    return ClusterConfig(name, nodes, namespaces, workloads, quotas, faults, tokens, admins)


def _node_group(raw: Any, cluster: str, where: str) -> list[NodeConfig]:
    _require(isinstance(raw, dict), where)
    gpu_type = raw.get("gpu_type")
    _require(gpu_type in GPU_PROFILES, f"{where}.gpu_type (one of {sorted(GPU_PROFILES)})")
    count = int(raw.get("count", 1))
    short = gpu_type.split("-")[0].lower()
    prefix = raw.get("name_prefix", f"{cluster}-{short}")
    gpus = int(raw.get("gpus_per_node", 8))
    return [NodeConfig(f"{prefix}-{i}", gpu_type, gpus) for i in range(count)]


def _workload(raw: Any, where: str) -> WorkloadConfig:
    _require(isinstance(raw, dict), where)
    for key in ("namespace", "name", "model", "gpu_type"):
        _require(isinstance(raw.get(key), str), f"{where}.{key}")
    _require(raw["gpu_type"] in GPU_PROFILES, f"{where}.gpu_type")
    known = {f for f in WorkloadConfig.__dataclass_fields__ if f != "load"}
    fields = {k: v for k, v in raw.items() if k in known}
    workload = WorkloadConfig(**fields, load=_load(raw.get("load", {}), f"{where}.load"))
    _require(workload.replicas >= 0, f"{where}.replicas (>= 0)")
    _require(workload.gpus_per_replica >= 1, f"{where}.gpus_per_replica (>= 1)")
    try:
        replica_perf(
            GPU_PROFILES[workload.gpu_type], model_spec(workload.model), workload.gpus_per_replica
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return workload


def _load(raw: Any, where: str) -> LoadConfig:
    _require(isinstance(raw, dict), where)
    unknown = set(raw) - set(LoadConfig.__dataclass_fields__)
    _require(not unknown, f"{where}: unknown keys {sorted(unknown)}")
    load = LoadConfig(**raw)
    _require(load.kind in LOAD_KINDS, f"{where}.kind (one of {LOAD_KINDS})")
    _require(load.kind != "trace" or bool(load.trace), f"{where}.trace")
    _require(load.speed > 0 and load.rate_scale >= 0, f"{where}.speed/rate_scale")
    return load


def _faults(raw: Any) -> FaultConfig:
    if not raw:
        return FaultConfig()
    return FaultConfig(
        error_rate=float(raw.get("error_rate", 0.0)),
        error_codes=tuple(raw.get("error_codes", (500,))),
        hang_rate=float(raw.get("hang_rate", 0.0)),
        hang_seconds=float(raw.get("hang_seconds", 30.0)),
        metrics_down=bool(raw.get("metrics_down", False)),
        failed_nodes=tuple(raw.get("failed_nodes", ())),
    )


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"invalid or missing {what}")
