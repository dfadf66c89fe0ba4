"""Back-test jobs over the API: operators start them on a policy, a Celery task runs them
(reporting progress), members poll them; bad input, other tenants and viewers write nothing."""

import datetime as dt
from typing import Any

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from controlplane.celery import app as celery_app
from scaling import tasks
from scaling.models import BacktestJob, ScalingPolicy

from .conftest import make_backtest

pytestmark = pytest.mark.django_db
NOT_FOUND = b'{"detail":"Not found."}'
SHORT = {"trace": "conv", "duration_s": 120}


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Job ids handed to the broker (the outermost adapter: Celery's ``delay``)."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.run_backtest_job, "delay", sent.append)
    return sent


def start(client: Any, policy_id: int, body: dict[str, Any], capture: Any) -> Any:
    with capture(execute=True):
        return client.post(f"/api/v1/policies/{policy_id}/backtests/", body, format="json")


def test_an_operator_starts_a_job_that_is_queued_after_commit(
    fleet: Any, client_for: Any, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    policy = fleet.workloads["a"].policy
    body = {**SHORT, "overrides": {"target": 4, "max_replicas": 6}, "compare": ["kpa"]}
    response = start(
        client_for(fleet.users["operator"]), policy.pk, body, django_capture_on_commit_callbacks
    )
    assert response.status_code == 202, response.content
    job = response.json()
    assert response["Location"] == f"http://testserver/api/v1/backtests/{job['id']}/"
    assert job["status"] == "queued" and job["progress"] == 0.0 and job["result"] is None
    assert job["policy"] == policy.pk and job["tenant"] == "team-a"
    assert job["created_by"] == "olga" and job["compare"] == ["kpa"]
    assert job["overrides"] == {"target": 4.0, "max_replicas": 6}
    assert job["params"]["target"] == 4.0 and job["params"]["max_replicas"] == 6
    assert job["replay"]["gpu_type"] == "A100-80GB" and job["replay"]["duration_s"] == 120
    assert queued == [job["id"]]
    policy.refresh_from_db()
    assert policy.target == 8 and policy.max_replicas == 10 and policy.version == 1


def test_a_short_job_runs_through_the_task_with_progress_and_a_result(
    fleet: Any,
    client_for: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    operator = client_for(fleet.users["operator"])
    viewer = client_for(fleet.users["viewer"])
    monkeypatch.setattr(tasks, "PROGRESS_EVERY_S", 0.0)  # every 1 %, to see many steps
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)
    seen: list[tuple[str, float]] = []
    write = BacktestJob.report_progress

    def report_and_poll(job: BacktestJob, token: str, share: float) -> bool:
        written = write(job, token, share)
        polled = viewer.get(f"/api/v1/backtests/{job.pk}/").json()  # what a client sees
        seen.append((polled["status"], polled["progress"]))
        return written

    monkeypatch.setattr(BacktestJob, "report_progress", report_and_poll)
    body = {**SHORT, "compare": ["kpa"]}
    policy = fleet.workloads["a"].policy
    response = start(operator, policy.pk, body, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content

    assert len(seen) >= 10, seen
    assert all(status == "running" and 0 < p <= 1 for status, p in seen)
    shares = [p for _, p in seen]
    assert shares == sorted(shares) and len(shares) <= 100
    job = viewer.get(response["Location"]).json()
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 1.0 and job["error"] == ""
    assert job["started_at"] is not None and job["finished_at"] is not None
    runs = job["result"]["results"]
    assert [run["algorithm"] for run in runs] == ["hpa", "kpa"]
    assert all(run["duration_s"] == 120 and run["requests"] > 0 for run in runs)
    assert job["result"]["oracle"]["gpu_hours"] > 0


BAD_BODIES = [
    ({"trace": "nope"}, "trace"),
    ({"duration_s": 10}, "duration_s"),
    ({"duration_s": 99999}, "duration_s"),
    ({"duration_s": "600"}, "duration_s"),
    ({"bogus": 1}, "bogus"),
    ({"overrides": {"min_replicas": 20, "max_replicas": 5}}, "overrides"),
    ({"overrides": {"target": -1}}, "overrides"),
    ({"overrides": {"workload": 1}}, "overrides"),
    ({"overrides": {"mode": "enforce"}}, "overrides"),
    ({"overrides": {"algorithm": "slo"}}, "overrides"),  # slo needs a TTFT target
    ({"overrides": "fast"}, "overrides"),
    ({"compare": ["nope"]}, "compare"),
    ({"compare": ["kpa", "kpa"]}, "compare"),
    ({"compare": "kpa"}, "compare"),
    ({"overrides": {"metric": "my_custom_metric"}}, "non_field_errors"),  # replay can't
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_input_answers_400_and_writes_nothing(
    fleet: Any,
    client_for: Any,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
    body: dict[str, Any],
    field: str,
) -> None:
    before = BacktestJob.objects.count()
    response = start(
        client_for(fleet.users["operator"]),
        fleet.workloads["a"].policy.pk,
        body,
        django_capture_on_commit_callbacks,
    )
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert BacktestJob.objects.count() == before and queued == []


def test_malformed_json_and_non_finite_numbers_are_refused(
    fleet: Any, client_for: Any, queued: list[int]
) -> None:
    operator = client_for(fleet.users["operator"])
    url = f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/backtests/"
    for raw in ('{"duration_s": NaN}', '{"overrides": {"target": Infinity}}', "{"):
        response = operator.post(url, raw, content_type="application/json")
        assert response.status_code == 400, raw
    assert BacktestJob.objects.count() == 3 and queued == []


def test_viewers_read_jobs_but_may_not_start_or_delete_them(
    fleet: Any, client_for: Any, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    viewer = client_for(fleet.users["viewer"])
    policy = fleet.workloads["a"].policy
    response = start(viewer, policy.pk, SHORT, django_capture_on_commit_callbacks)
    assert response.status_code == 403
    job = fleet.backtests["a"]
    assert viewer.get(f"/api/v1/backtests/{job.pk}/").status_code == 200
    assert viewer.delete(f"/api/v1/backtests/{job.pk}/").status_code == 403
    assert BacktestJob.objects.count() == 3 and queued == []


def test_another_tenants_policy_and_jobs_answer_like_missing_ones(
    fleet: Any, client_for: Any, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    operator = client_for(fleet.users["operator"])
    for key in ("b", "g"):
        started = start(
            operator, fleet.workloads[key].policy.pk, SHORT, django_capture_on_commit_callbacks
        )
        assert (started.status_code, started.content) == (404, NOT_FOUND)
        job = fleet.backtests[key].pk
        for method in ("get", "delete"):
            response = getattr(operator, method)(f"/api/v1/backtests/{job}/")
            assert (response.status_code, response.content) == (404, NOT_FOUND)
    missing = operator.get("/api/v1/backtests/999999/")
    assert (missing.status_code, missing.content) == (404, NOT_FOUND)
    listed = operator.get("/api/v1/backtests/?page_size=100").json()["results"]
    assert [job["id"] for job in listed] == [fleet.backtests["a"].pk]
    assert BacktestJob.objects.count() == 3 and queued == []


def test_back_tests_need_credentials(fleet: Any, client_for: Any) -> None:
    anonymous = client_for(None)
    policy = fleet.workloads["a"].policy.pk
    assert anonymous.post(f"/api/v1/policies/{policy}/backtests/", SHORT).status_code == 401
    assert anonymous.get("/api/v1/backtests/").status_code == 401


def test_a_tenant_has_a_limit_of_active_jobs(
    fleet: Any, client_for: Any, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    operator = client_for(fleet.users["operator"])
    policy = fleet.workloads["a"].policy.pk
    limit = BacktestJob.MAX_ACTIVE_PER_TENANT
    for _ in range(limit):
        ok = start(operator, policy, SHORT, django_capture_on_commit_callbacks)
        assert ok.status_code == 202
    refused = start(operator, policy, SHORT, django_capture_on_commit_callbacks)
    assert refused.status_code == 429
    assert "team-a already has 3 back-tests queued or running" in refused.json()["detail"]
    assert len(queued) == limit
    # Another tenant is not held up; deleting a queued job frees its place.
    other = client_for(fleet.users["outsider"])
    other_policy = fleet.workloads["g"].policy.pk
    assert start(other, other_policy, SHORT, django_capture_on_commit_callbacks).status_code == 202
    assert operator.delete(f"/api/v1/backtests/{queued[0]}/").status_code == 204
    assert start(operator, policy, SHORT, django_capture_on_commit_callbacks).status_code == 202


def test_jobs_are_listed_newest_first_and_filtered(fleet: Any, client_for: Any) -> None:
    running = make_backtest(fleet.workloads["a"], status="running")
    viewer = client_for(fleet.users["viewer"])
    listed = viewer.get("/api/v1/backtests/").json()
    assert [job["id"] for job in listed["results"]] == [running.pk, fleet.backtests["a"].pk]
    assert "result" not in listed["results"][0]  # in the detail only
    only = viewer.get("/api/v1/backtests/?status=running").json()["results"]
    assert [job["id"] for job in only] == [running.pk]
    policy = fleet.workloads["a"].policy.pk
    assert viewer.get(f"/api/v1/backtests/?policy={policy}").json()["count"] == 2
    assert viewer.get("/api/v1/backtests/?status=bogus").status_code == 400


def test_a_redelivered_task_does_not_touch_a_finished_job(fleet: Any) -> None:
    job = fleet.backtests["a"]
    before = BacktestJob.objects.filter(pk=job.pk).values().get()
    tasks.run_backtest_job(job.pk)
    assert BacktestJob.objects.filter(pk=job.pk).values().get() == before
    tasks.run_backtest_job(999999)  # deleted since it was queued: nothing to do


def test_a_job_running_elsewhere_is_left_alone_until_its_runner_goes_quiet(
    fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_backtest(fleet.workloads["a"], status="queued")
    first = BacktestJob.objects.claim(job.pk)
    assert first is not None and BacktestJob.objects.claim(job.pk) is None
    with pytest.raises(Retry):  # a duplicate delivery comes back later instead of running it
        tasks.run_backtest_job(job.pk)
    quiet = timezone.now() - dt.timedelta(seconds=BacktestJob.STALE_AFTER_S + 1)
    BacktestJob.objects.filter(pk=job.pk).update(heartbeat_at=quiet)
    tasks.run_backtest_job(job.pk)  # the first runner died: this delivery takes over
    job.refresh_from_db()
    assert job.status == "succeeded" and job.result["results"][0]["requests"] > 0
    # The first runner, if it were still alive, can no longer write anything.
    assert not job.report_progress(first, 0.5)
    assert not job.finish(first, error="late")
    job.refresh_from_db()
    assert job.status == "succeeded" and job.error == ""


def test_deleting_a_running_job_stops_its_runner(
    fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "PROGRESS_EVERY_S", 0.0)
    job = make_backtest(fleet.workloads["a"], status="queued")
    token = BacktestJob.objects.claim(job.pk)
    assert token is not None
    BacktestJob.objects.filter(pk=job.pk).delete()
    with pytest.raises(tasks._Abandoned):
        tasks.replay_job(job, token)
    assert not BacktestJob.objects.filter(pk=job.pk).exists()


def test_a_replay_the_worker_cannot_honour_fails_the_job_with_the_reason(fleet: Any) -> None:
    job = make_backtest(fleet.workloads["a"], status="queued")
    BacktestJob.objects.filter(pk=job.pk).update(replay={**job.replay, "gpu_type": "Z9000"})
    tasks.run_backtest_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "unknown GPU type 'Z9000'" in job.error
    assert job.result is None and job.finished_at is not None


def test_the_admin_shows_jobs_read_only(fleet: Any, client: Any) -> None:
    client.force_login(fleet.users["staff"])
    job = fleet.backtests["a"]
    assert client.get("/admin/scaling/backtestjob/").status_code == 200
    assert client.get(f"/admin/scaling/backtestjob/{job.pk}/change/").status_code == 200
    assert client.get("/admin/scaling/backtestjob/add/").status_code == 403
    assert ScalingPolicy.objects.count() == 3


def test_a_jobs_result_is_priced_at_the_workloads_gpu_type_hourly_cost(
    fleet: Any,
    client_for: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    gpu_type = fleet.workloads["a"].gpu_type
    gpu_type.hourly_cost = "3.10"
    gpu_type.save()
    monkeypatch.setattr(celery_app.conf, "task_always_eager", True)
    operator = client_for(fleet.users["operator"])
    response = start(
        operator, fleet.workloads["a"].policy.pk, SHORT, django_capture_on_commit_callbacks
    )
    job = operator.get(response["Location"]).json()
    assert job["status"] == "succeeded", job["error"]
    [run] = job["result"]["results"]
    cost = run["gpu_hours"] * 3.10
    assert run["price_per_gpu_hour"] == 3.10 and run["price_source"] == "given"
    assert run["cost_usd"] == pytest.approx(cost, rel=1e-5)
    assert run["cost_per_hour"] == pytest.approx(cost / (120 / 3600), rel=1e-5)
    assert run["cost_per_1k_requests"] == pytest.approx(cost / run["requests"] * 1000, rel=1e-5)
    oracle = job["result"]["oracle"]
    assert oracle["cost_usd"] == pytest.approx(oracle["gpu_hours"] * 3.10, rel=1e-5)
