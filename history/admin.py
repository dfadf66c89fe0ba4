"""Admin support for change history: a mixin that records every admin edit with a reason, and
a read-only list of all changes."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.contenttypes.admin import GenericTabularInline
from django.db import models, transaction
from django.http import HttpRequest

from history.models import Change, record_change, snapshot


class ChangeInline(GenericTabularInline):
    model = Change
    ct_field = "content_type"
    ct_fk_field = "object_id"
    fields = ("at", "actor", "action", "changes", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-at",)
    verbose_name_plural = "history"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="changes")
    def changes(self, change: Change) -> str:
        if change.action != Change.Action.UPDATE:
            return change.get_action_display()
        return "; ".join(f"{k}: {a} → {b}" for k, (a, b) in change.changed_fields.items())


class ChangeReasonForm(forms.ModelForm):
    """Base form of tracked objects in the admin: adds the reason kept with the change."""

    change_reason = forms.CharField(
        required=False,
        max_length=500,
        label="Reason for this change",
        help_text="Kept in the history with who and when.",
    )


class HistoryAdminMixin(admin.ModelAdmin):
    """Records each add, change and delete made in the admin, with an optional reason."""

    form = ChangeReasonForm
    inlines = [ChangeInline]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = None
        if change:
            stored = type(obj).objects.filter(pk=obj.pk).first()
            before = snapshot(stored) if stored is not None else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            record_change(obj, before, request.user, form.cleaned_data.get("change_reason", ""))

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Inline edits of tracked models (quotas on the tenant page) are recorded too."""
        if not self.tracks_inline(formset.model):
            super().save_formset(request, form, formset, change)
            return
        reason = form.cleaned_data.get("change_reason", "")
        stored = {
            obj.pk: snapshot(obj)
            for obj in formset.model.objects.filter(
                pk__in=[f.instance.pk for f in formset.forms if f.instance.pk]
            )
        }
        with transaction.atomic():
            for deleted in formset.deleted_forms:
                if deleted.instance.pk:
                    record_change(
                        deleted.instance,
                        stored.get(deleted.instance.pk),
                        request.user,
                        reason,
                        deleted=True,
                    )
            super().save_formset(request, form, formset, change)
            for obj in formset.new_objects:
                record_change(obj, None, request.user, reason)
            for obj, _fields in formset.changed_objects:
                record_change(obj, stored.get(obj.pk), request.user, reason)

    def tracks_inline(self, model: type[models.Model]) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        with transaction.atomic():
            record_change(obj, snapshot(obj), request.user, deleted=True)
            super().delete_model(request, obj)


@admin.register(Change)
class ChangeAdmin(admin.ModelAdmin):
    list_display = ("at", "content_type", "object_repr", "action", "actor", "reason")
    list_filter = ("content_type", "action")
    search_fields = ("object_repr", "reason", "actor__username")
    date_hierarchy = "at"
    list_select_related = ("content_type", "actor")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
