"""Inference workloads, their scaling policies, and the record of every decision.

Policy fields left empty take the chosen algorithm's documented default (see docs/engine.md),
so a policy states only what it changes.
"""

import math
import uuid
from dataclasses import fields
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from clusters.models import Cluster
from quotas.models import GpuType
from scaling.engine import PolicyParams
from tenants.models import Tenant, TenantQuerySet, dns_label_validator

# The policy fields the engine reads (PolicyParams mirrors them one for one).
ENGINE_FIELDS = tuple(f.name for f in fields(PolicyParams))


class WorkloadQuerySet(models.QuerySet["Workload"]):
    def for_user(self, user: Any, min_role: str = "viewer") -> "WorkloadQuerySet":
        """Workloads of the tenants ``user`` may see (the tenant access choke point)."""
        if user.is_authenticated and user.is_active and user.is_staff:
            return self  # staff see every tenant: no subquery to filter by
        tenants: TenantQuerySet = Tenant.objects.for_user(user, min_role)
        return self.filter(tenant__in=tenants)


class Workload(models.Model):
    """An inference Deployment in a cluster, serving one model on one GPU type.

    ``ready``, ``warming`` and ``desired`` replicas are the last observed state; ``status`` is
    the latest evaluation of its policy (a steady hold updates it, not the Decision log).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="workloads")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="workloads")
    namespace = models.CharField(max_length=63, validators=[dns_label_validator])
    deployment = models.CharField(
        "Deployment name", max_length=253, validators=[dns_label_validator]
    )
    model_name = models.CharField(max_length=200, help_text="e.g. meta-llama/Llama-3.1-8B")
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="workloads")
    gpus_per_replica = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    ready_replicas = models.PositiveIntegerField(default=0)
    warming_replicas = models.PositiveIntegerField(default=0)
    desired_replicas = models.PositiveIntegerField(default=0)
    observed_at = models.DateTimeField(null=True, blank=True)
    status = models.JSONField(default=dict, blank=True)

    objects = WorkloadQuerySet.as_manager()

    class Meta:
        ordering = ["tenant__slug", "deployment"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "namespace", "deployment"],
                name="workload_unique_deployment",
                violation_error_message="This cluster already has a workload for that "
                "namespace and Deployment.",
            ),
            models.CheckConstraint(
                condition=Q(gpus_per_replica__gte=1),
                name="workload_gpus_per_replica_positive",
                violation_error_message="A replica needs at least 1 GPU.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.deployment}"

    @property
    def gpus_in_use(self) -> int:
        return (self.ready_replicas + self.warming_replicas) * self.gpus_per_replica


class ScalingPolicy(models.Model):
    """How one workload scales: the algorithm, the metric and target, bounds, windows and rate
    limits, and whether decisions are applied (enforce), only recorded (dry-run) or not made
    (off). ``version`` increments on every change, so an edit based on an old version is
    refused and every Decision names the version it used."""

    class Algorithm(models.TextChoices):
        HPA = "hpa", "HPA (Kubernetes autoscaling/v2)"
        KPA = "kpa", "KPA (Knative stable/panic windows)"
        APA = "apa", "APA (AIBrix fluctuation tolerance)"
        PREDICTIVE = "predictive", "Predictive (offered work, ahead of cold start)"
        SLO = "slo", "SLO-aware (targets TTFT p95)"

    class Aggregation(models.TextChoices):
        AVERAGE = "average", "Average per replica"
        TOTAL = "total", "Total across replicas"

    class Mode(models.TextChoices):
        OFF = "off", "Off"
        DRY_RUN = "dry-run", "Dry run (record, do not apply)"
        ENFORCE = "enforce", "Enforce"

    workload = models.OneToOneField(Workload, on_delete=models.CASCADE, related_name="policy")
    algorithm = models.CharField(max_length=32, choices=Algorithm.choices, default="hpa")
    metric = models.CharField(max_length=200, default="vllm:num_requests_running")
    aggregation = models.CharField(
        max_length=16, choices=Aggregation.choices, default=Aggregation.AVERAGE
    )
    target = models.FloatField(help_text="Target value of the metric (> 0).")
    min_replicas = models.PositiveIntegerField(default=1)
    max_replicas = models.PositiveIntegerField(default=10)
    scale_up_tolerance = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    scale_down_tolerance = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    scale_up_stabilization_s = models.FloatField(null=True, blank=True)
    scale_down_stabilization_s = models.FloatField(null=True, blank=True)
    scale_up_max_percent = models.FloatField(null=True, blank=True)
    scale_up_max_pods = models.PositiveIntegerField(null=True, blank=True)
    scale_up_period_s = models.FloatField(null=True, blank=True)
    scale_down_max_percent = models.FloatField(null=True, blank=True)
    scale_down_max_pods = models.PositiveIntegerField(null=True, blank=True)
    scale_down_period_s = models.FloatField(null=True, blank=True)
    stable_window_s = models.FloatField(null=True, blank=True)
    panic_window_s = models.FloatField(null=True, blank=True)
    panic_threshold_percent = models.FloatField(null=True, blank=True)
    max_scale_up_rate = models.FloatField(null=True, blank=True)
    max_scale_down_rate = models.FloatField(null=True, blank=True)
    cooldown_s = models.FloatField(null=True, blank=True)
    scale_to_zero_grace_s = models.FloatField(null=True, blank=True)
    cold_start_s = models.FloatField(default=60.0)
    max_metric_age_s = models.FloatField(
        default=60.0, help_text="Older samples count as missing: the decision is hold."
    )
    slo_ttft_p95_s = models.FloatField(
        "SLO: TTFT p95 (s)", null=True, blank=True, help_text="Used by the slo algorithm."
    )
    max_concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="Pool setting: requests in flight per replica."
    )
    routing = models.CharField(
        max_length=32, blank=True, help_text="Pool setting: routing strategy (empty: pool's)."
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.DRY_RUN)
    version = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "scaling policies"
        ordering = ["workload__tenant__slug", "workload__deployment"]
        constraints = [
            models.CheckConstraint(
                condition=Q(target__gt=0),
                name="policy_target_positive",
                violation_error_message="The target must be greater than 0.",
            ),
            models.CheckConstraint(
                condition=Q(max_replicas__gte=F("min_replicas")),
                name="policy_min_not_above_max",
                violation_error_message="Min replicas cannot be above max replicas.",
            ),
            models.CheckConstraint(
                condition=Q(max_replicas__gte=1),
                name="policy_max_at_least_one",
                violation_error_message="Max replicas must be at least 1.",
            ),
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gte": 0}),
                    name=f"policy_{name}_not_negative",
                    violation_error_message=f"{name.replace('_', ' ')} cannot be negative.",
                )
                for name in (
                    "scale_up_tolerance",
                    "scale_down_tolerance",
                    "scale_up_stabilization_s",
                    "scale_down_stabilization_s",
                    "scale_up_max_percent",
                    "scale_up_period_s",
                    "scale_down_max_percent",
                    "scale_down_period_s",
                    "stable_window_s",
                    "panic_window_s",
                    "panic_threshold_percent",
                    "max_scale_up_rate",
                    "max_scale_down_rate",
                    "cooldown_s",
                    "scale_to_zero_grace_s",
                )
            ],
            models.CheckConstraint(
                condition=Q(cold_start_s__gte=0),
                name="policy_cold_start_not_negative",
                violation_error_message="Cold start cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(max_metric_age_s__gt=0),
                name="policy_max_metric_age_positive",
                violation_error_message="Max metric age must be greater than 0.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workload} ({self.algorithm}, {self.mode}, v{self.version})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            # Increment in the database, so concurrent saves never reuse a version.
            self.version = F("version") + 1
        super().save(*args, **kwargs)
        if not isinstance(self.version, int):
            self.refresh_from_db(fields=["version"])

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field in self._meta.concrete_fields:
            value = getattr(self, field.attname)
            # NaN passes every comparison-based check: refuse it (and infinities) by name.
            if isinstance(value, float) and not math.isfinite(value):
                errors[field.name] = "Must be a finite number."
        if self.algorithm == self.Algorithm.SLO and self.slo_ttft_p95_s is None:
            errors["slo_ttft_p95_s"] = "The slo algorithm needs a TTFT p95 target."
        if errors:
            raise ValidationError(errors)

    def engine_params(self) -> PolicyParams:
        """What the engine reads of this (stored or unsaved) policy, field for field."""
        return PolicyParams(**{name: getattr(self, name) for name in ENGINE_FIELDS})


class Decision(models.Model):
    """One evaluation of a policy that applied a change or whose outcome or reason differs from
    the previous one. Append-only: a Decision is never edited.

    ``metrics`` holds the metric values used with their timestamps; ``steps`` the raw desired
    replicas and then each constraint applied in order with the value after it.
    """

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        HELD = "held", "Held"
        BLOCKED_BY_QUOTA = "blocked", "Blocked by quota"
        DRY_RUN = "dry-run", "Dry run"
        ERROR = "error", "Error"

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="decisions")
    policy = models.ForeignKey(
        ScalingPolicy, null=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    policy_version = models.PositiveIntegerField()
    at = models.DateTimeField(db_index=True)
    algorithm = models.CharField(max_length=32)
    metrics = models.JSONField(default=dict)
    current_replicas = models.PositiveIntegerField()
    raw_desired_replicas = models.PositiveIntegerField(null=True)
    steps = models.JSONField(default=list)
    final_replicas = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.TextField()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["workload", "-at"])]

    def __str__(self) -> str:
        return f"{self.workload} {self.outcome} {self.current_replicas}→{self.final_replicas}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValidationError("Decisions are append-only and cannot be changed.")
        super().save(*args, **kwargs)


class ControlLoopState(models.Model):
    """The control loop's bookkeeping for one cluster: the tick lease that keeps one writer
    per cluster (and so per workload) at a time, and the counters /metrics exposes.

    The lease is claimed with a conditional UPDATE (free or expired -> mine), so two workers
    never tick the same cluster at once, and a crashed worker's lease simply expires.
    """

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="loop_state")
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    ticks = models.PositiveBigIntegerField(default=0)
    tick_seconds_total = models.FloatField(default=0.0)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_tick_seconds = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    apply_errors = models.PositiveBigIntegerField(default=0)
    decisions = models.JSONField(default=dict, help_text="Decisions recorded, by outcome.")
    resource_quotas = models.JSONField(
        default=dict,
        blank=True,
        help_text="Last ResourceQuota sync per namespace: hard, used, action, drift found.",
    )
    errors = models.JSONField(
        default=dict,
        blank=True,
        help_text="Tick failures by cause (kind / failing call): count, first and last time, "
        "the sentence shown to operators.",
    )

    class Meta:
        verbose_name = "control loop state"

    def __str__(self) -> str:
        return f"control loop of {self.cluster}: {self.ticks} ticks"

    MAX_ERROR_CAUSES = 20

    def count_error(self, cause: tuple[str, str], sentence: str, at: str) -> dict[str, Any]:
        """The errors map with one more failure of ``cause``: one entry per cause, the
        most recent MAX_ERROR_CAUSES kept."""
        name = " / ".join(cause)
        errors = dict(self.errors or {})
        entry = errors.pop(name, None) or {"count": 0, "first_at": at}
        entry = entry | {"count": int(entry.get("count", 0)) + 1, "last_at": at}
        errors[name] = entry | {"message": sentence}
        return dict(list(errors.items())[-self.MAX_ERROR_CAUSES :])


class BacktestJobQuerySet(models.QuerySet["BacktestJob"]):
    def active(self) -> "BacktestJobQuerySet":
        return self.filter(status__in=BacktestJob.ACTIVE)

    def claim(self, pk: int) -> str | None:
        """Take job ``pk`` for a run: a queued one, or a running one whose runner went quiet
        (a worker that died mid-run). Returns the claim token every later write must carry,
        or None when the job is finished, gone, or still being run by someone else.

        A conditional UPDATE, so two deliveries of the same task never both run it."""
        now = timezone.now()
        quiet = now - timedelta(seconds=BacktestJob.STALE_AFTER_S)
        token = uuid.uuid4().hex
        claimed = (
            self.filter(pk=pk)
            .filter(
                Q(status=BacktestJob.Status.QUEUED)
                | Q(status=BacktestJob.Status.RUNNING, heartbeat_at__lt=quiet)
            )
            .update(
                status=BacktestJob.Status.RUNNING,
                runner=token,
                progress=0.0,
                started_at=now,
                heartbeat_at=now,
            )
        )
        return token if claimed else None


class BacktestJob(models.Model):
    """A back-test of a stored policy (optionally with some fields overridden) over a bundled
    trace, run by a worker (``scaling.tasks.run_backtest_job``) and polled through the API.

    ``params`` is the policy exactly as replayed (a snapshot: later edits of the policy do not
    change a job), ``replay`` the settings handed to ``run_backtest``. While it runs, ``runner``
    holds the claim token of the one task run allowed to write progress and the result; a
    write with another token (a duplicate delivery, or after the job was deleted) changes
    nothing, so a redelivered task can never corrupt a finished job.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    TRACES = {"conv": "Azure LLM conversation trace", "code": "Azure LLM code trace"}
    MIN_DURATION_S = 60.0  # one oracle window
    MAX_DURATION_S = 3600.0  # the bundled traces are about an hour long
    DEFAULT_DURATION_S = 600.0
    MAX_ACTIVE_PER_TENANT = 3  # queued or running at once
    # A running job whose runner has not written for this long is taken to be dead.
    STALE_AFTER_S = 60.0

    policy = models.ForeignKey(ScalingPolicy, on_delete=models.CASCADE, related_name="backtests")
    policy_version = models.PositiveIntegerField(help_text="Version of the policy replayed.")
    trace = models.CharField(max_length=16, choices=list(TRACES.items()))
    duration_s = models.FloatField(
        validators=[MinValueValidator(MIN_DURATION_S), MaxValueValidator(MAX_DURATION_S)]
    )
    compare = models.JSONField(default=list, blank=True, help_text="Other algorithms replayed.")
    overrides = models.JSONField(default=dict, blank=True, help_text="Policy fields changed.")
    params = models.JSONField(help_text="The policy as replayed (engine parameters).")
    replay = models.JSONField(help_text="Settings of the replay: pool, model, duration.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    runner = models.CharField(max_length=32, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = BacktestJobQuerySet.as_manager()

    class Meta:
        verbose_name = "back-test job"
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "policy"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1),
                name="backtest_progress_share",
                violation_error_message="Progress is a share between 0 and 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"back-test {self.pk} of policy {self.policy_id} ({self.status})"

    def _mine(self, token: str) -> "BacktestJobQuerySet":
        return BacktestJob.objects.filter(pk=self.pk, status=self.Status.RUNNING, runner=token)

    def report_progress(self, token: str, share: float) -> bool:
        """Write progress (and the heartbeat); False when this run no longer owns the job."""
        share = min(max(share, 0.0), 1.0)
        return bool(self._mine(token).update(progress=share, heartbeat_at=timezone.now()))

    def finish(self, token: str, result: dict[str, Any] | None = None, error: str = "") -> bool:
        """Record the outcome; False (and nothing written) when this run no longer owns it."""
        done = {"finished_at": timezone.now(), "heartbeat_at": timezone.now()}
        if error:
            fields = {"status": self.Status.FAILED, "error": error, **done}
        else:
            fields = {"status": self.Status.SUCCEEDED, "result": result, "progress": 1.0, **done}
        return bool(self._mine(token).update(**fields))
