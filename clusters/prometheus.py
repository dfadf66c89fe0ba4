"""The Prometheus adapter, on prometheus-api-client (the only module that imports it).

One instant query per metric name, for every series of the cluster at once. The query is a
range selector (``name[lookback]``) so that each sample keeps the time it was scraped: an
instant vector would stamp every value with the query time and hide staleness.
"""

from __future__ import annotations

from django.conf import settings
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests import RequestException
from urllib3.util.retry import Retry

from clusters.metrics import MetricsError, Sample, normalise_labels

LOOKBACK = "5m"


def read_samples(url: str, names: list[str], now: float) -> dict[str, list[Sample]]:
    connection = PrometheusConnect(
        url=url.rstrip("/"), timeout=settings.METRICS_TIMEOUT_S, retry=Retry(total=0)
    )
    return {name: _latest(connection, name, now) for name in names}


def _latest(connection: PrometheusConnect, name: str, now: float) -> list[Sample]:
    query = f'{{__name__="{name}"}}[{LOOKBACK}]'
    # Prometheus durations are integers with a unit ("5000ms"), not "5.0s".
    params = {"time": f"{now:.3f}", "timeout": f"{int(settings.METRICS_TIMEOUT_S * 1000)}ms"}
    try:
        series = connection.custom_query(query, params=params)
    except (PrometheusApiClientException, RequestException, ValueError) as exc:
        raise MetricsError(f"Prometheus query {query!r} failed: {exc}") from exc
    samples = []
    for item in series:
        values = item.get("values") or []
        if not values:
            continue
        timestamp, raw = values[-1]
        samples.append(
            Sample(name, normalise_labels(item.get("metric", {})), float(raw), float(timestamp))
        )
    return samples
