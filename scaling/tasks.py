"""Celery tasks of the control loop. Celery is only the trigger: tasks take ids, are
idempotent (a tick recomputes everything from observed state) and may be delivered twice."""

import logging
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster
from scaling import signal_store
from scaling.backtest import jobs
from scaling.engine import PolicyParams
from scaling.loop import tick_cluster
from scaling.models import BacktestJob, Decision, ScalingPolicy, Workload
from tenants.models import Tenant

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def tick_all_clusters() -> None:
    """Beat's entry point: one tick task per enabled cluster (they run in parallel)."""
    for cluster_id in Cluster.objects.filter(enabled=True).values_list("pk", flat=True):
        tick.delay(cluster_id)


@shared_task(ignore_result=True, expires=30)
def tick(cluster_id: int) -> None:
    report = tick_cluster(cluster_id)
    if report is None:
        log.info("cluster %s: previous tick still running, skipped", cluster_id)
    elif report.error:
        log.warning("cluster %s tick: %s", report.cluster, report.error)


@shared_task(ignore_result=True)
def reconcile_workload(workload_id: int) -> None:
    """Reconcile now (after a policy edit): a tick of the workload's cluster."""
    cluster_id = Workload.objects.filter(pk=workload_id).values_list("cluster_id", flat=True)
    for pk in cluster_id:
        tick_cluster(pk)


def request_reconcile(workload: Workload) -> None:
    """Reconcile ``workload`` once the current transaction commits (so the tick sees the
    saved policy)."""
    workload_id = workload.pk
    transaction.on_commit(lambda: reconcile_workload.delay(workload_id))


@shared_task(ignore_result=True)
def prune_decisions() -> int:
    """Delete decisions older than DECISION_RETENTION_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.DECISION_RETENTION_DAYS)
    deleted, _ = Decision.objects.filter(at__lt=cutoff).delete()
    return deleted


@shared_task(ignore_result=True)
def compact_signal_history() -> dict[str, int]:
    """Fold the signal history older than an hour into minute means and delete what is past
    SIGNAL_HISTORY_RETENTION_S (scaling.signal_store)."""
    now = time.time()
    return {"folded": signal_store.downsample(now), "pruned": signal_store.prune(now)}


# --- back-test jobs ------------------------------------------------------------------------------
# What a job replays, and how, is scaling.backtest.jobs (shared with the command and the
# preview); here: the job's row, its claim, and progress written to it.

# Progress is written at most once a second, and only when it moved by at least 1 %: a few
# dozen small UPDATEs per job, which double as the heartbeat that tells a live run from a dead one.
PROGRESS_EVERY_S = 1.0
PROGRESS_STEP = 0.01
BACKTEST_SOFT_LIMIT_S = 120  # far above the longest job allowed (an hour of trace, 5 runs)


class TooManyBacktests(Exception):
    """The tenant already has its limit of queued or running back-tests."""


def start_backtest(
    policy: ScalingPolicy,
    proposed: ScalingPolicy,
    overrides: dict[str, Any],
    *,
    trace: str,
    duration_s: float,
    compare: list[str],
    user: Any,
) -> BacktestJob:
    """Create a queued job replaying ``proposed`` (``policy`` with ``overrides`` applied) and
    queue its run once the transaction commits.

    Raises ValueError when the replay cannot honour the policy or its workload (unknown GPU
    type or model, a metric the replay cannot produce) and TooManyBacktests at the tenant's
    limit. The tenant row is locked while counting, so two requests cannot both take the
    last place.
    """
    workload = policy.workload
    params = proposed.engine_params()
    replay = jobs.replay_settings(workload, proposed, duration_s)
    jobs.check_replay(jobs.compared_runs(params, compare), replay)
    with transaction.atomic():
        Tenant.objects.select_for_update().filter(pk=workload.tenant_id).first()
        active = BacktestJob.objects.active().filter(policy__workload__tenant_id=workload.tenant_id)
        if active.count() >= BacktestJob.MAX_ACTIVE_PER_TENANT:
            raise TooManyBacktests(
                f"Tenant {workload.tenant.slug} already has {BacktestJob.MAX_ACTIVE_PER_TENANT} "
                "back-tests queued or running; wait for one to finish or delete one."
            )
        job = BacktestJob.objects.create(
            policy=policy,
            policy_version=policy.version,
            trace=trace,
            duration_s=duration_s,
            compare=compare,
            overrides=overrides,
            params=asdict(params),
            replay=replay,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        job_id = job.pk
        transaction.on_commit(lambda: run_backtest_job.delay(job_id))
    return job


class _Abandoned(Exception):
    """This run no longer owns its job: the job was deleted, or another run took it over."""


class _ProgressWriter:
    """A job's progress callback: writes the share to the job's row, carrying the claim."""

    def __init__(self, job: BacktestJob, token: str) -> None:
        self.job, self.token = job, token
        self.written, self.at = 0.0, time.monotonic()

    def __call__(self, share: float, algorithm: str) -> None:
        now = time.monotonic()
        if share - self.written < PROGRESS_STEP or now - self.at < PROGRESS_EVERY_S:
            return
        if not self.job.report_progress(self.token, share):
            raise _Abandoned
        self.written, self.at = share, now


@shared_task(
    bind=True,
    ignore_result=True,
    max_retries=5,
    soft_time_limit=BACKTEST_SOFT_LIMIT_S,
    time_limit=BACKTEST_SOFT_LIMIT_S + 30,
)
def run_backtest_job(self: Task, job_id: int) -> None:
    """Run back-test job ``job_id``. Idempotent under redelivery: only a queued job (or one
    whose runner went quiet) is claimed, and every write carries the claim token, so a
    duplicate delivery neither runs a job twice nor touches a finished one."""
    token = BacktestJob.objects.claim(job_id)
    if token is None:
        if BacktestJob.objects.filter(pk=job_id, status=BacktestJob.Status.RUNNING).exists():
            # Another delivery runs it now: come back when it would count as dead.
            raise self.retry(countdown=BacktestJob.STALE_AFTER_S)
        return  # finished, or deleted: nothing to do
    job = BacktestJob.objects.get(pk=job_id)
    try:
        result = replay_job(job, token)
    except _Abandoned:
        log.info("back-test %s: no longer ours (deleted or taken over), stopped", job_id)
        return
    except SoftTimeLimitExceeded:
        job.finish(token, error=f"The back-test took longer than {BACKTEST_SOFT_LIMIT_S} s.")
    except ValueError as exc:  # settings the replay cannot honour, a bad trace
        job.finish(token, error=str(exc))
    except Exception:
        log.exception("back-test %s failed", job_id)
        job.finish(token, error="The back-test failed unexpectedly; the worker log has why.")
    else:
        job.finish(token, result=result)


def replay_job(job: BacktestJob, token: str) -> dict[str, Any]:
    """The job's runs (``scaling.backtest.jobs``) with progress written to its row; the
    result is what ``manage.py backtest --json`` prints."""
    runs = jobs.compared_runs(PolicyParams(**job.params), job.compare)
    results = jobs.run_job(runs, job.trace, job.replay, progress=_ProgressWriter(job, token))
    return jobs.job_result(results)
