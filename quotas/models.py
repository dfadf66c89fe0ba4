"""GPU types and each tenant's GPU quota per type.

Semantics follow Kueue's cohorts (an organisation is the cohort of its teams): nominal GPUs are
the tenant's own; the lending limit caps what it lends to its cohort (null = lend all); the
borrowing limit caps what it may take beyond nominal (null = no limit).
"""

import time
from collections.abc import Iterable
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from performance import GpuProfile, gpu_profile
from quotas.maths import Demand, Effect, TenantQuota, Usage, ceiling, preview, usage_of
from tenants.models import Tenant

# Most GPUs of one type a tenant may own or borrow: beyond the largest fleets there are.
MAX_GPUS = 100_000
# Most replicas of one workload (scaling.models.MAX_REPLICAS: quotas cannot import scaling).
MAX_REPLICAS = 10_000
MAX_GPU_MEMORY_GIB = 1024  # the largest GPUs hold 288 GB
MAX_RELATIVE_THROUGHPUT = 100.0  # a hundred A100s' worth in one GPU is no GPU there is
MAX_HOURLY_COST = 1000  # USD per GPU hour
DAY_S = 86_400


class GpuType(models.Model):
    """A GPU model as nodes advertise it (``nvidia.com/gpu.product``), with what it is worth."""

    name = models.CharField(max_length=63, unique=True, help_text='For example "A100-80GB".')
    memory_gib = models.PositiveIntegerField(
        "memory (GiB)", validators=[MinValueValidator(1), MaxValueValidator(MAX_GPU_MEMORY_GIB)]
    )
    relative_throughput = models.FloatField(
        default=1.0,
        help_text="Inference throughput relative to an A100-80GB (= 1.0).",
        validators=[MaxValueValidator(MAX_RELATIVE_THROUGHPUT)],
    )
    hourly_cost = models.DecimalField(
        "hourly cost (USD)",
        max_digits=8,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(MAX_HOURLY_COST)],
    )
    node_label = models.CharField(
        max_length=100,
        unique=True,
        help_text="The nodes' nvidia.com/gpu.product label value, e.g. NVIDIA-A100-SXM4-80GB.",
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "GPU type"
        constraints = [
            models.CheckConstraint(
                condition=Q(memory_gib__gt=0, memory_gib__lte=MAX_GPU_MEMORY_GIB),
                name="gputype_memory_range",
                violation_error_message=(
                    f"Memory must be greater than 0 and at most {MAX_GPU_MEMORY_GIB} GiB."
                ),
            ),
            models.CheckConstraint(
                condition=Q(relative_throughput__gt=0, relative_throughput__lte=100),
                name="gputype_throughput_range",
                violation_error_message=(
                    "Relative throughput must be greater than 0 and at most "
                    f"{MAX_RELATIVE_THROUGHPUT:g} (an A100-80GB is 1)."
                ),
            ),
            models.CheckConstraint(
                condition=Q(hourly_cost__gte=0, hourly_cost__lte=MAX_HOURLY_COST),
                name="gputype_cost_range",
                violation_error_message=(
                    f"The hourly cost must be between 0 and {MAX_HOURLY_COST} USD."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def profile(self) -> GpuProfile | None:
        """This type's entry in the GPU performance catalogue (None for a GPU we have no
        datasheet for): by node label first, then by name. The live loop's replica capacity,
        the back-test and the what-if preview all size replicas from it."""
        return gpu_profile(self.node_label, self.name)


class QuotaQuerySet(models.QuerySet["Quota"]):
    def cohort_of(self, quota: "Quota") -> list["Quota"]:
        """``quota`` and the quotas of the same GPU type in its tenant's cohort."""
        parent = quota.tenant.parent_id
        if parent is None:
            return [quota]
        siblings = self.filter(gpu_type_id=quota.gpu_type_id, tenant__parent_id=parent)
        return list(siblings.select_related("tenant", "tenant__parent", "gpu_type"))

    def usages(self, quotas: Iterable["Quota"]) -> dict[int, Usage]:
        """Used, borrowed, lent and available for each quota, from the observed usage of the
        quotas in their cohorts (one query)."""
        quotas = list(quotas)
        parents = {q.tenant.parent_id for q in quotas if q.tenant.parent_id is not None}
        gpu_types = {q.gpu_type_id for q in quotas}
        cohorts: dict[tuple[int, int], list[Quota]] = {}
        siblings = self.filter(gpu_type_id__in=gpu_types, tenant__parent_id__in=parents)
        for q in siblings.select_related("tenant", "tenant__parent", "gpu_type"):
            cohorts.setdefault((q.tenant.parent_id or 0, q.gpu_type_id), []).append(q)
        result = {}
        for q in quotas:
            members = cohorts.get((q.tenant.parent_id or 0, q.gpu_type_id), [q])
            usage = {m.tenant.slug: m.used_gpus for m in members}
            result[q.pk] = usage_of(q.as_limit(), [m.as_limit() for m in members], usage)
        return result


class Quota(models.Model):
    """How many GPUs of one type a tenant owns, may borrow and lends, across all clusters."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="quotas")
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="quotas")
    nominal = models.PositiveIntegerField(
        "nominal GPUs",
        help_text="GPUs this tenant owns; usable by others only as lent.",
        validators=[MaxValueValidator(MAX_GPUS)],
    )
    borrowing_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most GPUs it may use beyond nominal. Empty means no limit (not 0).",
        validators=[MaxValueValidator(MAX_GPUS)],
    )
    lending_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most of its nominal GPUs others may use. Empty means lend all.",
    )
    max_replicas_per_workload = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Optional cap on any one workload's replicas.",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_REPLICAS)],
    )
    reclaim_grace_s = models.PositiveIntegerField(
        "reclaim grace (s)",
        null=True,
        blank=True,
        help_text=(
            "After a lowered quota leaves usage over it (nominal, plus the borrowing limit for "
            "a team), shrink the tenant's workloads back within it once usage has been over "
            "for this many seconds (0: at once; never below a policy's minimum). Empty: never; "
            "growth stays blocked until usage falls."
        ),
        validators=[MaxValueValidator(DAY_S)],
    )
    # Observed by the control loop (which writes these; quotas never read workloads): GPUs
    # of this type the tenant's replicas hold across clusters, and what each workload wants.
    used_gpus = models.PositiveIntegerField(default=0, editable=False)
    warming_gpus = models.PositiveIntegerField(default=0, editable=False)
    demands = models.JSONField(default=list, blank=True, editable=False)
    usage_at = models.DateTimeField(null=True, blank=True, editable=False)
    over_since = models.DateTimeField(
        "over quota since", null=True, blank=True, editable=False
    )  # when usage went over nominal + borrowing limit: the reclaim grace clock

    objects = QuotaQuerySet.as_manager()

    class Meta:
        ordering = ["tenant__slug", "gpu_type__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "gpu_type"],
                name="quota_one_per_tenant_and_gpu_type",
                violation_error_message="This tenant already has a quota for this GPU type.",
            ),
            models.CheckConstraint(
                condition=Q(nominal__gte=0, nominal__lte=MAX_GPUS),
                name="quota_nominal_range",
                violation_error_message=f"Nominal GPUs must be between 0 and {MAX_GPUS:,}.",
            ),
            models.CheckConstraint(
                condition=Q(borrowing_limit__isnull=True)
                | Q(borrowing_limit__gte=0, borrowing_limit__lte=MAX_GPUS),
                name="quota_borrowing_limit_range",
                violation_error_message=(
                    f"The borrowing limit must be between 0 and {MAX_GPUS:,} GPUs."
                ),
            ),
            models.CheckConstraint(
                condition=Q(lending_limit__isnull=True)
                | Q(lending_limit__gte=0, lending_limit__lte=F("nominal")),
                name="quota_lending_limit_within_nominal",
                violation_error_message="The lending limit must be between 0 and nominal GPUs.",
            ),
            models.CheckConstraint(
                condition=Q(max_replicas_per_workload__isnull=True)
                | Q(max_replicas_per_workload__gte=1, max_replicas_per_workload__lte=MAX_REPLICAS),
                name="quota_max_replicas_range",
                violation_error_message=(
                    f"Max replicas per workload must be between 1 and {MAX_REPLICAS:,}."
                ),
            ),
            models.CheckConstraint(
                condition=Q(reclaim_grace_s__isnull=True) | Q(reclaim_grace_s__lte=DAY_S),
                name="quota_reclaim_grace_at_most_a_day",
                violation_error_message=f"The reclaim grace is at most a day ({DAY_S:,} s).",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.gpu_type}: {self.nominal} GPUs"

    def clean(self) -> None:
        # Borrowing and lending only mean something inside a cohort (an organisation's teams).
        tenant = Tenant.objects.filter(pk=self.tenant_id).first() if self.tenant_id else None
        if tenant is not None and tenant.parent_id is None:
            errors = {}
            if self.borrowing_limit is not None:
                errors["borrowing_limit"] = (
                    "Only teams of an organisation can borrow; leave it empty for this tenant."
                )
            if self.lending_limit is not None:
                errors["lending_limit"] = (
                    "Only teams of an organisation can lend; leave it empty for this tenant."
                )
            if errors:
                raise ValidationError(errors)

    def as_limit(self) -> TenantQuota:
        """This quota as the quota maths sees it."""
        return TenantQuota(
            tenant=self.tenant.slug,
            gpu_type=self.gpu_type.name,
            nominal=self.nominal,
            borrowing_limit=self.borrowing_limit,
            lending_limit=self.lending_limit,
            cohort=self.tenant.parent.slug if self.tenant.parent else None,
            priority=self.tenant.priority,
            weight=self.tenant.fair_share_weight,
            max_replicas_per_workload=self.max_replicas_per_workload,
            reclaim_grace_s=self.reclaim_grace_s,
            over_since=self.over_since.timestamp() if self.over_since else None,
        )

    def track_excess(self, held: int, at: datetime) -> bool:
        """Start the reclaim grace clock when ``held`` GPUs go over this quota's ceiling and
        stop it when they fit again; True when that changed ``over_since``."""
        most = ceiling(self.nominal, self.borrowing_limit, self.tenant.parent_id is not None)
        over_since = (self.over_since or at) if most is not None and held > most else None
        changed = over_since != self.over_since
        self.over_since = over_since
        return changed

    def preview(self, proposed: "Quota") -> list[dict[str, Any]]:
        """What saving ``proposed`` (an unsaved edit of this quota) would do this tick to the
        workloads sharing its cohort and GPU type: who may grow, who is blocked or reclaimed.
        Uses the demands the control loop last observed."""
        cohort = Quota.objects.cohort_of(self)
        before = {q.tenant.slug: q.as_limit() for q in cohort}
        after = before | {self.tenant.slug: proposed.as_limit()}
        names: dict[int, str] = {}
        demands = []
        known = {f.name for f in fields(Demand)}
        for q in cohort:
            for item in q.demands:
                names[item["workload"]] = item.get("name", str(item["workload"]))
                demands.append(Demand(**{k: v for k, v in item.items() if k in known}))
        effects: list[Effect] = preview(before, after, demands, time.time())
        return [asdict(e) | {"name": names[e.workload]} for e in effects]
