"""deploy/readiness.py, the web pods' readiness probe, run as the kubelet runs it (a process)
against the real /readyz of a live server: a stalled control loop is not the web pod's failure,
an unreachable broker is."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from controlplane.celery import app as celery_app

PROBE = Path(__file__).resolve().parents[2] / "deploy" / "readiness.py"


def run_probe(port: int) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, str(PROBE), "--host=127.0.0.1", f"--port={port}", "--timeout=10"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, result.stdout.strip()


@pytest.fixture
def port(transactional_db: Any, live_server: Any) -> int:
    return int(urlsplit(live_server.url).port or 0)


@pytest.fixture
def stalled_loop(
    cluster: Any, team_a: Any, gpu_type: Any, make_workload: Any, monkeypatch: Any
) -> None:
    """A cluster with a workload that has never been ticked, in a web process up for an hour:
    /readyz reports the control loop as failing (its workers or beat are gone)."""
    make_workload(team_a, cluster, gpu_type, "chat")
    started = datetime.now(UTC) - timedelta(hours=1)
    monkeypatch.setattr("controlplane.views.PROCESS_STARTED_AT", started)


def test_ready_when_every_check_passes(port: int) -> None:
    assert run_probe(port) == (0, "ready")


def test_a_stalled_control_loop_does_not_take_the_web_pod_out_of_service(
    port: int, stalled_loop: None, client: Any
) -> None:
    assert client.get("/readyz").json()["failing"] == ["control_loop"]  # /readyz itself: 503
    code, reason = run_probe(port)
    assert (code, reason) == (0, "ready (not this pod's: control_loop failing)")


def test_an_unreachable_broker_does(port: int, stalled_loop: None) -> None:
    previous = celery_app.conf.broker_url, celery_app.conf.broker_transport
    # A real, closed port: the broker really is unreachable.
    celery_app.conf.broker_url, celery_app.conf.broker_transport = "redis://127.0.0.1:1/0", None
    try:
        code, reason = run_probe(port)
    finally:
        celery_app.conf.broker_url, celery_app.conf.broker_transport = previous
    assert (code, reason) == (1, "failing: broker")


def test_a_web_process_that_does_not_answer_is_unready(free_port: Any) -> None:
    code, reason = run_probe(free_port())
    assert code == 1 and reason.startswith("/readyz unreachable:")
