from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from history.admin import ChangeInline, HistoryAdminMixin
from quotas.maths import Usage
from quotas.models import GpuType, Quota
from tenants.admin import OrganisationFilter, TenantAdmin
from tenants.models import Tenant


class QuotaInline(admin.TabularInline):
    model = Quota
    extra = 0
    fields = (
        "gpu_type",
        "nominal",
        "borrowing_limit",
        "lending_limit",
        "max_replicas_per_workload",
        "reclaim_grace_s",
        "used_gpus",
        "warming_gpus",
    )
    readonly_fields = ("used_gpus", "warming_gpus")


# Quotas are edited first-class on the tenant page. The inline is added here, not in tenants,
# so that quotas depend on tenants and never the other way round.
admin.site.unregister(Tenant)


@admin.register(Tenant)
class TenantWithQuotasAdmin(TenantAdmin):
    inlines = [QuotaInline, *TenantAdmin.inlines]

    def tracks_inline(self, model: type[models.Model]) -> bool:
        return model is Quota or super().tracks_inline(model)


@admin.register(GpuType)
class GpuTypeAdmin(admin.ModelAdmin):
    list_display = ("name", "memory_gib", "relative_throughput", "hourly_cost", "node_label")
    search_fields = ("name", "node_label")


class QuotaOrganisationFilter(OrganisationFilter):
    tenant_path = "tenant"


@admin.register(Quota)
class QuotaAdmin(HistoryAdminMixin):
    list_display = (
        "tenant",
        "gpu_type",
        "nominal",
        "borrowing_limit",
        "lending_limit",
        "used_gpus",
        "borrowed",
        "lent",
        "warming_gpus",
        "available",
        "max_replicas_per_workload",
    )
    list_filter = (QuotaOrganisationFilter, "gpu_type")
    search_fields = ("tenant__slug", "tenant__name")
    list_select_related = ("tenant", "tenant__parent", "gpu_type")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("used_gpus", "warming_gpus", "usage_at", "over_since")
    inlines = [ChangeInline]
    change_form_template = "admin/quotas/quota/change_form.html"

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # Borrowed, lent and available depend on the whole cohort: computed once per page.
        usages = Quota.objects.usages(changelist.result_list)
        for quota in changelist.result_list:
            quota.observed_usage = usages[quota.pk]
        return changelist

    @staticmethod
    def _usage(quota: Quota) -> Usage:
        usage: Usage = quota.observed_usage  # type: ignore[attr-defined]
        return usage

    @admin.display(description="borrowed")
    def borrowed(self, quota: Quota) -> int:
        return self._usage(quota).borrowed

    @admin.display(description="lent")
    def lent(self, quota: Quota) -> int:
        return self._usage(quota).lent

    @admin.display(description="still available")
    def available(self, quota: Quota) -> str:
        available = self._usage(quota).available
        return "unlimited" if available is None else str(available)

    def get_urls(self) -> list[URLPattern]:
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("<int:pk>/preview/", preview, name="quotas_quota_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """What the edited values (POSTed by the change form's Preview button, so the CSRF
        token travels in the body, never in a URL) would do to the workloads of the cohort,
        before anything is saved."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        quota = get_object_or_404(
            Quota.objects.select_related("tenant", "tenant__parent", "gpu_type"), pk=pk
        )
        if not self.has_change_permission(request, quota):
            return HttpResponse(status=403)
        form = self.get_form(request, quota)(request.POST, instance=Quota.objects.get(pk=pk))
        context = {
            **self.admin_site.each_context(request),
            "quota": quota,
            "opts": self.opts,
            "title": f"Preview: {quota}",
            "form": form,
        }
        if form.is_valid():
            try:
                context["effects"] = quota.preview(form.instance)
            except ValidationError as exc:
                context["error"] = exc
        return TemplateResponse(request, "admin/quotas/quota/preview.html", context)
