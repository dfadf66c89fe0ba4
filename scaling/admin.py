from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from clusters import kubernetes
from clusters.models import Cluster
from history.admin import ChangeInline, HistoryAdminMixin
from scaling.models import BacktestJob, Decision, ScalingPolicy, Workload, WorkloadVariant
from scaling.tasks import request_reconcile
from tenants.admin import OrganisationFilter


class WorkloadOrganisationFilter(OrganisationFilter):
    tenant_path = "tenant"


class WorkloadForm(forms.ModelForm):
    """Checks the Deployment exists when its cluster, namespace or name is set or changed,
    as the API does (scaling.admin and api.serializers.scaling share the adapter's check)."""

    unchecked = ""  # why the Deployment could not be checked (the workload is saved anyway)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        cluster, namespace, name = (data.get(k) for k in ("cluster", "namespace", "deployment"))
        changed = {"cluster", "namespace", "deployment"} & set(self.changed_data)
        if not isinstance(cluster, Cluster) or not namespace or not name or not changed:
            return data
        namespace, name = str(namespace), str(name)
        try:
            found = kubernetes.deployment_exists(cluster, namespace, name)
        except kubernetes.ClusterError as exc:
            self.unchecked = exc.sentence(cluster.name)
            return data
        if not found:
            self.add_error("deployment", kubernetes.missing_deployment(cluster, namespace, name))
        return data


class VariantForm(forms.ModelForm):
    """A variant's Deployment must exist in the workload's namespace, checked as the
    workload's own is (when the cluster cannot answer it is saved, the loop reports it)."""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            workload: Workload | None = self.instance.workload  # set by the inline formset
        except Workload.DoesNotExist:
            workload = None
        name = data.get("deployment")
        if workload is None or not name or "deployment" not in self.changed_data:
            return data
        try:
            found = kubernetes.deployment_exists(workload.cluster, workload.namespace, name)
        except kubernetes.ClusterError:
            return data
        if not found:
            message = kubernetes.missing_deployment(workload.cluster, workload.namespace, name)
            self.add_error("deployment", message)
        return data


class VariantInline(admin.TabularInline):
    """Further GPU types the workload runs on, one Deployment each (the loop chooses the mix)."""

    model = WorkloadVariant
    form = VariantForm
    fk_name = "workload"
    extra = 0
    fields = ("gpu_type", "deployment", "min_replicas", "max_replicas")


@admin.register(Workload)
class WorkloadAdmin(admin.ModelAdmin):
    form = WorkloadForm
    inlines = (VariantInline,)
    list_display = (
        "deployment",
        "tenant",
        "cluster",
        "namespace",
        "model_name",
        "gpu_type",
        "gpus_per_replica",
        "ready_replicas",
        "warming_replicas",
        "desired_replicas",
    )
    list_filter = (WorkloadOrganisationFilter, "cluster", "gpu_type")
    search_fields = ("deployment", "namespace", "model_name", "tenant__slug")
    list_select_related = ("tenant", "cluster", "gpu_type")
    readonly_fields = (
        "ready_replicas",
        "warming_replicas",
        "desired_replicas",
        "observed_at",
        "status",
    )
    autocomplete_fields = ("tenant",)

    def save_model(self, request: HttpRequest, obj: Workload, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "unchecked", ""):
            messages.warning(
                request,
                f"Deployment {obj.deployment} in namespace {obj.namespace} could not be "
                f"checked: {form.unchecked}. Saved; the control loop reports what it finds.",
            )


class PolicyOrganisationFilter(OrganisationFilter):
    tenant_path = "workload__tenant"


@admin.register(ScalingPolicy)
class ScalingPolicyAdmin(HistoryAdminMixin):
    list_display = (
        "workload",
        "algorithm",
        "metric",
        "target",
        "min_replicas",
        "max_replicas",
        "mode",
        "version",
    )
    list_filter = ("algorithm", "mode", PolicyOrganisationFilter)
    search_fields = ("workload__deployment", "workload__tenant__slug", "metric")
    list_select_related = ("workload__tenant", "workload__cluster")
    readonly_fields = ("version", "updated_at")
    raw_id_fields = ("workload",)
    inlines = [ChangeInline]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        request_reconcile(obj.workload)

    fieldsets = [
        (None, {"fields": ["workload", "mode", "version", "updated_at"]}),
        (
            "Signal",
            {
                "description": (
                    "Target: required by hpa, kpa and apa; empty for predictive and slo, which "
                    "size from offered work."
                ),
                "fields": [
                    "algorithm",
                    "metric",
                    "aggregation",
                    "target",
                    "max_metric_age_s",
                    "slo_ttft_p95_s",
                ],
            },
        ),
        ("Bounds", {"fields": ["min_replicas", "max_replicas", "cold_start_s"]}),
        (
            "Behaviour (empty = the algorithm's default)",
            {
                "classes": ["collapse"],
                "fields": [
                    "scale_up_tolerance",
                    "scale_down_tolerance",
                    "scale_up_stabilization_s",
                    "scale_down_stabilization_s",
                    "scale_up_max_percent",
                    "scale_up_max_pods",
                    "scale_up_period_s",
                    "scale_down_max_percent",
                    "scale_down_max_pods",
                    "scale_down_period_s",
                    "stable_window_s",
                    "panic_window_s",
                    "panic_threshold_percent",
                    "max_scale_up_rate",
                    "max_scale_down_rate",
                    "cooldown_s",
                    "scale_to_zero_grace_s",
                ],
            },
        ),
        ("Inference pool", {"fields": ["max_concurrency", "routing"]}),
        ("History", {"fields": ["change_reason"]}),
    ]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    """Read-only: decisions are an append-only record."""

    list_display = ("at", "workload", "outcome", "current_replicas", "final_replicas", "reason")
    list_filter = ("outcome", "algorithm", "workload__cluster")
    search_fields = ("workload__deployment", "workload__tenant__slug", "reason")
    date_hierarchy = "at"
    list_select_related = ("workload__cluster",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BacktestJob)
class BacktestJobAdmin(admin.ModelAdmin):
    """Read-only: jobs are started over the API and written by their worker. Deleting one
    cancels it (its worker stops at its next progress write)."""

    list_display = (
        "pk",
        "policy",
        "trace",
        "duration_s",
        "status",
        "progress",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "trace")
    search_fields = ("policy__workload__deployment", "policy__workload__tenant__slug")
    date_hierarchy = "created_at"
    list_select_related = ("policy__workload__cluster", "created_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
