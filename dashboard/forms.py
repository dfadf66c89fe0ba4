"""The policy editor and the decision log's filters."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db.models import Q

from clusters.metrics import KNOWN_METRICS, unknown_metric_warning
from scaling.models import Decision, ScalingPolicy, Workload
from tenants.models import Tenant

# What an operator edits in the dashboard; the rest stays in the API and the admin.
EDITABLE = [
    "algorithm",
    "mode",
    "metric",
    "aggregation",
    "target",
    "scale_up_tolerance",
    "scale_down_tolerance",
    "min_replicas",
    "max_replicas",
    "scale_up_stabilization_s",
    "scale_down_stabilization_s",
    "stable_window_s",
    "panic_window_s",
    "cooldown_s",
    "cold_start_s",
    "max_metric_age_s",
    "slo_ttft_p95_s",
]


class PolicyForm(forms.ModelForm):
    """Validation is the model's own (full_clean: field validators, clean(), constraints), so
    the editor, the admin and the API refuse the same values with the same words."""

    version = forms.IntegerField(widget=forms.HiddenInput)
    loaded = forms.CharField(widget=forms.HiddenInput, required=False)
    reason = forms.CharField(
        max_length=500, required=False, help_text="Why, for the change history (optional)."
    )

    class Meta:
        model = ScalingPolicy
        fields = EDITABLE
        widgets = {
            name: forms.NumberInput(attrs={"step": "any"})
            for name in EDITABLE
            if name
            not in {"algorithm", "mode", "metric", "aggregation", "min_replicas", "max_replicas"}
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["metric"].widget.attrs["list"] = "known-metrics"  # suggestions
        if not self.is_bound:
            self.initial["version"] = self.instance.version
            self.initial["loaded"] = json.dumps(self.loaded_values(self.instance))

    def metric_warnings(self) -> list[str]:
        """The policy's warnings for the metric the form shows (as typed, once submitted)."""
        metric = self.data.get("metric") if self.is_bound else self.instance.metric
        warning = unknown_metric_warning(str(metric or ""))
        return [warning] if warning else []

    @staticmethod
    def known_metrics() -> list[str]:
        return sorted(KNOWN_METRICS)

    @staticmethod
    def loaded_values(policy: ScalingPolicy) -> dict[str, Any]:
        return {name: getattr(policy, name) for name in EDITABLE}

    def loaded_dict(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.cleaned_data.get("loaded") or "{}")
        except ValueError:
            return {}
        return (
            {k: v for k, v in loaded.items() if k in EDITABLE} if isinstance(loaded, dict) else {}
        )


class DecisionFilter(forms.Form):
    """The decision log's filters; every choice is scoped to what the user may see."""

    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none(), required=False)
    workload = forms.ModelChoiceField(queryset=Workload.objects.none(), required=False)
    outcome = forms.ChoiceField(choices=[("", "any"), *Decision.Outcome.choices], required=False)
    since = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant_field = self.fields["tenant"]
        workload_field = self.fields["workload"]
        assert isinstance(tenant_field, forms.ModelChoiceField)
        assert isinstance(workload_field, forms.ModelChoiceField)
        tenant_field.queryset = Tenant.objects.for_user(user)
        workload_field.queryset = Workload.objects.for_user(user).select_related("cluster")

    def apply(self, decisions: Any) -> Any:
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("tenant"):
            tenant = data["tenant"]  # an organisation's log includes its teams'
            decisions = decisions.filter(
                Q(workload__tenant=tenant) | Q(workload__tenant__parent=tenant)
            )
        if data.get("workload"):
            decisions = decisions.filter(workload=data["workload"])
        if data.get("outcome"):
            decisions = decisions.filter(outcome=data["outcome"])
        if data.get("since"):
            decisions = decisions.filter(at__gte=data["since"])
        if data.get("until"):
            decisions = decisions.filter(at__lte=data["until"])
        return decisions
