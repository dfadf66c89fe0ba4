"""The policy editor and the decision log's filters."""

from __future__ import annotations

import json
import math
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.db.models import CheckConstraint, Q

from clusters.metrics import KNOWN_METRICS, unknown_metric_warning
from dashboard import replicas
from scaling.engine import ALGORITHMS
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


NUMBERS = [
    name
    for name in EDITABLE
    if name not in {"algorithm", "mode", "metric", "aggregation", "min_replicas", "max_replicas"}
]


class FiniteFloatField(forms.FloatField):
    """A float field that says a number too large for a float is out of range (Django's
    FloatField reads "1e999" as infinity and calls it "Enter a number")."""

    def validate(self, value: Any) -> None:
        if isinstance(value, float) and math.isinf(value):
            raise forms.ValidationError("Out of range: too large for a number.", code="range")
        super().validate(value)


def default_text(algorithm: str, name: str) -> str:
    """ "300 s, the HPA default": what an empty field means under ``algorithm`` (the engine's
    DEFAULTS), or "" when the algorithm has no default for it."""
    found = ALGORITHMS.get(algorithm)
    if found is None or name not in found.defaults:
        return ""
    value = found.defaults[name]
    unit = " s" if name.endswith("_s") else ""
    label = ScalingPolicy.Algorithm(algorithm).label.split(" (")[0]  # "HPA", "Predictive"
    return f"{value:g}{unit}, the {label} default"


def constraint_fields() -> dict[str, str]:
    """Each ScalingPolicy check constraint's message -> the field it is about, so its error
    shows beside that field instead of above the form."""
    about = {
        "policy_min_not_above_max": "max_replicas",
        "policy_metric_is_a_prometheus_name": "metric",
    }
    beside = {}
    for constraint in ScalingPolicy._meta.constraints:
        if not isinstance(constraint, CheckConstraint):
            continue
        field = about.get(
            constraint.name, constraint.name.removeprefix("policy_").removesuffix("_range")
        )
        beside[str(constraint.get_violation_error_message())] = field
    return beside


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
        # Text, not type=number: a browser empties a number input it cannot parse ("1e999")
        # and the server would then say "required" instead of "out of range".
        widgets = {name: forms.TextInput(attrs={"inputmode": "decimal"}) for name in NUMBERS}
        field_classes = dict.fromkeys(NUMBERS, FiniteFloatField)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["metric"].widget.attrs["list"] = "known-metrics"  # suggestions
        algorithm = str(self.data.get("algorithm") if self.is_bound else self.instance.algorithm)
        for name in NUMBERS:
            placeholder = default_text(algorithm, name)
            if placeholder and not self.fields[name].required:
                self.fields[name].widget.attrs["placeholder"] = placeholder
        self._name_bounds_unit()
        if not self.is_bound:
            self.initial["version"] = self.instance.version
            self.initial["loaded"] = json.dumps(self.loaded_values(self.instance))

    def _name_bounds_unit(self) -> None:
        """On a workload with variants, min and max bound the policy's total in replicas of
        the primary type, not machines: say so beside them (dashboard.replicas)."""
        workload = getattr(self.instance, "workload", None)
        if workload is None or not list(workload.variants.all()):
            return
        primary = workload.gpu_type.name
        for name, bound in (("min_replicas", "least"), ("max_replicas", "most")):
            self.fields[name].help_text = (
                f"In {replicas.unit(primary)}: the {bound} of the policy's total, every GPU "
                f"type counted in replicas of {primary} (each weighted by the work one of its "
                "replicas does). Each type's own bounds are in the GPU types section."
            )

    def full_clean(self) -> None:
        """Then move each constraint's error (the model's, raised without a field) beside
        the field it is about."""
        super().full_clean()
        above = self.errors.pop(NON_FIELD_ERRORS, None) if self.errors else None
        beside = constraint_fields()
        for message in [str(m) for m in above or []]:
            field = beside.get(message)
            if field in self.fields and field not in self.errors:
                self.errors[field] = self.error_class([message])
            else:
                self.errors.setdefault(NON_FIELD_ERRORS, self.error_class()).append(message)

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
