"""The operational endpoints, through HTTP."""

from datetime import UTC, datetime, timedelta

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
        "control_loop": "ok",
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


def _ticked(cluster, seconds_ago):
    from scaling.models import ControlLoopState

    at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    ControlLoopState.objects.update_or_create(cluster=cluster, defaults={"last_tick_at": at})


@pytest.fixture
def started_long_ago(monkeypatch):
    """This web process has been up for an hour: the start-up grace is over."""
    monkeypatch.setattr(
        "controlplane.views.PROCESS_STARTED_AT", datetime.now(UTC) - timedelta(hours=1)
    )


@pytest.mark.django_db
def test_readyz_fails_naming_the_control_loop_when_no_tick_completed_lately(
    client, settings, cluster, team_a, gpu_type, make_workload, started_long_ago
):
    settings.CONTROL_LOOP_INTERVAL = 5
    make_workload(team_a, cluster, gpu_type, "chat")
    _ticked(cluster, 95)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["control_loop"]
    assert "cluster east: last tick 95 s ago" in body["checks"]["control_loop"]
    assert "limit 15 s" in body["checks"]["control_loop"]
    # A web server's readiness probe skips it: a dead worker is not the web server's fault.
    skipped = client.get("/readyz?skip=control_loop")
    assert skipped.status_code == 200 and "control_loop" not in skipped.json()["checks"]
    unknown = client.get("/readyz?skip=control_loop,dtabase")
    assert unknown.status_code == 400 and "dtabase" in unknown.json()["detail"]
    _ticked(cluster, 4)
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_readyz_ignores_disabled_clusters_and_clusters_without_workloads(
    client, cluster, team_a, gpu_type, make_workload, started_long_ago
):
    from clusters.models import Cluster

    idle = Cluster.objects.create(name="idle", api_url="http://127.0.0.1:1")
    _ticked(idle, 3600)  # no workloads: nothing to tick
    make_workload(team_a, cluster, gpu_type, "chat")
    _ticked(cluster, 3600)
    Cluster.objects.filter(pk=cluster.pk).update(enabled=False)
    assert client.get("/readyz").status_code == 200
    Cluster.objects.filter(pk=cluster.pk).update(enabled=True)
    assert client.get("/readyz").json()["failing"] == ["control_loop"]


@pytest.mark.django_db
def test_readyz_gives_a_just_started_process_a_grace(
    client, monkeypatch, cluster, team_a, gpu_type, make_workload
):
    make_workload(team_a, cluster, gpu_type, "chat")  # never ticked
    monkeypatch.setattr("controlplane.views.PROCESS_STARTED_AT", datetime.now(UTC))
    assert client.get("/readyz").status_code == 200
    monkeypatch.setattr(
        "controlplane.views.PROCESS_STARTED_AT", datetime.now(UTC) - timedelta(seconds=60)
    )
    body = client.get("/readyz").json()
    assert "cluster east: never ticked" in body["checks"]["control_loop"]


@pytest.mark.django_db
def test_metrics_exposes_the_age_and_time_of_the_last_tick(
    client, cluster, team_a, gpu_type, make_workload
):
    make_workload(team_a, cluster, gpu_type, "chat")
    _ticked(cluster, 120)
    text = client.get("/metrics").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    age = samples[("controlplane_last_tick_age_seconds", (("cluster", "east"),))]
    assert 120 <= age < 130
    stamp = samples[("controlplane_last_tick_timestamp_seconds", (("cluster", "east"),))]
    assert abs(stamp - (datetime.now(UTC).timestamp() - 120)) < 10
