"""GPU types, clusters and quotas: managed by staff, read by every signed-in user (quotas only
for the tenants the user may see)."""

from typing import Any

from rest_framework import serializers

from api.serializers.base import StrictModelSerializer
from clusters.models import Cluster
from quotas.models import GpuType, Quota
from tenants.models import Tenant


class GpuTypeSerializer(StrictModelSerializer):
    hourly_cost = serializers.DecimalField(
        max_digits=8,
        decimal_places=2,
        min_value=0,
        required=False,
        coerce_to_string=False,
        help_text="USD per GPU hour.",
    )

    class Meta:
        model = GpuType
        fields = ["id", "name", "memory_gib", "relative_throughput", "hourly_cost", "node_label"]
        read_only_fields = ["id"]


class ClusterSerializer(StrictModelSerializer):
    token = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=8192,
        help_text="Bearer token, stored encrypted and never returned; empty removes it.",
    )
    has_credential = serializers.BooleanField(read_only=True)
    non_model_fields = ("token",)

    class Meta:
        model = Cluster
        fields = [
            "id",
            "name",
            "api_url",
            "kubeconfig_context",
            "verify_tls",
            "metrics_source",
            "metrics_url",
            "pool_url",
            "enabled",
            "has_credential",
            "token",
        ]
        read_only_fields = ["id"]

    def create(self, validated_data: dict[str, Any]) -> Cluster:
        token = validated_data.pop("token", None)
        cluster = Cluster(**validated_data)
        if token is not None:
            cluster.credential = token
        cluster.save()
        return cluster

    def update(self, instance: Cluster, validated_data: dict[str, Any]) -> Cluster:
        token = validated_data.pop("token", None)
        if token is not None:
            instance.credential = token
        updated: Cluster = super().update(instance, validated_data)
        return updated


class QuotaSerializer(StrictModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())
    gpu_type = serializers.SlugRelatedField(slug_field="name", queryset=GpuType.objects.all())

    class Meta:
        model = Quota
        fields = [
            "id",
            "tenant",
            "gpu_type",
            "nominal",
            "borrowing_limit",
            "lending_limit",
            "max_replicas_per_workload",
            "reclaim_grace_s",
            "over_since",
        ]
        read_only_fields = ["id", "over_since"]
        validators: list[Any] = []


class QuotaUsageSerializer(serializers.Serializer[Any]):
    """What a quota's tenant uses of it, as the control loop last observed (GPUs)."""

    used = serializers.IntegerField()
    borrowed = serializers.IntegerField(help_text="Beyond nominal, from the cohort's pool.")
    lent = serializers.IntegerField(help_text="Of its lendable GPUs, in use by others.")
    warming = serializers.IntegerField(help_text="Held by replicas not ready yet.")
    available = serializers.IntegerField(
        allow_null=True, help_text="What it may still take now; null: unlimited."
    )
    observed_at = serializers.DateTimeField(allow_null=True)


class QuotaEffectSerializer(serializers.Serializer[Any]):
    """How a proposed quota change would treat one workload this tick."""

    workload = serializers.IntegerField()
    name = serializers.CharField()
    tenant = serializers.CharField()
    current = serializers.IntegerField(help_text="Replicas it holds.")
    wanted = serializers.IntegerField(help_text="Replicas its autoscaler wants.")
    before = serializers.IntegerField(help_text="Replicas granted under the current quotas.")
    after = serializers.IntegerField(help_text="Replicas granted with the change.")
    effect = serializers.ChoiceField(
        choices=["allowed to grow", "blocked", "reclaimed", "unchanged"]
    )
