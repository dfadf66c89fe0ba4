"""Workloads and policies (operators of the tenant change them) and decisions (read-only)."""

import copy
import time
from typing import Any

from django.db.models import F, Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from api.filters import id_filter
from api.serializers.backtests import BacktestJobDetailSerializer, BacktestRequestSerializer
from api.serializers.scaling import (
    DecisionSerializer,
    PolicySerializer,
    ReconcileSerializer,
    WorkloadSerializer,
)
from api.serializers.whatif import WhatifRequestSerializer, WhatifResultSerializer
from api.views.base import ReadOnlyScopedViewSet, ScopedModelViewSet
from scaling import whatif
from scaling.models import Decision, ScalingPolicy, Workload, WorkloadVariant
from scaling.tasks import TooManyBacktests, request_reconcile, start_backtest
from tenants.models import Role

_SCOPE_FILTERS: dict[str, tuple[str, serializers.Field]] = {
    "tenant": ("tenant__slug", serializers.CharField(help_text="Tenant slug.")),
    "cluster": ("cluster__name", serializers.CharField(help_text="Cluster name.")),
    "gpu_type": ("gpu_type__name", serializers.CharField(help_text="GPU type name.")),
}


def _through_workload(filters: dict[str, tuple[str, serializers.Field]]) -> dict[str, Any]:
    return {name: (f"workload__{lookup}", field) for name, (lookup, field) in filters.items()}


class WorkloadViewSet(ScopedModelViewSet):
    """Inference Deployments of the tenants you can see; operators create, change and delete."""

    serializer_class = WorkloadSerializer
    write_role = Role.OPERATOR
    filter_fields = _SCOPE_FILTERS
    ordering_fields = ["id", "tenant__slug", "deployment", "namespace", "desired_replicas"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[Workload]:
        return (
            self.scoped(Workload.objects.all(), "tenant")
            .select_related("tenant", "cluster", "gpu_type", "policy")
            .prefetch_related(
                Prefetch("variants", queryset=WorkloadVariant.objects.select_related("gpu_type"))
            )
        )

    @extend_schema(
        request=None,
        responses={202: OpenApiResponse(ReconcileSerializer, description="Queued.")},
    )
    @action(detail=True, methods=["post"])
    def reconcile(self, request: Request, pk: str | None = None) -> Response:
        """Reconcile the workload now instead of at the next tick: queues a tick of its
        cluster. Operators and admins of the tenant. The tick runs in a worker; its outcome
        shows in the workload's ``status`` and, when it changes something, in ``decisions``."""
        workload = self.get_object()  # scoped (404), then the operator role (403)
        request_reconcile(workload)
        body = {"workload": workload.pk, "status": "queued"}
        return Response(ReconcileSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class PolicyViewSet(ScopedModelViewSet):
    """Scaling policies of the workloads you can see; operators change them. The ETag is the
    version, which increments on every change."""

    serializer_class = PolicySerializer
    tracked = True
    write_role = Role.OPERATOR

    def saved(self, instance: Any) -> None:
        request_reconcile(instance.workload)  # the next tick is now, not in 5 s

    filter_fields = {
        **_through_workload(_SCOPE_FILTERS),
        "workload": ("workload_id", id_filter("Workload id.")),
        "mode": ("mode", serializers.ChoiceField(choices=ScalingPolicy.Mode.choices)),
        "algorithm": (
            "algorithm",
            serializers.ChoiceField(choices=ScalingPolicy.Algorithm.choices),
        ),
    }
    ordering_fields = [
        "id",
        "workload__tenant__slug",
        "workload__deployment",
        "updated_at",
        "version",
    ]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[ScalingPolicy]:
        found = self.scoped(ScalingPolicy.objects.all(), "workload__tenant")
        # A list counts and pages over the bare rows; the paginator decorates only the page.
        return found if self.action == "list" else self.decorate(found)

    def decorate(self, queryset: QuerySet[ScalingPolicy]) -> QuerySet[ScalingPolicy]:
        # Only the tenant's slug and id are shown or needed: annotated, not loaded as workload
        # and tenant rows (building those model instances was a tenth of a page of 100).
        return queryset.annotate(
            tenant_slug=F("workload__tenant__slug"), tenant_pk=F("workload__tenant_id")
        )

    def etag(self, instance: Any) -> str:
        return f'"v{instance.version}"'

    @extend_schema(
        request=BacktestRequestSerializer,
        responses={
            202: OpenApiResponse(
                BacktestJobDetailSerializer, description="Queued: poll the job at Location."
            )
        },
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[202],
                description="URL of the job.",
            )
        ],
    )
    @action(detail=True, methods=["post"], url_path="backtests")
    def backtests(self, request: Request, pk: str | None = None) -> Response:
        """Start a back-test of the policy (optionally with some fields overridden, nothing
        saved) over a bundled trace; a worker runs it. Operators and admins of the tenant; at
        most a few queued or running per tenant (429 past that)."""
        policy = self.get_object()  # scoped (404), then the operator role (403)
        policy = ScalingPolicy.objects.select_related("workload__gpu_type", "workload__tenant").get(
            pk=policy.pk
        )
        body = BacktestRequestSerializer(
            data=request.data, policy=policy, context=self.get_serializer_context()
        )
        body.is_valid(raise_exception=True)
        try:
            job = start_backtest(
                policy,
                body.proposed_policy(),
                body.validated_data.get("overrides", {}),
                trace=body.validated_data["trace"],
                duration_s=body.validated_data["duration_s"],
                compare=body.validated_data["compare"],
                user=request.user,
            )
        except ValueError as exc:  # the replay cannot honour this policy or workload
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc
        except TooManyBacktests as exc:
            raise Throttled(detail=str(exc)) from exc
        location = reverse("backtest-detail", kwargs={"pk": job.pk}, request=request)
        data = BacktestJobDetailSerializer(job, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})

    @extend_schema(
        request=WhatifRequestSerializer,
        responses={200: OpenApiResponse(WhatifResultSerializer, description="The replay.")},
    )
    @action(detail=True, methods=["post"])
    def whatif(self, request: Request, pk: str | None = None) -> Response:
        """What the policy with some fields changed (a ``PATCH`` body, validated as one;
        nothing saved) would have wanted at each stored tick of its workload's last
        ``window`` seconds, beside the replicas that ran; the dashboard's live what-if.
        Operators and admins of the tenant."""
        found = self.get_object()  # scoped (404), then the operator role (403)
        started = time.perf_counter()
        policy = ScalingPolicy.objects.select_related("workload__gpu_type").get(pk=found.pk)
        body = WhatifRequestSerializer(
            policy, data=request.data, partial=True, context=self.get_serializer_context()
        )
        body.is_valid(raise_exception=True)
        changes = dict(body.validated_data)
        window = float(changes.pop("window", 3600))
        edited = copy.copy(policy)
        for name, value in changes.items():
            setattr(edited, name, value)
        mismatch = whatif.history_mismatch(policy, edited)
        if mismatch:
            raise ValidationError({name: [text] for name, text in mismatch.items()})
        result = whatif.signal_whatif(policy.workload, edited, window, time.time())
        result["server_ms"] = round(1000 * (time.perf_counter() - started), 1)
        return Response(WhatifResultSerializer(result).data)

    def tenant_id_of(self, obj: Any) -> int | None:
        return int(getattr(obj, "tenant_pk", None) or obj.workload.tenant_id)

    def tenant_id_in(self, validated_data: dict[str, Any]) -> int | None:
        workload = validated_data.get("workload")
        return int(workload.tenant_id) if workload is not None else None


class DecisionViewSet(ReadOnlyScopedViewSet):
    """Every decision the control loop made for the workloads you can see (append-only)."""

    serializer_class = DecisionSerializer
    filter_fields = {
        **_through_workload(_SCOPE_FILTERS),
        "workload": ("workload_id", id_filter("Workload id.")),
        "outcome": ("outcome", serializers.ChoiceField(choices=Decision.Outcome.choices)),
        "since": ("at__gte", serializers.DateTimeField(help_text="At or after this time.")),
        "until": ("at__lt", serializers.DateTimeField(help_text="Before this time.")),
    }
    ordering_fields = ["at", "id", "final_replicas", "outcome"]
    ordering = ["-at", "-id"]

    def get_queryset(self) -> QuerySet[Decision]:
        return self.scoped(Decision.objects.all(), "workload__tenant").select_related(
            "workload__tenant"
        )
