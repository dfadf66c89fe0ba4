"""Metric samples of a cluster, from whichever source it uses (a Prometheus server or the
exporters' /metrics text). Both sources return the same ``Sample`` records with the labels
normalised, so the control loop never knows which one it read."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clusters.models import Cluster


@dataclass(frozen=True)
class Sample:
    """The latest value of one series. ``timestamp`` is when it was scraped (Unix seconds)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp: float

    def label(self, key: str) -> str:
        # A scan of a handful of pairs beats building a dict per sample: a tick reads tens of
        # thousands of samples, a label or two of each.
        for name, value in self.labels:
            if name == key:
                return value
        return ""


# Prometheus' metric name rule (https://prometheus.io/docs/concepts/data_model/).
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class KnownMetric:
    """A series the exporters the project reads publish: its unit and, for a bounded gauge
    (a ratio, a percentage), the largest value one series can hold."""

    unit: str
    most: float | None = None


_RATIO = KnownMetric("ratio (0 to 1)", 1.0)
_PERCENT = KnownMetric("percent (0 to 100)", 100.0)
_COUNT = KnownMetric("count")
_SECONDS = KnownMetric("seconds")
_TOTAL = KnownMetric("counter")

# dcgm-exporter's default counters and vLLM's metrics (the names the simulator serves, as the
# real exporters spell them). A policy's metric outside this list (and outside what its
# cluster was seen to expose) is accepted with a warning: custom metrics are legitimate.
KNOWN_METRICS: dict[str, KnownMetric] = {
    "DCGM_FI_DEV_SM_CLOCK": KnownMetric("MHz"),
    "DCGM_FI_DEV_MEM_CLOCK": KnownMetric("MHz"),
    "DCGM_FI_DEV_GPU_TEMP": KnownMetric("degrees C"),
    "DCGM_FI_DEV_MEMORY_TEMP": KnownMetric("degrees C"),
    "DCGM_FI_DEV_POWER_USAGE": KnownMetric("W"),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": KnownMetric("mJ"),
    "DCGM_FI_DEV_GPU_UTIL": _PERCENT,
    "DCGM_FI_DEV_MEM_COPY_UTIL": _PERCENT,
    "DCGM_FI_DEV_ENC_UTIL": _PERCENT,
    "DCGM_FI_DEV_DEC_UTIL": _PERCENT,
    "DCGM_FI_DEV_FB_FREE": KnownMetric("MiB"),
    "DCGM_FI_DEV_FB_USED": KnownMetric("MiB"),
    "DCGM_FI_DEV_XID_ERRORS": KnownMetric("error code"),
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": _RATIO,
    "DCGM_FI_PROF_SM_ACTIVE": _RATIO,
    "DCGM_FI_PROF_SM_OCCUPANCY": _RATIO,
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": _RATIO,
    "DCGM_FI_PROF_DRAM_ACTIVE": _RATIO,
    "DCGM_FI_PROF_PCIE_TX_BYTES": KnownMetric("bytes/s"),
    "DCGM_FI_PROF_PCIE_RX_BYTES": KnownMetric("bytes/s"),
    "vllm:num_requests_running": _COUNT,
    "vllm:num_requests_waiting": _COUNT,
    "vllm:kv_cache_usage_perc": _RATIO,  # a ratio despite the name ("1 means 100 percent")
    "vllm:gpu_cache_usage_perc": _RATIO,  # its name before vLLM 0.10
    "vllm:prompt_tokens_total": _TOTAL,
    "vllm:generation_tokens_total": _TOTAL,
    "vllm:request_success_total": _TOTAL,
    "vllm:num_preemptions_total": _TOTAL,
    "vllm:prefix_cache_queries_total": KnownMetric("tokens (counter)"),
    "vllm:prefix_cache_hits_total": KnownMetric("tokens (counter)"),
    "vllm:request_prompt_tokens_bucket": _TOTAL,
    "vllm:request_prompt_tokens_sum": KnownMetric("tokens (counter)"),
    "vllm:request_prompt_tokens_count": _TOTAL,
    **{
        f"vllm:{histogram}_{part}": _TOTAL if part != "sum" else _SECONDS
        for histogram in (
            "time_to_first_token_seconds",
            "e2e_request_latency_seconds",
            "inter_token_latency_seconds",
            "time_per_output_token_seconds",
        )
        for part in ("bucket", "sum", "count")
    },
}


def unknown_metric_warning(name: str, exposed: Iterable[str] = ()) -> str | None:
    """A sentence saying ``name`` is no series the exporters (or ``exposed``) are known to
    publish, with the closest known name when there is one; None when it is known."""
    known = set(KNOWN_METRICS) | set(exposed)
    if name in known:
        return None
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    hint = f" Did you mean {close[0]}?" if close else ""
    return (
        f"{name} is not a series the cluster's exporters are known to publish (dcgm-exporter, "
        f"vLLM); unless it is a custom metric, the policy will find no samples and hold.{hint}"
    )


class MetricsError(Exception):
    """The metrics source could not be read (every metric of this tick is missing). Its
    text is a sentence for operators ("Prometheus at http://prom:9090 answered HTTP 503"),
    never a client's repr with ports and retry counts."""


def failure_words(exc: BaseException, timeout_s: float) -> str:
    """What a failed HTTP read did, in plain words: "did not answer within 5 s", "refused
    the connection", "answered HTTP 503", "could not be reached". Classified along the
    exception chain by stdlib types and names, so each adapter's client stays in its own
    module (requests wraps urllib3 wraps socket errors; urllib wraps them once)."""
    chain = _chain(exc)
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return f"did not answer within {timeout_s:g} s"
    if any(isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower() for e in chain):
        return "refused the connection"
    for e in chain:
        code = getattr(e, "code", None)  # urllib's HTTPError
        if isinstance(code, int):
            return f"answered HTTP {code}"
        found = re.match(r"HTTP Status Code (\d+)", str(e))  # prometheus-api-client's
        if found:
            return f"answered HTTP {found.group(1)}"
    return "could not be reached"


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and what it wraps (cause, context, a ``reason`` or first argument that is itself
    an exception), breadth first, bounded."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args[:1]]
    return seen


# Prometheus renames a target's labels that clash with its own (namespace, pod, ...) to
# exported_*; dcgm-exporter spells the host label Hostname, some setups hostname.
_RENAMES = {"hostname": "Hostname"}


def normalise_labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Labels as the workload sees them: exported_* win over the scraper's own labels."""
    merged = {_RENAMES.get(k, k): v for k, v in labels.items() if not k.startswith("exported_")}
    for key, value in labels.items():
        if key.startswith("exported_") and value:
            merged[key.removeprefix("exported_")] = value
    merged.pop("__name__", None)
    return tuple(sorted(merged.items()))


def read_samples(cluster: Cluster, names: Iterable[str], now: float) -> dict[str, list[Sample]]:
    """The latest sample of every series of each metric name, one query per name."""
    wanted = sorted(set(names))
    if cluster.metrics_source == Cluster.MetricsSource.PROMETHEUS:
        from clusters import prometheus

        return prometheus.read_samples(cluster.metrics_url, wanted, now)
    from clusters import exporters

    return exporters.read_samples(cluster.metrics_url, wanted, now)
