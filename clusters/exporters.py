"""Reads exporters' /metrics text directly (dcgm-exporter, vLLM, or a simulated cluster), for
setups without a Prometheus server; parsed with prometheus-client's parser.

One scrape per tick serves every metric name. Exposition text rarely carries timestamps, so
a sample is stamped with the time of the scrape that read it.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from clusters.metrics import MetricsError, Sample, normalise_labels

MAX_BYTES = 64 * 1024 * 1024


def read_samples(url: str, names: list[str], now: float) -> dict[str, list[Sample]]:
    wanted = set(names)
    # Parsing is the slow part and a node exports far more than a tick reads: keep only the
    # sample lines of the wanted names (comments and other series are dropped before parsing).
    lines = [
        line
        for line in _scrape(url).splitlines()
        if line and line[0] != "#" and line.split("{", 1)[0].split(" ", 1)[0] in wanted
    ]
    found: dict[str, list[Sample]] = {name: [] for name in names}
    try:
        for family in text_string_to_metric_families("\n".join(lines) + "\n"):
            for sample in family.samples:
                if sample.name in wanted:
                    stamp = sample.timestamp if sample.timestamp is not None else now
                    found[sample.name].append(
                        Sample(
                            sample.name, normalise_labels(sample.labels), sample.value, float(stamp)
                        )
                    )
    except ValueError as exc:
        raise MetricsError(f"{url} returned text that is not Prometheus exposition: {exc}") from exc
    return found


def _scrape(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with urllib.request.urlopen(request, timeout=settings.METRICS_TIMEOUT_S) as response:
            body: bytes = response.read(MAX_BYTES)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MetricsError(f"scraping {url} failed: {exc}") from exc
    return body.decode("utf-8", errors="replace")
