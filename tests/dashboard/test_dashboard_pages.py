"""The dashboard's HTML pages and the policy editor, through Django's test client."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from history.models import Change
from quotas.models import GpuType, Quota
from scaling.models import Decision, ScalingPolicy, WorkloadVariant

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(team_a, team_b, cluster, gpu_type, make_workload, make_user):
    a = make_workload(team_a, cluster, gpu_type, "chat-a")
    b = make_workload(team_b, cluster, gpu_type, "chat-b")
    Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=4, borrowing_limit=2)
    a.ready_replicas = 6
    a.save()
    return {
        "a": a,
        "b": b,
        "viewer": make_user("viewer", team_a, "viewer"),
        "operator": make_user("operator", team_a, "operator"),
    }


def form_data(policy: ScalingPolicy, **changes) -> dict:
    data = {
        "algorithm": policy.algorithm,
        "mode": policy.mode,
        "metric": policy.metric,
        "aggregation": policy.aggregation,
        "target": policy.target,
        "min_replicas": policy.min_replicas,
        "max_replicas": policy.max_replicas,
        "cold_start_s": policy.cold_start_s,
        "max_metric_age_s": policy.max_metric_age_s,
        "version": policy.version,
        "loaded": json.dumps({"target": policy.target, "max_replicas": policy.max_replicas}),
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def record(workload, outcome="applied", minutes_ago=0, reason="Scaled because of load."):
    return Decision.objects.create(
        workload=workload,
        policy=workload.policy,
        policy_version=1,
        at=timezone.now() - timedelta(minutes=minutes_ago),
        algorithm="hpa",
        current_replicas=1,
        raw_desired_replicas=2,
        final_replicas=2,
        steps=[{"name": "tolerance", "value": 2, "note": "ratio 1.4 outside 0.1"}],
        outcome=outcome,
        reason=reason,
    )


def test_fleet_page_shows_quota_usage_and_borrowing(client, setup):
    client.force_login(setup["viewer"])
    body = client.get("/").content.decode()
    assert "plotly/plotly.min.js" in body and "dashboard/fleet.js" in body
    assert "borrowing 2" in body  # 6 GPUs held on a nominal of 4


def test_fleet_page_says_when_a_lowered_quota_is_exceeded_and_when_it_is_reclaimed(client, setup):
    quota = Quota.objects.get()
    client.force_login(setup["viewer"])
    assert "over quota" not in client.get("/").content.decode()  # 6 GPUs of 4 + 2
    quota.nominal = 3  # lowered under the 6 GPUs held
    quota.save()
    assert "1 over quota, kept (no reclaim grace)" in client.get("/").content.decode()
    quota.reclaim_grace_s = 600
    quota.over_since = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
    quota.save()
    assert (
        "1 over quota, reclaimed from 2026-11-22 14:10:00 UTC" in client.get("/").content.decode()
    )


def test_fleet_page_reserves_the_heatmap_and_table_rows_of_the_synced_nodes(client, setup):
    from clusters.models import GpuNode

    cluster = setup["a"].cluster
    for i in range(10):
        GpuNode.objects.create(
            cluster=cluster,
            name=f"node-{i}",
            gpu_product="NVIDIA-A100-SXM4-80GB",
            gpu_capacity=8,
            gpu_allocatable=8,
            seen_at=timezone.now(),
        )
    client.force_login(setup["viewer"])
    body = client.get("/").content.decode()
    # 10 hosts: the height fleet.js gives the heatmap; the table's row waits for live counts.
    assert 'id="heatmap" class="chart tall" data-testid="heatmap" style="height: 320px"' in body
    assert (
        '<td>east</td><td>A100-80GB</td><td class="num">80</td><td class="num">\N{EN DASH}</td>'
        in body
    )


def test_plotly_is_served_from_our_static_files(client, setup):
    from django.contrib.staticfiles import finders

    assert finders.find("plotly/plotly.min.js")


def test_viewer_sees_the_workload_but_no_editor_and_cannot_post(client, setup):
    client.force_login(setup["viewer"])
    url = f"/workloads/{setup['a'].pk}/"
    body = client.get(url).content.decode()
    assert "chat-a" in body and 'id="policy-form"' not in body
    assert client.post(url, form_data(setup["a"].policy, target=3)).status_code == 403
    setup["a"].policy.refresh_from_db()
    assert setup["a"].policy.target == 8


def test_another_tenants_workload_and_tenant_are_404(client, setup):
    client.force_login(setup["operator"])
    assert client.get(f"/workloads/{setup['b'].pk}/").status_code == 404
    assert client.post(f"/workloads/{setup['b'].pk}/", {}).status_code == 404
    assert client.get("/tenants/team-b/").status_code == 404
    assert client.get("/tenants/team-a/").status_code == 200


def test_operator_saves_a_policy_with_history_and_new_version(client, setup):
    client.force_login(setup["operator"])
    policy = setup["a"].policy
    response = client.post(
        f"/workloads/{setup['a'].pk}/",
        form_data(policy, target=12, scale_up_tolerance=0.2, reason="more headroom"),
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 2
    assert body["policy"]["target"] == 12 and body["policy"]["upper"] == pytest.approx(14.4)
    change = Change.objects.get(object_id=policy.pk)
    assert change.reason == "more headroom" and change.changed_fields["target"] == (8, 12)


def test_invalid_values_come_back_as_field_errors(client, setup):
    client.force_login(setup["operator"])
    response = client.post(
        f"/workloads/{setup['a'].pk}/",
        form_data(setup["a"].policy, target=-1, min_replicas=5, max_replicas=2),
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "target" in errors or "__all__" in errors
    html = client.post(f"/workloads/{setup['a'].pk}/", form_data(setup["a"].policy, target=-1))
    assert html.status_code == 400 and "greater than 0" in html.content.decode()


def test_a_save_based_on_an_old_version_is_a_conflict_naming_the_change(client, setup):
    client.force_login(setup["operator"])
    policy = setup["a"].policy
    stale_form = form_data(policy, target=10)
    policy.target = 20  # another operator saves first
    policy.save()
    url = f"/workloads/{setup['a'].pk}/"
    response = client.post(url, stale_form, HTTP_ACCEPT="application/json")
    assert response.status_code == 409
    body = response.json()
    assert body["changed"]["target"] == {"yours_loaded": 8, "stored": 20}
    assert body["version"] == 2
    policy.refresh_from_db()
    assert policy.target == 20  # never a silent overwrite
    html = client.post(url, stale_form)
    assert html.status_code == 409 and "Someone saved version 2" in html.content.decode()
    # Submitting again with the version the conflict showed is a deliberate overwrite.
    again = client.post(url, {**stale_form, "version": 2}, HTTP_ACCEPT="application/json")
    assert again.status_code == 200 and again.json()["policy"]["target"] == 10


def test_decision_log_filters_and_scopes(client, setup):
    for i in range(60):
        record(setup["a"], outcome="held" if i % 2 else "applied", minutes_ago=i)
    record(setup["b"], reason="Secret team-b reason.")
    client.force_login(setup["viewer"])
    body = client.get("/decisions/").content.decode()
    assert "Secret team-b reason." not in body and "60 decisions" in body
    assert "page 1 of 2" in body
    held = client.get("/decisions/", {"outcome": "held"}).content.decode()
    assert "30 decisions" in held
    since = (timezone.now() - timedelta(minutes=9, seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
    recent = client.get("/decisions/", {"since": since}).content.decode()
    assert "10 decisions" in recent  # 0 to 9 minutes ago
    other = client.get("/decisions/", {"tenant": setup["b"].tenant_id}).content.decode()
    assert "Secret team-b reason." not in other


def test_decision_log_query_count_does_not_grow_with_rows(
    client, setup, django_assert_max_num_queries
):
    for i in range(30):
        record(setup["a"], minutes_ago=i)
    client.force_login(setup["viewer"])
    with django_assert_max_num_queries(12):
        assert client.get("/decisions/").status_code == 200


def test_preview_streams_progress_then_both_replica_curves(client, setup):
    client.force_login(setup["operator"])
    url = f"/workloads/{setup['a'].pk}/preview/"
    response = client.post(url, form_data(setup["a"].policy, target=4, trace="code"))
    assert response.status_code == 200
    body = asyncio.run(collect(response.streaming_content))  # served async, as under uvicorn
    lines = [json.loads(line) for line in body.splitlines()]
    assert any("progress" in line for line in lines[:-1])
    result = lines[-1]["result"]
    assert result["edited"]["timeline"] and result["stored"]["timeline"]
    assert result["edited"]["mean_replicas"] >= result["stored"]["mean_replicas"]  # lower target
    for run in (result["edited"], result["stored"]):  # priced at the GPU type's 2.20 USD/h
        assert run["price_per_gpu_hour"] == 2.20 and run["price_source"] == "given"
        assert run["cost_per_hour"] == pytest.approx(run["gpu_hours"] * 2.20 / (600 / 3600))
    setup["a"].policy.refresh_from_db()
    assert setup["a"].policy.target == 8  # a preview saves nothing


def test_preview_is_for_operators_and_validates(client, setup):
    url = f"/workloads/{setup['a'].pk}/preview/"
    client.force_login(setup["viewer"])
    assert client.post(url, form_data(setup["a"].policy)).status_code == 403
    client.force_login(setup["operator"])
    bad = client.post(url, form_data(setup["a"].policy, target=0, trace="nope"))
    errors = bad.json()["errors"]
    assert bad.status_code == 400 and "trace" in errors
    assert "target" in errors or "__all__" in errors


async def collect(content) -> bytes:
    return b"".join([chunk async for chunk in content])


def test_without_observed_history_the_page_says_so_and_offers_recorded_traces(client, setup):
    client.force_login(setup["operator"])
    page = client.get(f"/workloads/{setup['a'].pk}/").content.decode()
    assert "No observed load to replay: cluster east has no Prometheus URL" in page
    assert '<option value="observed" disabled>' in page
    assert '<option value="conv" selected>' in page
    url = f"/workloads/{setup['a'].pk}/preview/"
    refused = client.post(url, form_data(setup["a"].policy, trace="observed"))
    assert refused.status_code == 400
    assert "no Prometheus URL" in refused.json()["errors"]["trace"][0]["message"]


def test_the_policy_editor_warns_of_a_metric_no_exporter_publishes(client, setup):
    client.force_login(setup["operator"])
    policy = setup["a"].policy
    page = client.get(f"/workloads/{setup['a'].pk}/").content.decode()
    assert 'data-warning-for="metric" role="status"></div>' in page
    assert '<option value="vllm:num_requests_running">' in page  # the known names, suggested
    ScalingPolicy.objects.filter(pk=policy.pk).update(metric="vllm:num_requests_runing")
    page = client.get(f"/workloads/{setup['a'].pk}/").content.decode()
    assert "vllm:num_requests_runing is not a series" in page
    assert "Did you mean vllm:num_requests_running?" in page


def test_every_dashboard_page_says_when_the_control_loop_stopped_and_marks_status_old(
    client, setup, cluster, monkeypatch
):
    from scaling.models import ControlLoopState

    monkeypatch.setattr(
        "dashboard.views.PROCESS_STARTED_AT", datetime.now(UTC) - timedelta(hours=1)
    )
    a = setup["a"]
    last_tick = datetime.now(UTC) - timedelta(minutes=5)
    ControlLoopState.objects.create(cluster=cluster, last_tick_at=last_tick)
    a.observed_at = last_tick
    a.save()
    client.force_login(setup["viewer"])
    pages = ["/", f"/tenants/{a.tenant.slug}/", f"/workloads/{a.pk}/", "/decisions/"]
    for url in pages:
        html = client.get(url).content.decode()
        assert "Control loop not running since" in html, url
        assert "Cluster east: last tick 5\xa0minutes ago" in html, url
    fleet = client.get("/").content.decode()
    assert 'class="old" title="as observed 5\xa0minutes ago"' in fleet
    assert "old: not current" in client.get(f"/workloads/{a.pk}/").content.decode()
    # Ticking again: no banner, and a fresh observation is not marked old.
    ControlLoopState.objects.filter(cluster=cluster).update(last_tick_at=datetime.now(UTC))
    a.observed_at = datetime.now(UTC)
    a.save()
    for url in pages:
        assert "Control loop not running" not in client.get(url).content.decode(), url
    assert "old: not current" not in client.get(f"/workloads/{a.pk}/").content.decode()


def test_the_workload_page_shows_the_latest_evaluation_and_its_error_incident(client, setup):
    client.force_login(setup["viewer"])
    url = f"/workloads/{setup['a'].pk}/"
    assert "Not evaluated yet" in client.get(url).content.decode()
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    setup["a"].status = {
        "at": at.isoformat(),
        "outcome": "error",
        "reason": "cluster east's API did not answer within 0.5 s (list deployments)",
        "algorithm": "hpa",
        "policy_version": 3,
        "current": 2,
        "raw_desired": 5,
        "desired": 4,
        "steps": [{"name": "max", "value": 4, "note": "capped at max_replicas 4"}],
        "error": {
            "cause": ["timeout", "list deployments"],
            "count": 7,
            "since": at.isoformat(),
            "last_at": at.isoformat(),
        },
    }
    setup["a"].loop_state = {"memory": {"outage_since": 1.0}, "key": ["error"]}
    setup["a"].save()
    body = client.get(url).content.decode()
    assert "did not answer within 0.5 s" in body and "hpa v3" in body
    assert (
        "Not observed for 7 ticks since 2026-12-01 10:00:00 UTC (timeout / list deployments)"
        in body
    )
    assert "2 → 4" in body and "capped at max_replicas 4" in body
    assert "outage_since" not in body


def test_a_predictive_policy_saves_without_a_target_and_draws_no_threshold_lines(client, setup):
    client.force_login(setup["operator"])
    policy = setup["a"].policy
    url = f"/workloads/{setup['a'].pk}/"
    data = form_data(policy, algorithm="predictive", target="")
    response = client.post(url, data, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["policy"]["target"] is None
    assert body["policy"]["upper"] is None and body["policy"]["lower"] is None
    refused = client.post(
        url,
        form_data(policy, algorithm="hpa", target="", version=2),
        HTTP_ACCEPT="application/json",
    )
    assert refused.status_code == 400
    assert "required by the hpa algorithm" in json.dumps(refused.json()["errors"]["target"])
    client.force_login(setup["viewer"])  # the read-only view names what it sizes from
    assert "none (sized from offered work)" in client.get(url).content.decode()


@pytest.mark.parametrize(
    ("zone", "shown"),
    [("UTC", "2026-01-02 03:04:05 UTC"), ("Europe/Berlin", "2026-01-02 04:04:05 CET")],
)
def test_times_read_in_one_format_naming_the_settings_time_zone(
    client, setup, settings, make_user, zone, shown
):
    settings.TIME_ZONE = zone
    decision = record(setup["a"])
    Decision.objects.filter(pk=decision.pk).update(at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    client.force_login(setup["operator"])
    page = client.get("/decisions/").content.decode()
    assert f">{shown}</time>" in page
    assert f'data-time-zone="{zone}"' in page  # what the browser's Charts.formatTime uses
    client.force_login(make_user("staff", staff=True))
    assert f">{shown}</a></th>" in client.get("/admin/scaling/decision/").content.decode()


def test_only_streaming_pages_carry_the_live_badge_and_every_page_a_favicon(client, setup):
    client.force_login(setup["operator"])
    for url, streams in (
        ("/", True),
        (f"/tenants/{setup['a'].tenant.slug}/", True),
        (f"/workloads/{setup['a'].pk}/", True),
        ("/decisions/", False),
    ):
        page = client.get(url).content.decode()
        assert ('id="live-status"' in page) is streams, url
        assert 'rel="icon"' in page
    tenant_page = client.get(f"/tenants/{setup['a'].tenant.slug}/").content.decode()
    assert f'data-stream="/ws/tenants/{setup["a"].tenant.slug}/"' in tenant_page


def test_fleet_rows_of_workloads_with_variants_cost_the_same_queries_for_one_or_five(
    client, setup, cluster, gpu_type, team_a, make_workload
):
    a40 = GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.30", node_label="NVIDIA-A40"
    )
    client.force_login(setup["viewer"])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            body = client.get("/").content.decode()
        assert body.count(" + A40-48GB") == WorkloadVariant.objects.count()
        return len(captured)

    WorkloadVariant.objects.create(workload=setup["a"], gpu_type=a40, deployment="chat-a-a40")
    one = queries()
    for i in range(4):
        more = make_workload(team_a, cluster, gpu_type, f"more-{i}")
        WorkloadVariant.objects.create(workload=more, gpu_type=a40, deployment=f"more-{i}-a40")
    assert queries() == one
