"""Operational endpoints: /healthz (alive), /readyz (dependencies reachable, control loop
ticking), /metrics."""

import asyncio
from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controlplane.celery import app as celery_app
from controlplane.metrics import PROCESS_STARTED_AT
from scaling.loop import stalled_after_s, stalled_loops

PROBE_TIMEOUT_S = 2


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Check each dependency; 503 names the ones that failed and why.

    ``?skip=control_loop`` (comma-separated names) leaves checks out: a web server's readiness
    probe skips the control loop, which is the workers' and beat's to fail, so a dead worker
    does not take every web server (and the dashboard showing the outage) out of service."""
    checks = {
        "database": _check_database,
        "broker": _check_broker,
        "channel_layer": _check_channel_layer,
        "control_loop": _check_control_loop,
    }
    skip = set(request.GET.get("skip", "").split(",")) - {""}
    if unknown := sorted(skip - checks.keys()):
        return JsonResponse(
            {"detail": f"Unknown check to skip: {', '.join(unknown)}; known: {', '.join(checks)}."},
            status=400,
        )
    checks = {name: check for name, check in checks.items() if name not in skip}
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


def _check_control_loop() -> None:
    """Every enabled cluster with workloads had a tick complete within a few intervals."""
    stalled = stalled_loops(datetime.now(UTC), PROCESS_STARTED_AT)
    if stalled:
        parts = [
            f"cluster {age.cluster}: "
            + ("never ticked" if age.age_s is None else f"last tick {age.age_s:.0f} s ago")
            for age in stalled
        ]
        raise RuntimeError(
            f"control loop not running ({'; '.join(parts)}; limit {stalled_after_s():.0f} s)"
        )
