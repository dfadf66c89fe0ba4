from typing import Any

from django.contrib import admin
from django.db import models
from django.db.models import Q, QuerySet

from history.admin import ChangeInline, HistoryAdminMixin
from tenants.models import Membership, Namespace, Tenant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


class NamespaceInline(admin.TabularInline):
    model = Namespace
    extra = 0
    fields = ("cluster", "name")
    verbose_name_plural = (
        "namespaces (the control loop scales only in these; with none on a cluster, the "
        "namespace named after the slug)"
    )


class OrganisationFilter(admin.SimpleListFilter):
    """Filters by organisation: the organisation itself and its teams."""

    title = "organisation"
    parameter_name = "organisation"
    # The field through which the filtered model reaches its tenant ("" for Tenant itself).
    tenant_path = ""

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(t.pk), t.slug) for t in Tenant.objects.organisations()]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        own = f"{self.tenant_path}__pk" if self.tenant_path else "pk"
        parent = f"{self.tenant_path}__parent_id" if self.tenant_path else "parent_id"
        return queryset.filter(Q(**{own: self.value()}) | Q(**{parent: self.value()}))


@admin.register(Tenant)
class TenantAdmin(HistoryAdminMixin):
    list_display = ("slug", "name", "parent", "priority", "fair_share_weight", "active")
    list_filter = ("active", OrganisationFilter)
    search_fields = ("slug", "name")
    list_select_related = ("parent",)
    prepopulated_fields = {"slug": ("name",)}
    inlines = [NamespaceInline, MembershipInline, ChangeInline]

    def tracks_inline(self, model: type[models.Model]) -> bool:
        return model is Namespace


@admin.register(Namespace)
class NamespaceAdmin(HistoryAdminMixin):
    list_display = ("name", "cluster", "tenant")
    list_filter = ("cluster",)
    search_fields = ("name", "tenant__slug", "cluster__name")
    list_select_related = ("cluster", "tenant")
    autocomplete_fields = ("tenant",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role")
    list_filter = ("role",)
    search_fields = ("user__username", "tenant__slug")
    list_select_related = ("user", "tenant")
    autocomplete_fields = ("user", "tenant")
