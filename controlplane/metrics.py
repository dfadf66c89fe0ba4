"""The control plane's own Prometheus metrics, exposed at /metrics.

Counters live in prometheus-client's default registry, which also carries the process collector
(CPU, memory, open files). Each process exposes its own counters; Prometheus scrapes every pod.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "controlplane_http_requests_total", "HTTP requests served.", ["method", "status"]
)
HTTP_DURATION = Histogram(
    "controlplane_http_request_duration_seconds", "Time spent serving HTTP requests."
)


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
