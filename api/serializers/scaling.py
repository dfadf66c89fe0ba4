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
from clusters import kubernetes
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


class StatusStepSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(
        help_text="The constraint: tolerance, stabilisation, rate limit, bounds, quota..."
    )
    value = serializers.IntegerField(help_text="Replicas after this step.")
    note = serializers.CharField(help_text="Why the step gave this value.")


class StatusMetricSerializer(serializers.Serializer[Any]):
    # DRF's metaclass takes declared fields off the class, so this shadows Field.label only
    # for the type checker.
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="What the value is (the metric, or a derived signal)."
    )
    value = serializers.JSONField(
        help_text="A number, or `NaN`, `+Inf`, `-Inf` as text for a sample the engine refused."
    )
    timestamp = serializers.FloatField(allow_null=True, help_text="Sample time, Unix seconds.")
    pod = serializers.CharField(allow_null=True, help_text="The pod, for per-pod values.")


class ErrorIncidentSerializer(serializers.Serializer[Any]):
    cause = serializers.ListField(
        child=serializers.CharField(), help_text="[kind, failing call], e.g. [timeout, list pods]."
    )
    count = serializers.IntegerField(help_text="Ticks that failed of this cause in a row.")
    since = serializers.DateTimeField(help_text="When the incident started.")
    last_at = serializers.DateTimeField(help_text="The latest failing tick.")


class InfeasibleSerializer(serializers.Serializer[Any]):
    requests = serializers.IntegerField(
        help_text="Requests finished in the window whose prompt no replica prefills within "
        "the TTFT objective (alone, on an idle replica): shown, never scaled for."
    )
    total = serializers.IntegerField(help_text="Requests finished in the window.")
    at_least = serializers.BooleanField(
        help_text="True when a prompt-length bucket straddles the limit: `requests` is a floor."
    )
    window_s = serializers.FloatField(help_text="Seconds since the previous tick's reading.")
    ttft_s = serializers.FloatField(help_text="The TTFT objective (the policy's, else 2 s).")
    limit_tokens = serializers.IntegerField(help_text="The longest prompt that meets it.")
    text = serializers.CharField(
        help_text='"12 requests (8.0 %) were too long to meet a 2 s TTFT on A100-80GB".'
    )


class WorkloadStatusSerializer(serializers.Serializer[Any]):
    """The latest evaluation of the workload's policy (scaling.status.WorkloadStatus); what
    the control loop keeps for itself between ticks is not part of it."""

    at = serializers.DateTimeField(help_text="When the control loop evaluated it.")
    outcome = serializers.CharField(
        help_text="applied, held, dry-run, blocked_by_quota, error; off without an active policy."
    )
    reason = serializers.CharField(help_text="Why, in a sentence.")
    policy_version = serializers.IntegerField(allow_null=True)
    algorithm = serializers.CharField()
    current = serializers.IntegerField(
        allow_null=True, help_text="The Deployment's replicas as observed."
    )
    raw_desired = serializers.IntegerField(
        allow_null=True, help_text="What the algorithm asked for, before any constraint."
    )
    desired = serializers.IntegerField(allow_null=True, help_text="What was left after `steps`.")
    steps = StatusStepSerializer(many=True, help_text="Each constraint applied, in order.")
    metrics = StatusMetricSerializer(many=True, help_text="The metric values the decision used.")
    failure = serializers.CharField(
        help_text="The Deployment's failure condition (e.g. pods refused by a ResourceQuota)."
    )
    error = ErrorIncidentSerializer(
        allow_null=True, help_text="The ongoing incident while the workload cannot be observed."
    )
    observed_at = serializers.DateTimeField(
        allow_null=True, help_text="When the Deployment was last observed."
    )
    since = serializers.DateTimeField(
        allow_null=True, help_text="When this outcome began (the Decision that recorded it)."
    )
    evaluations = serializers.IntegerField(
        help_text="How many ticks have evaluated to this outcome since then."
    )
    infeasible = InfeasibleSerializer(
        allow_null=True,
        help_text="Requests too long for the TTFT objective since the previous tick (policies "
        "reading offered work count them); null when not counted.",
    )


_TARGET = ("cluster", "namespace", "deployment")  # what the Deployment check looks up


class WorkloadSerializer(StrictModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.none())
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all())
    gpu_type = serializers.SlugRelatedField(slug_field="name", queryset=GpuType.objects.all())
    policy = serializers.SerializerMethodField(help_text="Id of its scaling policy, if any.")
    status = WorkloadStatusSerializer(
        source="public_status",
        read_only=True,
        allow_null=True,
        help_text="The latest evaluation; null before the control loop's first.",
    )

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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """A Deployment the cluster says does not exist is refused (400 on `deployment`).
        When the cluster cannot answer the workload is saved: the control loop's status
        says what it finds."""
        attrs = super().validate(attrs)
        where = [attrs.get(k, getattr(self.instance, k, None)) for k in _TARGET]
        if self.instance is not None and where == [getattr(self.instance, k) for k in _TARGET]:
            return attrs
        cluster, namespace, name = where
        if not isinstance(cluster, Cluster) or not namespace or not name:
            return attrs  # the field errors say what is missing
        try:
            found = kubernetes.deployment_exists(cluster, str(namespace), str(name))
        except kubernetes.ClusterError:
            return attrs
        if not found:
            message = kubernetes.missing_deployment(cluster, str(namespace), str(name))
            raise serializers.ValidationError({"deployment": [message]})
        return attrs

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_policy(self, workload: Workload) -> int | None:
        policy = workload.policy_or_none
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
