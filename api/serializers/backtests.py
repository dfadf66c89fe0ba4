"""Back-test jobs: the request that starts one, and the job as clients poll it."""

import copy
from dataclasses import fields
from typing import Any

from rest_framework import serializers

from api.serializers.base import StrictInput, StrictModelSerializer
from scaling.engine import ALGORITHMS, PolicyParams
from scaling.models import BacktestJob, ScalingPolicy

# Policy fields a back-test may change: the engine's parameters and the pool settings.
OVERRIDABLE = [f.name for f in fields(PolicyParams)] + ["max_concurrency", "routing"]


class PolicyOverridesSerializer(StrictModelSerializer):
    """Policy fields to change for this back-test only, validated like a policy PATCH (on the
    stored policy with the changes applied); nothing is saved to the policy."""

    class Meta:
        model = ScalingPolicy
        fields = OVERRIDABLE
        validators: list[Any] = []

    def get_fields(self) -> dict[str, serializers.Field]:
        found = super().get_fields()
        for field in found.values():
            field.required = False  # a partial change, whatever the model requires
        return found


class BacktestRequestSerializer(StrictInput, serializers.Serializer[dict[str, Any]]):
    """What to replay: a bundled trace, how much of it, policy changes, algorithms to compare."""

    trace = serializers.ChoiceField(
        choices=list(BacktestJob.TRACES.items()),
        default="conv",
        help_text="Bundled request trace to replay (Azure LLM inference 2023).",
    )
    duration_s = serializers.FloatField(
        min_value=BacktestJob.MIN_DURATION_S,
        max_value=BacktestJob.MAX_DURATION_S,
        default=BacktestJob.DEFAULT_DURATION_S,
        help_text="Seconds of trace to replay, from its start.",
    )
    overrides = PolicyOverridesSerializer(
        required=False, help_text="Policy fields to change for this back-test only."
    )
    compare = serializers.ListField(
        child=serializers.ChoiceField(choices=list(ALGORITHMS)),
        required=False,
        default=list,
        max_length=len(ALGORITHMS),
        help_text="Other algorithms to replay with the same policy otherwise.",
    )

    def __init__(self, *args: Any, policy: ScalingPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy
        # The overrides are validated on the stored policy with them applied.
        self.fields["overrides"].instance = policy

    def validate_compare(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Name each algorithm at most once.")
        return value

    def proposed_policy(self) -> ScalingPolicy:
        """The stored policy with the overrides applied (not saved)."""
        proposed = copy.copy(self.policy)
        for name, value in self.validated_data.get("overrides", {}).items():
            setattr(proposed, name, value)
        return proposed  # type: ignore[return-value]


class BacktestJobSerializer(StrictModelSerializer):
    """A job as listed: what was asked, where it is, how it ended (``result`` in the detail)."""

    workload = serializers.IntegerField(source="policy.workload_id", read_only=True)
    tenant: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        source="policy.workload.tenant", slug_field="slug", read_only=True
    )
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Username of who started it (null once that user is deleted).",
    )
    compare = serializers.ListField(
        child=serializers.ChoiceField(choices=list(ALGORITHMS)),
        read_only=True,
        help_text="Other algorithms replayed.",
    )
    progress = serializers.FloatField(read_only=True, min_value=0.0, max_value=1.0)

    class Meta:
        model = BacktestJob
        fields = [
            "id",
            "policy",
            "workload",
            "tenant",
            "policy_version",
            "trace",
            "duration_s",
            "compare",
            "overrides",
            "status",
            "progress",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class BacktestJobDetailSerializer(BacktestJobSerializer):
    result = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text=(
            "Per run: SLO attainment, TTFT, GPU-hours and their cost (cost_usd, cost_per_hour "
            "of trace, cost_per_1k_requests) at price_per_gpu_hour, the GPU type's hourly "
            'cost (price_source "given") or, when that is 0, an assumed price ("assumed"); '
            "the oracle's cost_usd and replay_cost_usd likewise. docs/backtest.md."
        ),
    )

    class Meta(BacktestJobSerializer.Meta):
        fields = [*BacktestJobSerializer.Meta.fields, "params", "replay", "result"]
        read_only_fields = fields
