"""GPU types, clusters and quotas: staff manage them; signed-in users read (quotas only of the
tenants they can see)."""

import copy
from dataclasses import asdict

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers.fleet import (
    ClusterSerializer,
    GpuTypeSerializer,
    QuotaEffectSerializer,
    QuotaSerializer,
    QuotaUsageSerializer,
)
from api.views.base import ScopedModelViewSet
from clusters.models import Cluster
from quotas.models import GpuType, Quota
from tenants.models import Tenant


class GpuTypeViewSet(ScopedModelViewSet):
    """GPU models and what they are worth. Readable by every signed-in user."""

    serializer_class = GpuTypeSerializer
    write_role = None
    ordering_fields = ["name", "memory_gib", "relative_throughput", "hourly_cost"]

    def get_queryset(self) -> QuerySet[GpuType]:
        return GpuType.objects.all()


class ClusterViewSet(ScopedModelViewSet):
    """Managed Kubernetes clusters. The bearer token is write-only: no response carries it."""

    serializer_class = ClusterSerializer
    write_role = None
    filter_fields = {"enabled": ("enabled", serializers.BooleanField())}
    ordering_fields = ["name"]

    def get_queryset(self) -> QuerySet[Cluster]:
        return Cluster.objects.all()


class QuotaViewSet(ScopedModelViewSet):
    """GPU quotas per tenant and GPU type, of the tenants you can see; staff change them."""

    serializer_class = QuotaSerializer
    tracked = True
    write_role = None
    filter_fields = {
        "tenant": ("tenant__slug", serializers.CharField()),
        "gpu_type": ("gpu_type__name", serializers.CharField()),
    }
    ordering_fields = ["id", "tenant__slug", "gpu_type__name", "nominal"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Quota]:
        tenants = Tenant.objects.for_user(self.request.user)
        return Quota.objects.filter(tenant__in=tenants).select_related(
            "tenant", "tenant__parent", "gpu_type"
        )

    @extend_schema(request=None, responses=QuotaUsageSerializer)
    @action(detail=True, methods=["get"])
    def usage(self, request: Request, pk: str | None = None) -> Response:
        """Used, borrowed, lent, warming and still available, from the last observation."""
        quota = self.get_object()
        usage = Quota.objects.usages([quota])[quota.pk]
        data = asdict(usage) | {"warming": quota.warming_gpus, "observed_at": quota.usage_at}
        return Response(QuotaUsageSerializer(data).data)

    @extend_schema(request=QuotaSerializer, responses=QuotaEffectSerializer(many=True))
    @action(detail=True, methods=["post"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        """What saving these values would do to the workloads of the quota's cohort this
        tick (allowed to grow, blocked, reclaimed), without saving anything. Staff only."""
        quota = self.get_object()
        serializer = self.get_serializer(quota, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        proposed = copy.copy(quota)
        for name, value in serializer.validated_data.items():
            setattr(proposed, name, value)
        return Response(QuotaEffectSerializer(quota.preview(proposed), many=True).data)
