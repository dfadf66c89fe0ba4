"""Workloads, their scaling policies, and the (read-only) decisions."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers.base import (
    StrictModelSerializer,
    TenantSlugField,
    request_user,
    visible_tenants,
)
from clusters.models import Cluster
from quotas.models import GpuType
from scaling.models import Decision, ScalingPolicy, Workload
from tenants.models import Tenant

WORKLOAD_STATE_FIELDS = [
    "ready_replicas",
    "warming_replicas",
    "desired_replicas",
    "observed_at",
    "status",
]


class WorkloadSerializer(StrictModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.none())
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all())
    gpu_type = serializers.SlugRelatedField(slug_field="name", queryset=GpuType.objects.all())
    policy = serializers.SerializerMethodField(help_text="Id of its scaling policy, if any.")

    class Meta:
        model = Workload
        fields = [
            "id",
            "tenant",
            "cluster",
            "namespace",
            "deployment",
            "model_name",
            "gpu_type",
            "gpus_per_replica",
            *WORKLOAD_STATE_FIELDS,
            "policy",
        ]
        read_only_fields = ["id", *WORKLOAD_STATE_FIELDS]
        validators: list[Any] = []

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["tenant"].queryset = visible_tenants(self)  # type: ignore[attr-defined]
        return fields

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_policy(self, workload: Workload) -> int | None:
        policy = getattr(workload, "policy", None)
        return policy.pk if policy is not None else None


class ReconcileSerializer(serializers.Serializer[dict[str, Any]]):
    workload = serializers.IntegerField(help_text="Id of the workload to reconcile.")
    status = serializers.CharField(
        help_text="Always `queued`: a tick of its cluster is queued for a worker."
    )


class PolicySerializer(StrictModelSerializer):
    workload = serializers.PrimaryKeyRelatedField(queryset=Workload.objects.none())
    tenant = TenantSlugField("workload.tenant")
    warnings = serializers.ListField(
        child=serializers.CharField(),
        source="metric_warnings",
        read_only=True,
        help_text=(
            "What to know though the policy is valid: a metric that is no series the "
            "cluster's exporters are known to publish (a typo, or a custom metric)."
        ),
    )

    class Meta:
        model = ScalingPolicy
        fields = "__all__"
        read_only_fields = ["id", "version", "updated_at"]
        validators: list[Any] = []

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        user = request_user(self)
        workloads = Workload.objects.for_user(user) if user is not None else Workload.objects.none()
        fields["workload"].queryset = workloads  # type: ignore[attr-defined]
        return fields

    def validate_workload(self, workload: Workload) -> Workload:
        # A policy belongs to its workload for life; move settings by editing, not re-pointing.
        if self.instance is not None and workload.pk != self.instance.workload_id:
            raise serializers.ValidationError("A policy's workload cannot be changed.")
        return workload


class DecisionSerializer(serializers.ModelSerializer[Decision]):
    tenant: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        source="workload.tenant", slug_field="slug", read_only=True
    )
    metrics = serializers.JSONField(read_only=True)
    steps = serializers.JSONField(read_only=True)

    class Meta:
        model = Decision
        fields = [
            "id",
            "workload",
            "tenant",
            "policy",
            "policy_version",
            "at",
            "algorithm",
            "metrics",
            "current_replicas",
            "raw_desired_replicas",
            "steps",
            "final_replicas",
            "outcome",
            "reason",
        ]
        read_only_fields = fields
