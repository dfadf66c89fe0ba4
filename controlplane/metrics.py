"""The control plane's own Prometheus metrics, exposed at /metrics.

Counters live in prometheus-client's default registry, which also carries the process collector
(CPU, memory, open files). Each process exposes its own counters; Prometheus scrapes every pod.
"""

import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

HTTP_REQUESTS = Counter(
    "controlplane_http_requests_total", "HTTP requests served.", ["method", "status"]
)
HTTP_DURATION = Histogram(
    "controlplane_http_request_duration_seconds", "Time spent serving HTTP requests."
)
WEBSOCKETS = Gauge(
    "controlplane_websocket_connections",
    "Live-stream sockets receiving frames from this process.",
    ["stream"],
)
for _stream in ("fleet", "workload"):  # exported as 0 from the start, not absent
    WEBSOCKETS.labels(_stream)

# When this process started (the middleware loads with the application): /readyz and the
# dashboard give the control loop a few intervals from here before calling it stalled.
PROCESS_STARTED_AT = datetime.now(UTC)


class RequestMetricsMiddleware:
    """Counts requests by method and status code; works under WSGI and ASGI."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        started = time.perf_counter()
        response: HttpResponse = self.get_response(request)
        self._observe(request, response, started)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        response = await get_response(request)
        self._observe(request, response, started)
        return response

    @staticmethod
    def _observe(request: HttpRequest, response: HttpResponse, started: float) -> None:
        HTTP_REQUESTS.labels(request.method or "", str(response.status_code)).inc()
        HTTP_DURATION.observe(time.perf_counter() - started)


class ControlLoopCollector(Collector):
    """Control-loop counters, read from the database at scrape time: workers in any process
    or pod record them per cluster (scaling.ControlLoopState), so every web process exposes
    the same totals."""

    def describe(self) -> list[Metric]:
        # Registering must not query the database (it happens while apps are loading).
        return []

    def collect(self) -> Any:
        from scaling.models import ControlLoopState

        try:
            states = list(ControlLoopState.objects.select_related("cluster"))
        except DatabaseError:
            return
        ticks = CounterMetricFamily("controlplane_ticks", "Control-loop ticks.", labels=["cluster"])
        seconds = CounterMetricFamily(
            "controlplane_tick_seconds", "Time spent in control-loop ticks.", labels=["cluster"]
        )
        errors = CounterMetricFamily(
            "controlplane_apply_errors", "Failed applies to clusters.", labels=["cluster"]
        )
        decisions = CounterMetricFamily(
            "controlplane_decisions", "Decisions recorded.", labels=["cluster", "outcome"]
        )
        last = GaugeMetricFamily(
            "controlplane_last_tick_duration_seconds",
            "Duration of the latest tick.",
            labels=["cluster"],
        )
        stamp = GaugeMetricFamily(
            "controlplane_last_tick_timestamp_seconds",
            "When the latest tick of the cluster completed (Unix time).",
            labels=["cluster"],
        )
        now = datetime.now(UTC)
        for state in states:
            name = state.cluster.name
            if state.last_tick_at is not None:
                stamp.add_metric([name], state.last_tick_at.timestamp())
            ticks.add_metric([name], state.ticks)
            seconds.add_metric([name], state.tick_seconds_total)
            errors.add_metric([name], state.apply_errors)
            for outcome, count in sorted(state.decisions.items()):
                decisions.add_metric([name, outcome], count)
            if state.last_tick_seconds is not None:
                last.add_metric([name], state.last_tick_seconds)
        metrics: list[Metric] = [ticks, seconds, errors, decisions, last, stamp, _ages(now)]
        yield from metrics


def _ages(now: datetime) -> GaugeMetricFamily:
    """Seconds since the latest completed tick of every cluster the loop should tick; +Inf
    for one never ticked. Alert on it: the counters above just stop when the worker dies."""
    from scaling.loop import loop_ages

    ages = GaugeMetricFamily(
        "controlplane_last_tick_age_seconds",
        "Seconds since the latest completed tick (enabled clusters with workloads).",
        labels=["cluster"],
    )
    for age in loop_ages(now):
        ages.add_metric([age.cluster], math.inf if age.age_s is None else age.age_s)
    return ages
