"""GPU types, clusters and quotas: staff manage them; signed-in users read (quotas only of the
tenants they can see)."""

from django.db.models import QuerySet
from rest_framework import serializers

from api.serializers.fleet import ClusterSerializer, GpuTypeSerializer, QuotaSerializer
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
        return Quota.objects.filter(tenant__in=tenants).select_related("tenant", "gpu_type")
