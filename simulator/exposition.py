"""Prometheus exposition text (format 0.0.4) for one cluster, as its exporters would emit.

Two families of series, with the names, help strings and labels of the real exporters:

- dcgm-exporter, one series per GPU of every reachable node (``gpu``, ``UUID``, ``device``,
  ``modelName``, ``Hostname``, ``pci_bus_id``, ``DCGM_FI_DRIVER_VERSION``, plus ``namespace``,
  ``pod``, ``container`` when a pod holds the GPU, as with dcgm-exporter's pod mapping).
- vLLM, one series per serving replica (``model_name`` as vLLM sets it; ``namespace`` and
  ``pod`` as the Prometheus pod scrape adds them), with vLLM's histogram buckets, its V1
  prefix-cache counters (tokens) and its per-request prompt-length histogram.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from performance import GPU_PROFILES
from simulator.histogram import Histogram
from simulator.replica import Replica, ReplicaState

if TYPE_CHECKING:
    from simulator.cluster import Cluster, PodInfo

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DRIVER_VERSION = "550.90.07"

DCGM_FAMILIES = (
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active."),
)
Labels = dict[str, str]
Sample = tuple[str, float]  # the rendered label block ("{...}" or "") and the value


def render(cluster: Cluster) -> str:
    """The whole scrape for ``cluster`` (caller holds its lock)."""
    lines: list[str] = []
    _dcgm(cluster, lines)
    _vllm(cluster, lines)
    return "\n".join(lines) + "\n"


# --- dcgm-exporter ---------------------------------------------------------------------------


def _dcgm(cluster: Cluster, lines: list[str]) -> None:
    samples: dict[str, list[Sample]] = {name: [] for name, _ in DCGM_FAMILIES}
    holders = {(p.node, gpu): p for p in cluster.pod_info.values() if p.node for gpu in p.gpu_ids}
    for node_name in sorted(cluster.nodes):
        if node_name in cluster.failed_nodes:
            continue  # the exporter on a dead node answers nothing
        profile = GPU_PROFILES[cluster.node_gpu_product(node_name)]
        count = int(cluster.nodes[node_name]["status"]["capacity"]["nvidia.com/gpu"])
        for gpu in range(count):
            labels = {
                "gpu": str(gpu),
                "UUID": _gpu_uuid(node_name, gpu),
                "pci_bus_id": f"00000000:{0x18 + 0x10 * gpu:02X}:00.0",
                "device": f"nvidia{gpu}",
                "modelName": profile.model_name,
                "Hostname": node_name,
                "DCGM_FI_DRIVER_VERSION": DRIVER_VERSION,
            }
            holder = holders.get((node_name, gpu))
            if holder is not None:
                labels.update(container="vllm", namespace=holder.namespace, pod=holder.name)
            block = _labels(labels)  # rendered once for the GPU's seven series
            for name, value in _gpu_values(cluster, holder, profile.name).items():
                samples[name].append((block, value))
    for name, help_text in DCGM_FAMILIES:
        _family(lines, name, help_text, "gauge", samples[name])


@lru_cache(maxsize=65536)
def _gpu_uuid(node_name: str, gpu: int) -> str:
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node_name}/{gpu}"))


def _gpu_values(cluster: Cluster, holder: PodInfo | None, gpu_type: str) -> dict[str, float]:
    """Gauges of one GPU: derived from its replica's batch, or idle."""
    profile = GPU_PROFILES[gpu_type]
    util = activity = 0.0
    used = 0.0
    if holder is not None:
        replica = _replica(cluster, holder)
        if replica is not None and replica.state is ReplicaState.WARMING:
            # Weights stream in during the cold start; no kernels run yet.
            span = max(replica.ready_s - replica.created_s, 1e-9)
            loaded = min(1.0, max(0.0, (cluster.now - replica.created_s) / span))
            used = replica.perf.memory_used_mib * loaded
        elif replica is not None:
            util, activity = replica.util, replica.activity
            used = replica.perf.memory_used_mib
    clock = profile.max_sm_clock_mhz if util > 0.01 else profile.idle_sm_clock_mhz
    return {
        "DCGM_FI_DEV_SM_CLOCK": float(clock),
        "DCGM_FI_DEV_GPU_TEMP": round(31.0 + 45.0 * activity),
        "DCGM_FI_DEV_POWER_USAGE": round(
            profile.idle_w + (profile.tdp_w - profile.idle_w) * activity, 3
        ),
        "DCGM_FI_DEV_GPU_UTIL": float(round(100 * util)),
        "DCGM_FI_DEV_FB_FREE": float(profile.memory_mib - round(used)),
        "DCGM_FI_DEV_FB_USED": float(round(used)),
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": round(activity, 6),
    }


def _replica(cluster: Cluster, pod: PodInfo) -> Replica | None:
    dep = cluster.dep_info.get((pod.namespace, pod.deployment))
    return None if dep is None else dep.pool.replicas.get(pod.name)


# --- vLLM ------------------------------------------------------------------------------------


def _vllm(cluster: Cluster, lines: list[str]) -> None:
    gauges: dict[str, list[Sample]] = {"running": [], "waiting": [], "kv": []}
    counters: dict[str, list[Sample]] = {
        "prompt": [],
        "generation": [],
        "success": [],
        "cache_queries": [],
        "cache_hits": [],
    }
    histograms: dict[str, list[tuple[Labels, Histogram]]] = {
        "ttft": [],
        "queue": [],
        "e2e": [],
        "itl": [],
        "prompt_len": [],
    }
    for pod in sorted(cluster.pod_info.values(), key=lambda p: (p.namespace, p.name)):
        replica = _replica(cluster, pod)
        if replica is None or replica.state not in (ReplicaState.READY, ReplicaState.DRAINING):
            continue  # a warming vLLM has no HTTP server yet
        labels = {
            "model_name": cluster.dep_info[(pod.namespace, pod.deployment)].model,
            "namespace": pod.namespace,
            "pod": pod.name,
        }
        block = _labels(labels)
        gauges["running"].append((block, float(len(replica.running))))
        gauges["waiting"].append((block, float(len(replica.waiting))))
        gauges["kv"].append((block, round(replica.kv_usage, 6)))
        counters["prompt"].append((block, float(replica.prompt_tokens)))
        counters["generation"].append((block, float(replica.generation_tokens)))
        counters["cache_queries"].append((block, float(replica.prefix_cache_queries)))
        counters["cache_hits"].append((block, float(replica.prefix_cache_hits)))
        counters["success"].append(
            (_labels({**labels, "finished_reason": "stop"}), float(replica.successes))
        )
        histograms["ttft"].append((labels, replica.ttft))
        histograms["queue"].append((labels, replica.queue))
        histograms["e2e"].append((labels, replica.e2e))
        histograms["itl"].append((labels, replica.itl))
        histograms["prompt_len"].append((labels, replica.prompt_lengths))
    _family(
        lines,
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        "gauge",
        gauges["running"],
    )
    _family(
        lines,
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        "gauge",
        gauges["waiting"],
    )
    _family(
        lines,
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        "gauge",
        gauges["kv"],
    )
    _family(
        lines,
        "vllm:prompt_tokens_total",
        "Number of prefill tokens processed.",
        "counter",
        counters["prompt"],
    )
    _family(
        lines,
        "vllm:generation_tokens_total",
        "Number of generation tokens processed.",
        "counter",
        counters["generation"],
    )
    _family(
        lines,
        "vllm:request_success_total",
        "Count of successfully processed requests.",
        "counter",
        counters["success"],
    )
    # vLLM V1's prefix-cache counters (vllm/v1/metrics/loggers.py), in tokens.
    _family(
        lines,
        "vllm:prefix_cache_queries_total",
        "Prefix cache queries, in terms of number of queried tokens.",
        "counter",
        counters["cache_queries"],
    )
    _family(
        lines,
        "vllm:prefix_cache_hits_total",
        "Prefix cache hits, in terms of number of cached tokens.",
        "counter",
        counters["cache_hits"],
    )
    _histogram(
        lines,
        "vllm:request_prompt_tokens",
        "Number of prefill tokens processed.",
        histograms["prompt_len"],
    )
    _histogram(
        lines,
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        histograms["ttft"],
    )
    _histogram(
        lines,
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        histograms["queue"],
    )
    _histogram(
        lines,
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        histograms["e2e"],
    )
    _histogram(
        lines,
        "vllm:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        histograms["itl"],
    )


# --- text format -----------------------------------------------------------------------------


def _family(
    lines: list[str], name: str, help_text: str, kind: str, samples: Iterable[Sample]
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for block, value in samples:
        lines.append(f"{name}{block} {_number(value)}")


def _histogram(
    lines: list[str], name: str, help_text: str, series: list[tuple[Labels, Histogram]]
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    for labels, histogram in series:
        # The series' labels are rendered once, not once per bucket.
        block = _labels(labels)
        bucket = f"{name}_bucket{{{block[1:-1]}," if labels else f"{name}_bucket{{"
        for bound, count in histogram.cumulative():
            lines.append(f'{bucket}le="{_le(bound)}"}} {count}')
        lines.append(f"{name}_sum{block} {_number(histogram.total)}")
        lines.append(f"{name}_count{block} {histogram.count}")


@lru_cache(maxsize=1024)
def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value))
