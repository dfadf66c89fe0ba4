"""Who may change what. Reading is decided earlier, by the scoped querysets: an object a user
may not see is not in the queryset, so it answers 404 before any permission is asked.

Each view names the role that writes (``write_role``: "operator", "admin", or None for staff
only) and how to find an object's tenant (``tenant_id_of``).
"""

from typing import TYPE_CHECKING, Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from tenants.models import Tenant

if TYPE_CHECKING:
    from rest_framework.views import APIView


def holds_role(user: Any, tenant_id: int | None, role: str) -> bool:
    """Whether ``user`` holds at least ``role`` on the tenant, through the tenant choke point."""
    if tenant_id is None:
        return bool(user.is_staff)
    return Tenant.objects.for_user(user, role).filter(pk=tenant_id).exists()


class WriteRole(BasePermission):
    """Safe methods pass (the queryset scoped them); writes need the view's role."""

    message = "Your role on this tenant does not allow this change."

    def has_permission(self, request: Request, view: "APIView") -> bool:
        if request.method in SAFE_METHODS:
            return True
        # Creating a staff-managed object needs staff; detail writes are decided per object,
        # after the scoped lookup, so another tenant's object still answers 404 and not 403.
        if getattr(view, "write_role", None) is None and getattr(view, "action", "") == "create":
            return bool(request.user and request.user.is_staff)
        return True

    def has_object_permission(self, request: Request, view: "APIView", obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        role = getattr(view, "write_role", None)
        if role is None:
            return bool(request.user.is_staff)
        tenant_id_of = getattr(view, "tenant_id_of")  # noqa: B009 - views declare it
        return holds_role(request.user, tenant_id_of(obj), role)
