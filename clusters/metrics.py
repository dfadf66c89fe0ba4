"""Metric samples of a cluster, from whichever source it uses (a Prometheus server or the
exporters' /metrics text). Both sources return the same ``Sample`` records with the labels
normalised, so the control loop never knows which one it read."""

from __future__ import annotations

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


class MetricsError(Exception):
    """The metrics source could not be read (every metric of this tick is missing)."""


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
