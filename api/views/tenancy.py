"""Tenants (staff manage, members read) and memberships (tenant admins manage)."""

from collections.abc import Mapping
from typing import Any, cast

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.fields import empty
from rest_framework.request import Request
from rest_framework.response import Response

from api.permissions import WriteRole, holds_role
from api.serializers.tenancy import MembershipSerializer, NamespaceSerializer, TenantSerializer
from api.views.base import ScopedModelViewSet
from tenants.models import Membership, Namespace, Role, Tenant


class TenantViewSet(ScopedModelViewSet):
    """Tenants you hold a role on (with the teams of your organisations); staff see all and
    are the only ones who create, change or delete tenants."""

    serializer_class = TenantSerializer
    tracked = True
    write_role = None
    filter_fields = {
        "parent": ("parent__slug", serializers.CharField(help_text="Teams of this organisation.")),
        "active": ("active", serializers.BooleanField()),
    }
    ordering_fields = ["slug", "name", "priority", "created_at"]

    def get_queryset(self) -> QuerySet[Tenant]:
        return Tenant.objects.for_user(self.request.user).select_related("parent")

    def tenant_id_of(self, obj: Any) -> int | None:
        return int(obj.pk)


class MembershipViewSet(ScopedModelViewSet):
    """Who holds which role on the tenants you can see; tenant admins (directly or through
    the organisation) add, change and remove them."""

    serializer_class = MembershipSerializer
    write_role = Role.ADMIN
    filter_fields = {
        "tenant": ("tenant__slug", serializers.CharField()),
        "user": ("user__username", serializers.CharField()),
        "role": ("role", serializers.ChoiceField(choices=Role.choices)),
    }
    ordering_fields = ["id", "tenant__slug", "user__username", "role"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Membership]:
        tenants = Tenant.objects.for_user(self.request.user)
        return Membership.objects.filter(tenant__in=tenants).select_related("tenant", "user")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.check_may_add_members(request.data)
        return super().create(request, *args, **kwargs)

    def check_may_add_members(self, data: Any) -> None:
        """Decide on the tenant before the username is looked up: to whoever may not add
        members there, a username that exists and one that does not get the same answer
        (the same 403, or the same 400 naming only the tenant), so usernames cannot be
        enumerated. The tenant itself resolves among the tenants the user may see, so an
        invisible tenant reads as a missing one."""
        if not isinstance(data, Mapping):
            return  # the serializer refuses the body as a whole, looking nothing up
        field = cast(MembershipSerializer, self.get_serializer()).fields["tenant"]
        try:
            tenant = field.run_validation(data.get("tenant", empty))
        except ValidationError as exc:
            raise ValidationError({"tenant": exc.detail}) from exc
        if not holds_role(self.request.user, tenant.pk, Role.ADMIN):
            raise PermissionDenied(WriteRole.message)


class NamespaceViewSet(ScopedModelViewSet):
    """The Kubernetes namespaces each tenant you can see owns per cluster: the only ones its
    workloads may name and the control loop will scale in. Staff map them; a tenant with no
    mapping on a cluster owns there the namespace named after its slug."""

    serializer_class = NamespaceSerializer
    tracked = True
    write_role = None
    filter_fields = {
        "tenant": ("tenant__slug", serializers.CharField()),
        "cluster": ("cluster__name", serializers.CharField()),
    }
    ordering_fields = ["id", "name", "tenant__slug", "cluster__name"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Namespace]:
        return self.scoped(Namespace.objects.all(), "tenant").select_related("tenant", "cluster")
