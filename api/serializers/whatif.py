"""The live what-if through the API: a policy's fields as a PATCH would change them (nothing
saved), replayed on the workload's stored signals (``scaling.whatif.signal_whatif``)."""

from typing import Any

from rest_framework import serializers

from api.serializers.scaling import PolicySerializer

WINDOWS = (900, 3600, 21600)


class WhatifRequestSerializer(PolicySerializer):
    """A policy ``PATCH`` body (validated as one: unknown and read-only fields refused, the
    model's checks) plus the window to replay."""

    window = serializers.IntegerField(
        required=False,
        write_only=True,
        help_text="Seconds of stored history to replay: 900, 3600 (the default) or 21600.",
    )

    class Meta(PolicySerializer.Meta):
        pass

    def validate_window(self, window: int) -> int:
        if window not in WINDOWS:
            raise serializers.ValidationError("Pick 900, 3600 or 21600 seconds.")
        return window


class WhatifCurveSummarySerializer(serializers.Serializer[Any]):
    scale_events = serializers.IntegerField(help_text="Changes of the replica count.")
    gpu_hours = serializers.FloatField(help_text="Replicas x GPUs per replica x time.")
    hours = serializers.FloatField(
        help_text="Hours the stored ticks cover (gaps of more than 120 s left out)."
    )
    cost_usd = serializers.FloatField(
        allow_null=True,
        help_text="USD over the window: gpu_hours x price_per_gpu_hour; null where it cannot "
        "be priced (cost_note says why).",
    )
    cost_per_hour = serializers.FloatField(
        allow_null=True, help_text="USD per hour: cost_usd over `hours`; null likewise."
    )
    cost_text = serializers.CharField(
        allow_blank=True,
        help_text='The page\'s words: "$2.64 over the window, $2.64/h" (with "at an assumed '
        '$2.20/GPU-h" for an assumed price); empty when there is no cost.',
    )


class WhatifSummarySerializer(serializers.Serializer[Any]):
    observed = WhatifCurveSummarySerializer()
    whatif = WhatifCurveSummarySerializer()


class WhatifSloSerializer(serializers.Serializer[Any]):
    signal = serializers.CharField(help_text="`ttft` or `queue`: the stored p95 estimated.")
    objective_s = serializers.FloatField(help_text="The policy's objective for that p95.")
    observed = serializers.FloatField(help_text="Share of ticks whose observed p95 met it.")
    whatif = serializers.FloatField(
        help_text="Estimated share under the edited policy's replica counts (an estimate)."
    )
    ticks = serializers.IntegerField(help_text="Ticks with the signal and load known.")
    method = serializers.CharField(help_text="How the estimate is made, in words.")


class WhatifResultSerializer(serializers.Serializer[Any]):
    """The same body as the dashboard's ``/workloads/<id>/whatif/``."""

    window_s = serializers.FloatField()
    t = serializers.ListField(child=serializers.FloatField(), help_text="Tick times (Unix s).")
    observed = serializers.ListField(
        child=serializers.IntegerField(), help_text="Replicas that ran at each tick."
    )
    whatif = serializers.ListField(
        child=serializers.IntegerField(), help_text="Replicas the edited policy would want."
    )
    reasons = serializers.ListField(child=serializers.CharField())
    summary = WhatifSummarySerializer()
    slo = WhatifSloSerializer(
        allow_null=True,
        help_text="Estimated SLO attainment; null where no honest estimate can be made "
        "(no latency objective, or no stored latency signal in the window).",
    )
    slo_note = serializers.CharField(help_text="Why there is no estimate, or what it assumes.")
    price_per_gpu_hour = serializers.FloatField(
        help_text="USD per GPU-hour the costs use: the GPU type's hourly_cost, or an assumed "
        "catalogue price when that is 0 (price_source)."
    )
    price_source = serializers.ChoiceField(
        choices=["given", "assumed"],
        help_text="`given`: the GPU type's hourly_cost; `assumed`: a catalogue price "
        "(docs/backtest.md, Money).",
    )
    cost_note = serializers.CharField(
        allow_blank=True,
        help_text="Why the costs are null (a workload on several GPU types: its stored replica "
        "counts are primary-type equivalents; no price known), else empty.",
    )
    server_ms = serializers.FloatField()
