"""Change history: who changed a tenant, quota or scaling policy, when, from what to what, why.

``record_change`` is called by every path that edits those objects (admin, API, import), after
the edit is saved and in the same transaction, so an edit and its record land together.
"""

from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.forms.models import model_to_dict


class Change(models.Model):
    """One edit of a tracked object: before and after as field dictionaries."""

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        UPDATE = "update", "Updated"
        DELETE = "delete", "Deleted"

    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    object_id = models.PositiveBigIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    object_repr = models.CharField(max_length=200)
    action = models.CharField(max_length=8, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["content_type", "object_id", "-at"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.object_repr} by {self.actor or 'system'}"

    @property
    def changed_fields(self) -> dict[str, tuple[Any, Any]]:
        """Field name -> (before, after), only for fields whose value changed."""
        before, after = self.before or {}, self.after or {}
        return {
            key: (before.get(key), after.get(key))
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        }


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The tracked state of ``instance``: its concrete fields, foreign keys as ids."""
    return model_to_dict(instance, fields=[f.name for f in instance._meta.concrete_fields])


def record_change(
    instance: models.Model,
    before: dict[str, Any] | None,
    actor: Any = None,
    reason: str = "",
    deleted: bool = False,
) -> Change | None:
    """Store one change of ``instance``; ``before`` is its snapshot before the edit (None when
    it was just created). An edit that changed nothing is not a change: nothing is stored."""
    if deleted:
        action, after = Change.Action.DELETE, None
    else:
        action = Change.Action.CREATE if before is None else Change.Action.UPDATE
        after = snapshot(instance)
        if after == before:
            return None
    return Change.objects.create(
        content_type=ContentType.objects.get_for_model(instance),
        object_id=instance.pk,
        object_repr=str(instance)[:200],
        action=action,
        actor=actor if actor is not None and actor.is_authenticated else None,
        before=before,
        after=after,
        reason=reason[:500],
    )
