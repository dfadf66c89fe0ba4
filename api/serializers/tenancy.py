"""Tenants and memberships. Related objects are named by their natural keys (slugs,
usernames), the same keys the declarative configuration uses."""

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from api.serializers.base import StrictModelSerializer, visible_tenants
from clusters.models import Cluster
from tenants.models import Membership, Namespace, Tenant


class TenantSerializer(StrictModelSerializer):
    # "parent" shadows Field.parent only for the type checker; DRF pops declared fields.
    parent = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="slug",
        queryset=Tenant.objects.all(),
        allow_null=True,
        required=False,
        help_text="Slug of the organisation this team belongs to; null for an organisation.",
    )

    class Meta:
        model = Tenant
        fields = [
            "id",
            "slug",
            "name",
            "parent",
            "priority",
            "fair_share_weight",
            "active",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]


class MembershipSerializer(StrictModelSerializer):
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.filter(is_active=True)
    )
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.none())

    class Meta:
        model = Membership
        fields = ["id", "user", "tenant", "role"]
        read_only_fields = ["id"]
        # Uniqueness is checked by the model's full_clean, with its own message.
        validators: list[Any] = []

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # Tenants the user cannot see read as missing ("does not exist"), never as forbidden.
        fields["tenant"].queryset = visible_tenants(self)  # type: ignore[attr-defined]
        return fields


class NamespaceSerializer(StrictModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all())

    class Meta:
        model = Namespace
        fields = ["id", "tenant", "cluster", "name"]
        read_only_fields = ["id"]
        validators: list[Any] = []
