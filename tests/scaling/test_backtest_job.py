"""One back-test job, three callers: ``manage.py backtest``, the API's Celery task and the
what-if preview replay the same policy over the same trace to the same numbers, with the same
defaults (scaling.backtest.jobs); and a GPU type named by an admin gets the same replica
capacity in the live loop as in a back-test (GpuType.profile)."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from clusters.kubernetes import DeploymentState
from dashboard import preview
from scaling import loop, tasks
from scaling.backtest import Deployment, Slo, jobs
from scaling.capacity import DEFAULT_MAX_CONCURRENCY, capacity_of
from scaling.models import BacktestJob

DURATION_S = 120.0
# The numbers a caller's default would change: the SLO's and the tick's appear in every
# result, and attainment, GPU-hours and scale events follow from them.
HEADLINE = ("slo_attainment", "gpu_hours", "scale_events", "slo", "tick_s", "cold_start_s")
WITHOUT_ORACLE = {"oracle": None, "gpu_hours_vs_oracle": None, "gpu_hours_vs_oracle_schedule": None}


@pytest.fixture
def big_a100(db: Any) -> Any:
    """An A100 as an admin may register it: its own name, the nodes' real product label."""
    from quotas.models import GpuType

    return GpuType.objects.create(
        name="a100-big", memory_gib=80, hourly_cost="2.20", node_label="NVIDIA-A100-SXM4-80GB"
    )


@pytest.fixture
def workload(team_a: Any, cluster: Any, big_a100: Any, make_workload: Any) -> Any:
    workload = make_workload(team_a, cluster, big_a100, "chat")
    policy = workload.policy
    policy.target, policy.min_replicas, policy.max_replicas = 4, 1, 3
    policy.save()
    return workload


def by_command(workload: Any, *options: str) -> dict[str, Any]:
    out = StringIO()
    call_command(
        "backtest",
        "--policy",
        str(workload.policy.pk),
        "--trace",
        "conv",
        "--duration",
        f"{DURATION_S:g}",
        "--json",
        *options,
        stdout=out,
        stderr=StringIO(),
    )
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def by_task(workload: Any, compare: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(tasks.run_backtest_job, "delay", lambda job_id: None)
    policy = workload.policy
    job = tasks.start_backtest(
        policy, policy, {}, trace="conv", duration_s=DURATION_S, compare=compare, user=None
    )
    tasks.run_backtest_job(job.pk)
    job.refresh_from_db()
    assert job.status == BacktestJob.Status.SUCCEEDED, job.error
    assert job.result is not None
    return dict(job.result)


def by_preview(workload: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(preview, "PREVIEW_DURATION_S", DURATION_S)
    params = workload.policy.engine_params()
    shares: list[float] = []
    out = preview.run_pair(
        params,
        params,
        preview.trace_source(workload, "conv", now=0.0),
        preview.replay_settings(workload, workload.policy),
        shares.append,
    )
    assert shares == sorted(shares) and shares[-1] == 1.0
    return out


def headline(run: dict[str, Any]) -> dict[str, Any]:
    return {key: run[key] for key in HEADLINE}


def test_the_command_the_task_and_the_preview_replay_to_the_same_numbers(
    workload: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = by_command(workload, "--compare", "slo")
    task = by_task(workload, ["slo"], monkeypatch)
    shown = by_preview(workload, monkeypatch)

    assert [run["algorithm"] for run in command["results"]] == ["hpa", "slo"]
    first = command["results"][0]
    assert first["gpu_type"] == "A100-80GB"  # the admin's "a100-big", by its node label
    assert first["requests"] > 0 and first["scale_events"] > 0
    assert task == command  # every run, the oracle and the attribution
    # The preview skips the oracle; the replay is the same.
    assert headline(shown["stored"]) == headline(shown["edited"]) == headline(first)
    assert shown["stored"] | WITHOUT_ORACLE == first | WITHOUT_ORACLE


def test_the_compared_numbers_see_the_slo_a_path_would_default_differently(
    workload: Any,
) -> None:
    # What makes the test above able to fail: a path defaulting to another TTFT bound
    # would report other numbers, not only another slo_ttft_s.
    usual = by_command(workload)
    strict = by_command(workload, "--slo-ttft", "1")
    assert usual["results"][0]["slo"] == {"ttft_s": 2.0, "tpot_s": 0.1}
    assert usual["results"][0]["slo_attainment"] != strict["results"][0]["slo_attainment"]
    # On this slice one replica is the bound under both; the schedule's replay tells them apart.
    assert usual["oracle"]["slo_attainment"] != strict["oracle"]["slo_attainment"]


# --- GpuType.profile ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "node_label", "profile"),
    [
        ("a100-big", "NVIDIA-A100-SXM4-80GB", "A100-80GB"),  # by node label
        ("H100-80GB", "custom-h100-label", "H100-80GB"),  # by name, the label unknown
        ("L4-24GB", "NVIDIA-A40", "A40-48GB"),  # the label is what the nodes are
        ("mystery", "ACME-X1", None),
    ],
)
def test_a_gpu_type_finds_its_profile_by_node_label_then_name(
    db: Any, name: str, node_label: str, profile: str | None
) -> None:
    from quotas.models import GpuType

    gpu = GpuType(name=name, memory_gib=80, node_label=node_label)
    assert (gpu.profile.name if gpu.profile else None) == profile


def test_an_admin_named_gpu_type_has_the_same_capacity_live_as_in_a_back_test(
    workload: Any,
) -> None:
    policy = workload.policy
    policy.algorithm, policy.slo_ttft_p95_s = "slo", 2.0  # an offered-work algorithm
    policy.save()
    state = DeploymentState(workload.namespace, workload.deployment, 1, 1, 1)
    observed = loop.Observed(1000.0, {(workload.namespace, workload.deployment): state}, {}, {})
    proposal = loop._propose(workload, observed)
    assert isinstance(proposal, loop.Proposal)

    replay = jobs.replay_settings(workload, policy, DURATION_S)
    deployment = Deployment(**{k: replay[k] for k in jobs.DEPLOYMENT_KEYS if k in replay})
    replayed = capacity_of(deployment.perf, Slo().tpot_s, DEFAULT_MAX_CONCURRENCY)
    assert proposal.obs.capacity is not None
    assert proposal.obs.capacity == replayed


def test_a_gpu_type_without_an_hourly_cost_is_priced_at_the_labelled_assumption(
    workload: Any, big_a100: Any
) -> None:
    big_a100.hourly_cost = 0  # the field's default: nobody set a price
    big_a100.save()
    replay = jobs.replay_settings(workload, workload.policy, DURATION_S)
    assert replay[jobs.PRICE_KEY] is None
    [result] = jobs.run_job([workload.policy.engine_params()], "conv", replay, oracle=False)
    assert result.price_source == "assumed" and result.price_per_gpu_hour == 2.20
    assert result.cost_usd == pytest.approx(result.gpu_hours * 2.20)
    priced_at_five = jobs.run_job(
        [workload.policy.engine_params()], "conv", {**replay, jobs.PRICE_KEY: 5.0}, oracle=False
    )[0]
    assert priced_at_five.price_source == "given"
    assert priced_at_five.cost_usd == pytest.approx(result.gpu_hours * 5.0)
    with pytest.raises(ValueError, match="price"):
        jobs.check_replay([workload.policy.engine_params()], {**replay, jobs.PRICE_KEY: -1.0})
