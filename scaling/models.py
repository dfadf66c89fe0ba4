"""Inference workloads, their scaling policies, and the record of every decision.

Policy fields left empty take the chosen algorithm's documented default (see docs/engine.md),
so a policy states only what it changes.
"""

import math
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldError, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import DatabaseError, connections, models, router, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.db.models.sql import Query
from django.db.models.sql.constants import SINGLE
from django.utils import timezone

from clusters.metrics import KNOWN_METRICS, METRIC_NAME, unknown_metric_warning
from clusters.models import Cluster
from clusters.pool import ROUTING_STRATEGIES
from quotas.models import GpuType
from scaling.backtest import jobs as backtest_jobs
from scaling.engine import PolicyParams
from scaling.engine.types import TARGET_OPTIONAL
from scaling.status import WorkloadStatus
from tenants.models import (
    Namespace,
    Tenant,
    TenantQuerySet,
    dns_label_validator,
    is_reserved_namespace,
)

# The policy fields the engine reads (PolicyParams mirrors them one for one).
ENGINE_FIELDS = tuple(f.name for f in fields(PolicyParams))

# Most replicas of one workload: beyond any GPU fleet's size, well inside Kubernetes' int32.
MAX_REPLICAS = 10_000
# Most GPUs one replica spans: a rack-scale NVL72 domain fits; no model serves on more.
MAX_GPUS_PER_REPLICA = 256
# A target above this is no load any metric reaches (requests, tokens/s, bytes/s per replica).
MAX_TARGET = 1e9
HOUR = 3600.0


@dataclass(frozen=True)
class Bound:
    """What a numeric setting may be: from ``low`` (excluded when ``above``) to ``high``."""

    low: float
    high: float
    unit: str = ""
    above: bool = False

    def words(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        low = f"greater than {self.low:g}" if self.above else f"at least {self.low:g}"
        return f"must be {low} and at most {self.high:g}{unit}"

    def validators(self) -> list[Any]:
        found: list[Any] = [MaxValueValidator(self.high)]
        if not self.above:
            found.append(MinValueValidator(self.low))
        return found

    def condition(self, name: str) -> Q:
        low = Q(**{f"{name}__gt" if self.above else f"{name}__gte": self.low})
        return Q(**{f"{name}__isnull": True}) | (low & Q(**{f"{name}__lte": self.high}))


# Every number a policy holds, bounded by what it means. Windows and periods follow their
# anchors: HPA caps stabilisation at 3,600 s and policy periods at 1,800 s; Knative's panic
# threshold is 110 % to 1,000 % and its rates must exceed 1.
POLICY_BOUNDS: dict[str, Bound] = {
    "target": Bound(0, MAX_TARGET, above=True),
    "min_replicas": Bound(0, MAX_REPLICAS, "replicas"),
    "max_replicas": Bound(1, MAX_REPLICAS, "replicas"),
    "scale_up_tolerance": Bound(0, 1),
    "scale_down_tolerance": Bound(0, 1),
    "scale_up_stabilization_s": Bound(0, HOUR, "s"),
    "scale_down_stabilization_s": Bound(0, HOUR, "s"),
    "scale_up_max_percent": Bound(0, 10_000, "percent", above=True),
    "scale_up_max_pods": Bound(1, MAX_REPLICAS, "replicas"),
    "scale_up_period_s": Bound(0, 1800, "s", above=True),
    "scale_down_max_percent": Bound(0, 100, "percent", above=True),
    "scale_down_max_pods": Bound(1, MAX_REPLICAS, "replicas"),
    "scale_down_period_s": Bound(0, 1800, "s", above=True),
    "stable_window_s": Bound(0, HOUR, "s", above=True),
    "panic_window_s": Bound(0, HOUR, "s", above=True),
    "panic_threshold_percent": Bound(110, 1000, "percent"),
    "max_scale_up_rate": Bound(1, 1000, above=True),
    "max_scale_down_rate": Bound(1, 1000, above=True),
    "cooldown_s": Bound(0, HOUR, "s"),
    "scale_to_zero_grace_s": Bound(0, HOUR, "s"),
    "cold_start_s": Bound(0, HOUR, "s"),
    "max_metric_age_s": Bound(0, HOUR, "s", above=True),
    "slo_ttft_p95_s": Bound(0, 600, "s", above=True),
    "max_concurrency": Bound(1, 10_000, "requests"),
}


def bounded(name: str) -> list[Any]:
    """The validators of policy field ``name`` (its bound in POLICY_BOUNDS)."""
    return POLICY_BOUNDS[name].validators()


_LABELS = {"target": "The target", "slo_ttft_p95_s": "The TTFT p95 objective"}


def _label(name: str) -> str:
    """How a bound's message names its field: "Scale up period" for scale_up_period_s."""
    return _LABELS.get(name) or name.removesuffix("_s").replace("_", " ").capitalize()


def metric_name_validator(value: str) -> None:
    if not METRIC_NAME.fullmatch(value):
        raise ValidationError(
            "Not a Prometheus metric name: letters, digits, _ and : only, not starting with a "
            "digit (for example vllm:num_requests_running)."
        )


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
    the latest evaluation of its policy (a steady hold updates it, not the Decision log), a
    scaling.status.WorkloadStatus (read it as ``public_status``). ``loop_state`` is what the
    control loop keeps for itself between ticks; nothing outside the loop reads it.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="workloads")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="workloads")
    namespace = models.CharField(max_length=63, validators=[dns_label_validator])
    deployment = models.CharField(
        "Deployment name", max_length=253, validators=[dns_label_validator]
    )
    model_name = models.CharField(max_length=200, help_text="e.g. meta-llama/Llama-3.1-8B")
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="workloads")
    gpus_per_replica = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_GPUS_PER_REPLICA)]
    )
    ready_replicas = models.PositiveIntegerField(default=0)
    warming_replicas = models.PositiveIntegerField(default=0)
    desired_replicas = models.PositiveIntegerField(default=0)
    observed_at = models.DateTimeField(null=True, blank=True)
    status = models.JSONField(
        default=dict, blank=True, help_text="The latest evaluation (scaling.status.WorkloadStatus)."
    )
    loop_state = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="The control loop's own memory between ticks (scaling.status.LOOP_STATE_KEYS): "
        "engine memory, signal history, counters, the decision key, quota clocks. Never served.",
    )

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
            models.CheckConstraint(
                condition=Q(gpus_per_replica__lte=MAX_GPUS_PER_REPLICA),
                name="workload_gpus_per_replica_at_most",
                violation_error_message=(f"A replica spans at most {MAX_GPUS_PER_REPLICA} GPUs."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.deployment}"

    def clean(self) -> None:
        # One answer for every namespace the tenant does not own, mapped to another tenant or
        # to nobody: the message must not tell whether someone else has objects there.
        if self.tenant_id is None or self.cluster_id is None or not self.namespace:
            return
        if self.deployment and self.variant_owns_deployment():
            raise ValidationError(
                {
                    "deployment": f"Deployment {self.deployment} in namespace {self.namespace} "
                    "is already scaled by another workload's GPU-type variant: one Deployment "
                    "has one owner."
                }
            )
        if Namespace.objects.ownership(self.cluster_id).owns(self.tenant, self.namespace):
            return
        why = (
            "it belongs to the cluster itself"
            if is_reserved_namespace(self.namespace)
            else "staff map namespaces to tenants"
        )
        raise ValidationError(
            {
                "namespace": f"Tenant {self.tenant} does not own namespace {self.namespace} on "
                f"cluster {self.cluster} ({why})."
            }
        )

    def variant_owns_deployment(self) -> bool:
        """Whether another workload's variant (WorkloadVariant) scales this Deployment."""
        found = WorkloadVariant.objects.filter(
            workload__cluster_id=self.cluster_id,
            workload__namespace=self.namespace,
            deployment=self.deployment,
        )
        return (found.exclude(workload_id=self.pk) if self.pk else found).exists()

    @property
    def public_status(self) -> WorkloadStatus | None:
        """The latest evaluation, typed; None before the control loop's first."""
        return WorkloadStatus.from_dict(self.status)

    @property
    def policy_or_none(self) -> "ScalingPolicy | None":
        """Its ScalingPolicy, or None when it has none yet (the reverse one-to-one accessor
        raises instead). The one way the loop, the quota allocation, the API and the
        dashboard ask."""
        try:
            return self.policy
        except ScalingPolicy.DoesNotExist:
            return None

    @property
    def gpus_in_use(self) -> int:
        return (self.ready_replicas + self.warming_replicas) * self.gpus_per_replica

    @property
    def gpus_by_type(self) -> dict[int, int]:
        """GPUs held per GPU type id: each type's replicas as the loop last stored them for a
        workload on several types (``loop_state["parts"]``, scaling.variants.parts_state),
        else ``gpus_in_use`` on its own type. A mixed workload's replica columns count the
        pool in primary replicas, which no type's quota can be charged in."""
        parts = (self.loop_state or {}).get("parts")
        if not isinstance(parts, list) or not parts:
            return {self.gpu_type_id: self.gpus_in_use}
        held: dict[int, int] = {}
        for part in parts:
            gpu_type = int(part["gpu_type"])
            held[gpu_type] = held.get(gpu_type, 0) + int(part["holding"]) * self.gpus_per_replica
        return held


class WorkloadVariant(models.Model):
    """A further GPU type a workload can run on: its own Deployment in the workload's namespace
    (pinned to the type's nodes by its ``node_label``) and its own replica bounds. The
    workload's own ``gpu_type`` and ``deployment`` stay its primary variant; with variants,
    the control loop splits the policy's demand across the types at the least cost per hour
    (scaling.engine.mix). One Deployment is never scaled by two owners: a variant's
    Deployment is no other workload's or variant's."""

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="variants")
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="+")
    deployment = models.CharField(
        "Deployment name", max_length=253, validators=[dns_label_validator]
    )
    min_replicas = models.PositiveIntegerField(default=0, validators=bounded("min_replicas"))
    max_replicas = models.PositiveIntegerField(default=10, validators=bounded("max_replicas"))

    class Meta:
        ordering = ["workload", "gpu_type__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workload", "gpu_type"],
                name="variant_unique_gpu_type",
                violation_error_message="This workload already has a variant of that GPU type.",
            ),
            models.UniqueConstraint(
                fields=["workload", "deployment"],
                name="variant_unique_deployment",
                violation_error_message="This workload already has a variant on that Deployment.",
            ),
            models.CheckConstraint(
                condition=Q(min_replicas__lte=F("max_replicas")),
                name="variant_min_at_most_max",
                violation_error_message="Min replicas must not exceed max replicas.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workload} on {self.gpu_type}: {self.deployment}"

    def clean(self) -> None:
        workload = self.workload if _has(self, "workload") else None
        if workload is None or not self.deployment:
            return
        errors: dict[str, str] = {}
        if self.gpu_type_id is not None and self.gpu_type_id == workload.gpu_type_id:
            errors["gpu_type"] = f"{self.gpu_type} is the workload's own (primary) GPU type."
        if self.deployment == workload.deployment:
            errors["deployment"] = "That is the workload's own (primary) Deployment."
        elif self.deployment_taken(workload):
            errors["deployment"] = (
                f"Deployment {self.deployment} in namespace {workload.namespace} is already "
                "scaled by another workload or variant: one Deployment has one owner."
            )
        if errors:
            raise ValidationError(errors)

    def deployment_taken(self, workload: Workload) -> bool:
        """Whether another workload, or another workload's variant, owns this Deployment."""
        where = {"cluster_id": workload.cluster_id, "namespace": workload.namespace}
        others = Workload.objects.filter(**where, deployment=self.deployment)
        variants = WorkloadVariant.objects.filter(
            workload__cluster_id=workload.cluster_id,
            workload__namespace=workload.namespace,
            deployment=self.deployment,
        ).exclude(workload_id=workload.pk)
        if workload.pk is not None:
            others = others.exclude(pk=workload.pk)
        return others.exists() or variants.exists()


def _has(instance: models.Model, relation: str) -> bool:
    """Whether an unsaved instance has ``relation`` set (reading it unset raises)."""
    return getattr(instance, f"{relation}_id", None) is not None or relation in getattr(
        instance._state, "fields_cache", {}
    )


def checks_failed(instance: models.Model, exclude: Any) -> dict[str, Any] | None:
    """The errors of ``instance``'s check constraints, evaluated in one SELECT: each
    constraint's condition a column, NULL counting as met (as ``Q.check`` and SQL CHECK do),
    a constraint on an excluded field skipped (``CheckConstraint.validate``). None when the
    database refused the query or the model has other constraints (Django's path then)."""
    constraints = [c for c in instance._meta.constraints if isinstance(c, models.CheckConstraint)]
    if len(constraints) != len(instance._meta.constraints):
        return None
    query = Query(None)
    fields = instance._get_field_expression_map(instance._meta, exclude)  # type: ignore[attr-defined]
    for name, value in fields.items():
        expression = value if hasattr(value, "resolve_expression") else Value(value)
        query.add_annotation(expression, name, select=False)
    checked = []
    for i, constraint in enumerate(constraints):
        try:
            met = Coalesce(Q(constraint.condition), True, output_field=models.BooleanField())
            query.add_annotation(met, f"_check_{i}")
        except FieldError:
            continue  # about an excluded field
        checked.append(constraint)
    if not checked:
        return {}
    using = router.db_for_write(type(instance))
    # In a transaction, a savepoint keeps a refused query from aborting it (as Q.check).
    atomic = transaction.atomic(using=using) if connections[using].in_atomic_block else None
    try:
        with atomic or nullcontext():
            row = query.get_compiler(using=using).execute_sql(SINGLE)
    except DatabaseError:
        return None
    errors: dict[str, Any] = {}
    for constraint, met in zip(checked, row, strict=True):
        if not met:
            error = ValidationError(
                constraint.get_violation_error_message(), code=constraint.violation_error_code
            )
            errors = error.update_error_dict(errors)
    return errors


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
    metric = models.CharField(
        max_length=200,
        default="vllm:num_requests_running",
        validators=[metric_name_validator],
        help_text="A Prometheus metric name, e.g. vllm:num_requests_running.",
    )
    aggregation = models.CharField(
        max_length=16, choices=Aggregation.choices, default=Aggregation.AVERAGE
    )
    target = models.FloatField(
        null=True,
        blank=True,
        help_text=(
            "Target value of the metric (> 0). Required by hpa, kpa and apa; predictive and "
            "slo size from offered work and need none."
        ),
        validators=bounded("target"),
    )
    min_replicas = models.PositiveIntegerField(default=1, validators=bounded("min_replicas"))
    max_replicas = models.PositiveIntegerField(default=10, validators=bounded("max_replicas"))
    scale_up_tolerance = models.FloatField(
        null=True,
        blank=True,
        validators=bounded("scale_up_tolerance"),
    )
    scale_down_tolerance = models.FloatField(
        null=True,
        blank=True,
        validators=bounded("scale_down_tolerance"),
    )
    scale_up_stabilization_s = models.FloatField(
        null=True, blank=True, validators=bounded("scale_up_stabilization_s")
    )
    scale_down_stabilization_s = models.FloatField(
        null=True, blank=True, validators=bounded("scale_down_stabilization_s")
    )
    scale_up_max_percent = models.FloatField(
        null=True, blank=True, validators=bounded("scale_up_max_percent")
    )
    scale_up_max_pods = models.PositiveIntegerField(
        null=True, blank=True, validators=bounded("scale_up_max_pods")
    )
    scale_up_period_s = models.FloatField(
        null=True, blank=True, validators=bounded("scale_up_period_s")
    )
    scale_down_max_percent = models.FloatField(
        null=True, blank=True, validators=bounded("scale_down_max_percent")
    )
    scale_down_max_pods = models.PositiveIntegerField(
        null=True, blank=True, validators=bounded("scale_down_max_pods")
    )
    scale_down_period_s = models.FloatField(
        null=True, blank=True, validators=bounded("scale_down_period_s")
    )
    stable_window_s = models.FloatField(
        null=True, blank=True, validators=bounded("stable_window_s")
    )
    panic_window_s = models.FloatField(null=True, blank=True, validators=bounded("panic_window_s"))
    panic_threshold_percent = models.FloatField(
        null=True, blank=True, validators=bounded("panic_threshold_percent")
    )
    max_scale_up_rate = models.FloatField(
        null=True, blank=True, validators=bounded("max_scale_up_rate")
    )
    max_scale_down_rate = models.FloatField(
        null=True, blank=True, validators=bounded("max_scale_down_rate")
    )
    cooldown_s = models.FloatField(null=True, blank=True, validators=bounded("cooldown_s"))
    scale_to_zero_grace_s = models.FloatField(
        null=True, blank=True, validators=bounded("scale_to_zero_grace_s")
    )
    cold_start_s = models.FloatField(default=60.0, validators=bounded("cold_start_s"))
    max_metric_age_s = models.FloatField(
        default=60.0,
        help_text="Older samples count as missing: the decision is hold.",
        validators=bounded("max_metric_age_s"),
    )
    slo_ttft_p95_s = models.FloatField(
        "SLO: TTFT p95 (s)",
        null=True,
        blank=True,
        help_text="Used by the slo algorithm.",
        validators=bounded("slo_ttft_p95_s"),
    )
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Pool setting: requests in flight per replica.",
        validators=bounded("max_concurrency"),
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
                condition=Q(max_replicas__gte=F("min_replicas")),
                name="policy_min_not_above_max",
                violation_error_message="Min replicas cannot be above max replicas.",
            ),
            models.CheckConstraint(
                condition=Q(metric__regex=f"^{METRIC_NAME.pattern}$"),
                name="policy_metric_is_a_prometheus_name",
                violation_error_message="The metric must be a Prometheus metric name.",
            ),
            *[
                models.CheckConstraint(
                    condition=bound.condition(name),
                    name=f"policy_{name}_range",
                    violation_error_message=f"{_label(name)} {bound.words()}.",
                )
                for name, bound in POLICY_BOUNDS.items()
            ],
        ]

    def __str__(self) -> str:
        return f"{self.workload} ({self.algorithm}, {self.mode}, v{self.version})"

    # Not settings: bookkeeping that a save writes itself.
    _UNVERSIONED = frozenset({"id", "version", "updated_at"})

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            if self.changed_fields() == []:
                return  # nothing changed: same version, same updated_at, nothing written
            # Increment in the database, so concurrent saves never reuse a version.
            self.version = F("version") + 1
        super().save(*args, **kwargs)
        if not isinstance(self.version, int):
            self.refresh_from_db(fields=["version"])
        self._stored = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}

    def validate_constraints(self, exclude: Any = None) -> None:
        """Django's, with the check constraints in one query rather than one each (26 of
        them: ~30 ms of every live what-if keystroke); the same errors in the same order."""
        errors = checks_failed(self, exclude)
        if errors is None:  # the database could not answer the batch: one query each
            super().validate_constraints(exclude)
        elif errors:
            raise ValidationError(errors)

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> "ScalingPolicy":
        instance = super().from_db(db, field_names, values)
        instance._stored = dict(zip(field_names, values, strict=True))
        return instance

    def changed_fields(self) -> list[str] | None:
        """Settings that differ from the row this instance was loaded from; None when that row
        is not known (an instance not loaded from the database)."""
        stored: dict[str, Any] | None = getattr(self, "_stored", None)
        if stored is None:
            return None
        return [
            f.name
            for f in self._meta.concrete_fields
            if f.name not in self._UNVERSIONED
            and f.attname in stored
            and getattr(self, f.attname) != stored[f.attname]
        ]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field in self._meta.concrete_fields:
            value = getattr(self, field.attname)
            # NaN passes every comparison-based check: refuse it (and infinities) by name.
            if isinstance(value, float) and not math.isfinite(value):
                errors[field.name] = "Must be a finite number."
        if self.algorithm == self.Algorithm.SLO and self.slo_ttft_p95_s is None:
            errors["slo_ttft_p95_s"] = "The slo algorithm needs a TTFT p95 target."
        if self.routing and self.routing not in ROUTING_STRATEGIES:
            errors["routing"] = (
                f"Unknown routing strategy {self.routing!r}: one of {', '.join(ROUTING_STRATEGIES)}"
                " (empty: the pool's own default)."
            )
        if self.target is None and self.algorithm not in TARGET_OPTIONAL:
            errors["target"] = (
                f"required by the {self.algorithm} algorithm: a positive number "
                f"(only {' and '.join(sorted(TARGET_OPTIONAL))} need none)."
            )
        unreachable = self.unreachable_target()
        if unreachable and "target" not in errors:
            errors["target"] = unreachable
        if errors:
            raise ValidationError(errors)

    def unreachable_target(self) -> str | None:
        """Why the target is beyond what the metric can ever hold (a ratio above 1, a
        percentage above 100: per replica, or summed over max replicas for a total)."""
        known = KNOWN_METRICS.get(self.metric)
        if known is None or known.most is None or not isinstance(self.target, float | int):
            return None
        total = self.aggregation == self.Aggregation.TOTAL
        replicas = self.max_replicas if isinstance(self.max_replicas, int) else 1
        most = known.most * replicas if total else known.most
        if self.target <= most:
            return None
        per = f"summed over at most {replicas} replicas" if total else "per replica"
        return (
            f"{self.metric} is a {known.unit} series, at most {most:g} {per}: a target of "
            f"{self.target:g} can never be reached."
        )

    def metric_warnings(self) -> list[str]:
        """What a client should know about this policy though it is valid: a metric that is no
        series the cluster's exporters are known to publish (a typo, or a custom metric), a
        max metric age shorter than the loop's interval."""
        warnings = [w for w in [unknown_metric_warning(self.metric)] if w]
        interval = float(settings.CONTROL_LOOP_INTERVAL)
        if self.max_metric_age_s is not None and self.max_metric_age_s < interval:
            # Consecutive samples are a tick apart: each gap would count as an outage.
            warnings.append(
                f"Max metric age {self.max_metric_age_s:g} s is shorter than the control loop's "
                f"interval ({interval:g} s): every tick would find a gap in the metric, and the "
                "policy would never scale down."
            )
        return warnings

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


BACKTEST_MIN_S = 60.0  # one oracle window
BACKTEST_MAX_S = 3600.0  # the bundled traces are about an hour long


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
    TRACES = backtest_jobs.TRACES  # the bundled traces (one list, in the simulator)
    MIN_DURATION_S = BACKTEST_MIN_S
    MAX_DURATION_S = BACKTEST_MAX_S
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
            models.CheckConstraint(
                condition=Q(duration_s__gte=BACKTEST_MIN_S) & Q(duration_s__lte=BACKTEST_MAX_S),
                name="backtest_duration_range",
                violation_error_message=(
                    f"A back-test replays {BACKTEST_MIN_S:g} to {BACKTEST_MAX_S:g} s of trace."
                ),
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


# The signal history's rows live with the loop that writes them (a model of this app).
from scaling.signal_store import SignalChunk  # noqa: E402, F401
