"""Tenants (organisations and their teams) and who may see or change them.

The one choke point for tenant access is ``Tenant.objects.for_user(user)`` (and
``Membership.objects.role_of``): HTML views, API views and WebSocket consumers all scope through
it, so a list is as safe as a detail page.
"""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from clusters.models import Cluster

# A DNS-1123 label: the slug names Kubernetes namespaces.
DNS_LABEL_REGEX = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
dns_label_validator = RegexValidator(
    DNS_LABEL_REGEX,
    "Use lowercase letters, digits and hyphens, starting and ending with a letter or digit "
    "(it names Kubernetes namespaces).",
)


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


# What each role may do, highest last: an operator can do all a viewer can.
ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class TenantQuerySet(models.QuerySet["Tenant"]):
    def for_user(self, user: Any, min_role: str = Role.VIEWER) -> "TenantQuerySet":
        """Tenants ``user`` holds at least ``min_role`` on; staff see every tenant.

        A role on an organisation carries over to its teams.
        """
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_staff:
            return self
        roles = [role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[Role(min_role)]]
        held = Membership.objects.filter(user=user, role__in=roles).values("tenant_id")
        return self.filter(Q(pk__in=held) | Q(parent_id__in=held))

    def organisations(self) -> "TenantQuerySet":
        return self.filter(parent__isnull=True)


class Tenant(models.Model):
    """An organisation (no parent) or a team inside one. An organisation is a quota cohort:
    its teams share the GPUs they lend."""

    slug = models.CharField(max_length=63, unique=True, validators=[dns_label_validator])
    name = models.CharField(max_length=200)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="teams",
        help_text="The organisation this team belongs to; empty for an organisation.",
    )
    priority = models.IntegerField(
        default=0, help_text="Higher wins when tenants compete for scarce GPUs."
    )
    fair_share_weight = models.FloatField(
        default=1.0, help_text="Share of borrowable GPUs relative to other teams (> 0)."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(slug__regex=DNS_LABEL_REGEX),
                name="tenant_slug_dns_label",
                violation_error_message="The slug must be a valid DNS label.",
            ),
            models.CheckConstraint(
                condition=Q(fair_share_weight__gt=0),
                name="tenant_fair_share_weight_positive",
                violation_error_message="The fair-share weight must be greater than 0.",
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        if self.parent_id is not None:
            if self.parent_id == self.pk:
                raise ValidationError({"parent": "A tenant cannot be its own organisation."})
            parent = Tenant.objects.filter(pk=self.parent_id).values("parent_id").first()
            if parent and parent["parent_id"] is not None:
                raise ValidationError(
                    {"parent": "Only two levels: a team's organisation must not have a parent."}
                )
            if self.pk and self.teams.exists():
                raise ValidationError(
                    {"parent": "This tenant is an organisation with teams; it cannot have one."}
                )
        # The slug is the tenant's default namespace: it must not be another tenant's already.
        taken = Namespace.objects.filter(name=self.slug).exclude(tenant_id=self.pk)
        if self.slug and taken.exists():
            raise ValidationError(
                {"slug": "A namespace of this name belongs to another tenant on some cluster."}
            )

    @property
    def cohort_id(self) -> int | None:
        """The organisation whose teams share lent GPUs, or None outside any organisation."""
        return self.parent_id


class MembershipQuerySet(models.QuerySet["Membership"]):
    def role_of(self, user: Any, tenant: Tenant) -> str | None:
        """The highest role ``user`` holds on ``tenant`` (directly or via its organisation)."""
        if not user.is_authenticated or not user.is_active:
            return None
        if user.is_staff:
            return Role.ADMIN
        roles = self.filter(user=user, tenant_id__in=[tenant.pk, tenant.parent_id]).values_list(
            "role", flat=True
        )
        return max(roles, key=lambda role: ROLE_RANK[Role(role)], default=None)


class Membership(models.Model):
    """A user's role on a tenant: viewers read, operators change workloads and policies,
    admins also manage memberships."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["tenant__slug", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "tenant"],
                name="membership_one_per_user_and_tenant",
                violation_error_message="This user already has a role on this tenant.",
            ),
            models.CheckConstraint(
                condition=Q(role__in=Role.values),
                name="membership_role_valid",
                violation_error_message="Unknown role.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.tenant}"


# Namespaces the cluster itself uses: never a tenant's, whatever a mapping says. Kubernetes
# reserves the "kube-" prefix for its own namespaces (kube-system, kube-public, kube-node-lease).
RESERVED_NAMESPACES = frozenset({"default"})
RESERVED_NAMESPACE_PREFIX = "kube-"


def is_reserved_namespace(name: str) -> bool:
    return name in RESERVED_NAMESPACES or name.startswith(RESERVED_NAMESPACE_PREFIX)


@dataclass(frozen=True)
class Ownership:
    """Who owns which namespace on one cluster: the explicit mappings, and the tenants whose
    mappings there replace the default (the namespace named after the tenant's slug)."""

    owner_of: dict[str, int]  # namespace -> tenant id, from the mappings
    mapped_tenants: frozenset[int]

    def owns(self, tenant: Tenant, namespace: str) -> bool:
        """Whether ``tenant`` owns ``namespace`` on this cluster:

        1. a reserved namespace is nobody's;
        2. a mapped namespace is its mapping's tenant's;
        3. otherwise a tenant with no mapping on this cluster owns the namespace named after
           its slug (slugs are unique, so no two tenants share a default).
        """
        if is_reserved_namespace(namespace):
            return False
        owner = self.owner_of.get(namespace)
        if owner is not None:
            return owner == tenant.pk
        return tenant.pk not in self.mapped_tenants and namespace == tenant.slug


class NamespaceQuerySet(models.QuerySet["Namespace"]):
    def ownership(self, cluster_id: int) -> Ownership:
        """Who owns what on ``cluster_id`` (one query)."""
        rows = list(self.filter(cluster_id=cluster_id).values_list("name", "tenant_id"))
        return Ownership(dict(rows), frozenset(tenant for _, tenant in rows))


class Namespace(models.Model):
    """A Kubernetes namespace a tenant owns on a cluster. The control loop scales Deployments
    and writes ResourceQuotas only in namespaces their tenant owns; only staff map them.

    A tenant with no mapping on a cluster owns there the namespace named after its slug; a
    mapping on a cluster replaces that default there.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="namespaces")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="namespaces")
    name = models.CharField(max_length=63, validators=[dns_label_validator])

    objects = NamespaceQuerySet.as_manager()

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "name"],
                name="namespace_one_owner_per_cluster",
                violation_error_message="This namespace already belongs to a tenant on this "
                "cluster.",
            ),
            models.CheckConstraint(
                condition=Q(name__regex=DNS_LABEL_REGEX),
                name="namespace_name_dns_label",
                violation_error_message="The name must be a valid DNS label.",
            ),
            models.CheckConstraint(
                condition=~Q(name__in=RESERVED_NAMESPACES)
                & ~Q(name__startswith=RESERVED_NAMESPACE_PREFIX),
                name="namespace_not_reserved",
                violation_error_message="default and kube-* namespaces belong to the cluster, "
                "never to a tenant.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.name} ({self.tenant})"

    def clean(self) -> None:
        # Another tenant's slug is that tenant's default namespace everywhere: mapping it to
        # someone else would hand over a namespace its workloads may already run in.
        if Tenant.objects.filter(slug=self.name).exclude(pk=self.tenant_id).exists():
            raise ValidationError(
                {"name": "A namespace named after another tenant is that tenant's own."}
            )
