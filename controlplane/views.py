"""Operational endpoints: /healthz (alive), /readyz (dependencies reachable), /metrics."""

import asyncio

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controlplane.celery import app as celery_app

PROBE_TIMEOUT_S = 2


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Check each dependency; 503 names the ones that failed and why."""
    checks = {
        "database": _check_database,
        "broker": _check_broker,
        "channel_layer": _check_channel_layer,
    }
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure of a dependency makes us unready, with its cause
            results[name] = f"error: {type(exc).__name__}: {exc}"
    failing = [name for name, result in results.items() if result != "ok"]
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "checks": results}
    return JsonResponse(body, status=503 if failing else 200)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_S)


def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    probe = {"type": "readyz.probe"}

    async def roundtrip() -> dict[str, str]:
        channel = await layer.new_channel("readyz.")
        await layer.send(channel, probe)
        received: dict[str, str] = await layer.receive(channel)
        return received

    received = async_to_sync(asyncio.wait_for)(roundtrip(), PROBE_TIMEOUT_S)
    if received != probe:
        raise RuntimeError("channel layer returned a different message")
