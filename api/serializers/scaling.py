"""Workloads, their scaling policies, and the (read-only) decisions."""

import copy
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from api.serializers.base import (
    StrictModelSerializer,
    TenantSlugField,
    request_user,
    visible_tenants,
)
from api.validation import model_errors
from clusters import kubernetes
from clusters.models import Cluster
from quotas.models import GpuType
from scaling.models import Decision, ScalingPolicy, Workload, WorkloadVariant
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


# The unit of a policy's replica counts (docs/api.md, "Replica counts of a mixed pool").
PRIMARY_UNIT = (
    "In replicas of the workload's `gpu_type`; on a workload with `variants`, the policy's "
    "total in replicas of that primary type, each other type's replicas weighted by the work "
    "one of them does beside a primary one (so 1 A100 may count as 3 L4s): not a machine "
    "count. Each type's own replicas are in `status.types`."
)


class TypeStatusSerializer(serializers.Serializer[Any]):
    gpu_type = serializers.CharField(help_text="The GPU type's name (the primary first).")
    deployment = serializers.CharField(help_text="Its Deployment in the workload's namespace.")
    ready = serializers.IntegerField(help_text="Ready replicas of this type as observed.")
    current = serializers.IntegerField(
        allow_null=True,
        help_text="Its Deployment's replicas (spec) as observed; null in statuses recorded "
        "before this field. Plain replicas of this type, like `ready` and `desired`.",
    )
    desired = serializers.IntegerField(
        help_text="Replicas of this type the mix set for it this tick (after any quota cut)."
    )
    warning = serializers.CharField(
        help_text="Non-empty when the Deployment's pods are not pinned to the type's nodes "
        "(nodeSelector or required node affinity on nvidia.com/gpu.product)."
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
        allow_null=True,
        help_text="The Deployment's replicas as observed. " + PRIMARY_UNIT,
    )
    raw_desired = serializers.IntegerField(
        allow_null=True,
        help_text="What the algorithm asked for, before any constraint. " + PRIMARY_UNIT,
    )
    desired = serializers.IntegerField(
        allow_null=True, help_text="What was left after `steps`. " + PRIMARY_UNIT
    )
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
    types = TypeStatusSerializer(
        many=True, help_text="A workload on several GPU types: each type; empty otherwise."
    )
    mix = serializers.CharField(
        help_text="The mix chosen for the policy's total, e.g. \"1 x A100-80GB + 4 x "
        'A40-48GB: $3.40/h; all A100-80GB would be $6.60/h"; empty without variants.'
    )


NON_FIELD = str(api_settings.NON_FIELD_ERRORS_KEY)
_TARGET = ("cluster", "namespace", "deployment")  # what the Deployment check looks up


class VariantSerializer(StrictModelSerializer):
    """A further GPU type the workload runs on: its own Deployment in the workload's namespace
    (pinned to the type's nodes by its node label) and its own replica bounds."""

    gpu_type = serializers.SlugRelatedField(slug_field="name", queryset=GpuType.objects.all())

    class Meta:
        model = WorkloadVariant
        fields = ["gpu_type", "deployment", "min_replicas", "max_replicas"]
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's own validation needs the workload: WorkloadSerializer runs it.
        return attrs


class WorkloadSerializer(StrictModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.none())
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all())
    gpu_type = serializers.SlugRelatedField(slug_field="name", queryset=GpuType.objects.all())
    variants = VariantSerializer(
        many=True,
        required=False,
        help_text=(
            "Further GPU types it runs on, one Deployment each; `gpu_type` and `deployment` "
            "are the primary. The control loop splits the policy's replicas across them at "
            "the least cost per hour. Writing the list replaces the workload's variants."
        ),
    )
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
            "variants",
            *WORKLOAD_STATE_FIELDS,
            "policy",
        ]
        read_only_fields = ["id", *WORKLOAD_STATE_FIELDS]
        validators: list[Any] = []
        extra_kwargs = {
            name: {"help_text": f"{what}, as the control loop last observed it. {PRIMARY_UNIT}"}
            for name, what in (
                ("ready_replicas", "Ready replicas"),
                ("warming_replicas", "Replicas starting"),
                ("desired_replicas", "Replicas asked for"),
            )
        }

    non_model_fields = ("variants",)

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
        variants = attrs.get("variants", self._kept_variants(attrs))
        if variants:
            self._validate_variants(variants, attrs)
        if self.instance is not None and where == [getattr(self.instance, k) for k in _TARGET]:
            return attrs
        cluster, namespace, name = where
        if not isinstance(cluster, Cluster) or not namespace or not name:
            return attrs  # the field errors say what is missing
        message = _missing(cluster, str(namespace), str(name))
        if message:
            raise serializers.ValidationError({"deployment": [message]})
        return attrs

    def _kept_variants(self, attrs: dict[str, Any]) -> list[dict[str, Any]]:
        """The stored variants, to validate again when what they depend on changes (the
        cluster, namespace, primary Deployment or type) and the body does not replace them."""
        moved = [k for k in (*_TARGET, "gpu_type") if k in attrs]
        if self.instance is None or all(attrs[k] == getattr(self.instance, k) for k in moved):
            return []
        return [
            {f: getattr(v, f) for f in VariantSerializer.Meta.fields}
            for v in self.instance.variants.all()
        ]

    def _validate_variants(self, variants: list[dict[str, Any]], attrs: dict[str, Any]) -> None:
        """Each variant as the model validates it, against the workload as it will be
        (namespace, primary type and Deployment, one owner per Deployment), its Deployment
        found in the workload's namespace, and no type or Deployment listed twice."""
        workload = copy.copy(self.instance) if self.instance is not None else Workload()
        for name, value in attrs.items():
            if name != "variants":
                setattr(workload, name, value)
        errors: dict[str, dict[str, list[str]]] = {}
        seen: dict[str, set[Any]] = {"gpu_type": set(), "deployment": set()}
        for index, data in enumerate(variants):
            variant = WorkloadVariant(workload=workload, **data)
            found = {
                NON_FIELD if name == NON_FIELD_ERRORS else name: messages
                for name, messages in model_errors(variant).items()
                if name != "workload"  # not saved yet on create: it is, with the variants
            }
            for key in seen:
                if data.get(key) in seen[key]:
                    found.setdefault(key, []).append("Listed twice in this workload's variants.")
                seen[key].add(data.get(key))
            if "deployment" not in found and isinstance(workload.cluster, Cluster):
                message = _missing(workload.cluster, workload.namespace, variant.deployment)
                if message:
                    found["deployment"] = [message]
            if found:
                errors[str(index)] = found
        if errors:  # keyed by position, as DRF keys a nested list's own errors
            raise serializers.ValidationError({"variants": errors})

    @transaction.atomic
    def create(self, validated_data: dict[str, Any]) -> Workload:
        variants = validated_data.pop("variants", [])
        workload: Workload = super().create(validated_data)
        _replace_variants(workload, variants)
        return workload

    @transaction.atomic
    def update(self, instance: Workload, validated_data: dict[str, Any]) -> Workload:
        variants = validated_data.pop("variants", None)
        workload: Workload = super().update(instance, validated_data)
        if variants is not None:
            _replace_variants(workload, variants)
        return workload

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_policy(self, workload: Workload) -> int | None:
        policy = workload.policy_or_none
        return policy.pk if policy is not None else None


def _missing(cluster: Cluster, namespace: str, name: str) -> str:
    """Why the Deployment is refused ("not found"), or "" when it exists or the cluster cannot
    say (the workload is saved; the control loop's status says what it finds)."""
    try:
        found = kubernetes.deployment_exists(cluster, namespace, name)
    except kubernetes.ClusterError:
        return ""
    return "" if found else kubernetes.missing_deployment(cluster, namespace, name)


def _replace_variants(workload: Workload, variants: list[dict[str, Any]]) -> None:
    workload.variants.all().delete()
    WorkloadVariant.objects.bulk_create(WorkloadVariant(workload=workload, **v) for v in variants)
    # The representation reads the new list, not a prefetched old one.
    getattr(workload, "_prefetched_objects_cache", {}).pop("variants", None)


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
    metrics = serializers.JSONField(
        read_only=True,
        help_text=(
            "values: the metric values the decision used; types (a workload on several GPU "
            "types only): each type's gpu_type, deployment, ready, current and desired "
            "replicas as the decision set them (machines, not primary-type equivalents)."
        ),
    )
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
        extra_kwargs = {
            "current_replicas": {"help_text": "Replicas before the decision. " + PRIMARY_UNIT},
            "raw_desired_replicas": {"help_text": "What the algorithm asked for. " + PRIMARY_UNIT},
            "final_replicas": {"help_text": "Replicas after it. " + PRIMARY_UNIT},
            "reason": {
                "help_text": "Why, in a sentence; on a workload with variants it leads with "
                'the mix chosen, e.g. "1 x A100-80GB + 2 x A40-48GB: $4.10/h; ...".'
            },
        }
