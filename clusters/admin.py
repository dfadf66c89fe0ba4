from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from clusters.models import Cluster


def _url_fields_assume_https(field: models.Field, **kwargs: Any) -> forms.Field | None:
    # A URL typed without a scheme is an HTTPS URL (Django 6's default, chosen explicitly).
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class ClusterForm(forms.ModelForm):
    token = forms.CharField(
        label="bearer token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; leave empty to keep the current one.",
    )
    clear_token = forms.BooleanField(label="remove the stored token", required=False)

    class Meta:
        model = Cluster
        formfield_callback = _url_fields_assume_https
        fields = (
            "name",
            "api_url",
            "kubeconfig_context",
            "verify_tls",
            "metrics_source",
            "metrics_url",
            "pool_url",
            "enabled",
        )


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    form = ClusterForm
    list_display = (
        "name",
        "api_url",
        "kubeconfig_context",
        "metrics_source",
        "has_token",
        "enabled",
    )
    list_filter = ("enabled", "metrics_source")
    search_fields = ("name", "api_url")

    @admin.display(boolean=True, description="token stored")
    def has_token(self, cluster: Cluster) -> bool:
        return cluster.has_credential

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if form.cleaned_data.get("clear_token"):
            obj.credential = ""
        elif form.cleaned_data.get("token"):
            obj.credential = form.cleaned_data["token"]
        super().save_model(request, obj, form, change)
