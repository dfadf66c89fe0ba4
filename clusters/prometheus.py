"""The Prometheus adapter, on prometheus-api-client (the only module that imports it).

One instant query per metric name, for every series of the cluster at once. The query is a
range selector (``name[lookback]``) so that each sample keeps the time it was scraped: an
instant vector would stamp every value with the query time and hide staleness.

``read_range`` reads a metric's history at fixed steps (the what-if preview's observed load).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests import RequestException
from urllib3.util.retry import Retry

from clusters.metrics import MetricsError, Sample, failure_words, normalise_labels

LOOKBACK = "5m"


Series = list[tuple[dict[str, str], list[tuple[float, float]]]]


def _connect(url: str) -> PrometheusConnect:
    return PrometheusConnect(
        url=url.rstrip("/"), timeout=settings.METRICS_TIMEOUT_S, retry=Retry(total=0)
    )


def _timeout_param() -> dict[str, str]:
    # Prometheus durations are integers with a unit ("5000ms"), not "5.0s".
    return {"timeout": f"{int(settings.METRICS_TIMEOUT_S * 1000)}ms"}


def _failure(url: str, exc: Exception) -> MetricsError:
    where = f"Prometheus at {url.rstrip('/')}"
    if isinstance(exc, ValueError) and not isinstance(exc, RequestException):
        return MetricsError(f"{where} sent an answer that is not Prometheus JSON")
    return MetricsError(f"{where} {failure_words(exc, settings.METRICS_TIMEOUT_S)}")


def selector(name: str) -> str:
    """``{__name__="<name>"}`` with ``name`` as a PromQL string literal: backslash, double
    quote and line breaks escaped, so no name can end the literal and add matchers or
    operators (policies refuse names that are not Prometheus names; this holds regardless)."""
    literal = (
        name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'{{__name__="{literal}"}}'


def read_samples(url: str, names: list[str], now: float) -> dict[str, list[Sample]]:
    connection = _connect(url)
    return {name: _latest(connection, name, now) for name in names}


def read_range(url: str, name: str, start: float, end: float, step_s: float) -> Series:
    """Every series of ``name`` at each step from ``start`` to ``end`` (whole seconds, as the
    client sends them): its normalised labels and its (time, value) points."""
    query = selector(name)
    try:
        series = _connect(url).custom_query_range(
            query,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=f"{step_s:g}s",
            params=_timeout_param(),
        )
    except (PrometheusApiClientException, RequestException, ValueError) as exc:
        raise _failure(url, exc) from exc
    return [
        (
            dict(normalise_labels(item.get("metric", {}))),
            [(float(t), float(v)) for t, v in item.get("values", [])],
        )
        for item in series
    ]


def _latest(connection: PrometheusConnect, name: str, now: float) -> list[Sample]:
    query = f"{selector(name)}[{LOOKBACK}]"
    params = {"time": f"{now:.3f}", **_timeout_param()}
    try:
        series = connection.custom_query(query, params=params)
    except (PrometheusApiClientException, RequestException, ValueError) as exc:
        raise _failure(connection.url, exc) from exc
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
