"""The operational endpoints, through HTTP."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.celery import app as celery_app


def test_healthz_answers_without_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "channel_layer": "ok",
    }


@pytest.mark.django_db
def test_readyz_names_the_failing_broker(client):
    previous = celery_app.conf.broker_url, celery_app.conf.broker_transport
    # A real, closed port: the broker really is unreachable.
    celery_app.conf.broker_url, celery_app.conf.broker_transport = "redis://127.0.0.1:1/0", None
    try:
        response = client.get("/readyz")
    finally:
        celery_app.conf.broker_url, celery_app.conf.broker_transport = previous
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"].startswith("error:")


@pytest.mark.django_db
def test_metrics_is_prometheus_exposition(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert "controlplane_http_requests" in names
    assert "process_cpu_seconds" in names


@pytest.mark.django_db
def test_metrics_exposes_control_loop_counters(client, cluster):
    from scaling.models import ControlLoopState

    ControlLoopState.objects.create(
        cluster=cluster,
        ticks=7,
        tick_seconds_total=1.5,
        last_tick_seconds=0.2,
        apply_errors=1,
        decisions={"applied": 3, "held": 2},
    )
    text = client.get("/metrics").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("controlplane_ticks_total", (("cluster", "east"),))] == 7
    assert samples[("controlplane_apply_errors_total", (("cluster", "east"),))] == 1
    key = ("controlplane_decisions_total", (("cluster", "east"), ("outcome", "applied")))
    assert samples[key] == 3
