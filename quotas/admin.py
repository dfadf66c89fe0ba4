from django.contrib import admin
from django.db import models

from history.admin import ChangeInline, HistoryAdminMixin
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
    )


# Quotas are edited first-class on the tenant page. The inline is added here, not in tenants,
# so that quotas depend on tenants and never the other way round.
admin.site.unregister(Tenant)


@admin.register(Tenant)
class TenantWithQuotasAdmin(TenantAdmin):
    inlines = [QuotaInline, *TenantAdmin.inlines]

    def tracks_inline(self, model: type[models.Model]) -> bool:
        return model is Quota


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
        "max_replicas_per_workload",
    )
    list_filter = (QuotaOrganisationFilter, "gpu_type")
    search_fields = ("tenant__slug", "tenant__name")
    list_select_related = ("tenant", "gpu_type")
    autocomplete_fields = ("tenant",)
    inlines = [ChangeInline]
