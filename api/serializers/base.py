"""The base every API serializer builds on: unknown fields refused, the model validated.

The model's own validation (field validators, ``clean()``, constraints with their plain-words
messages, uniqueness) runs in ``validate()`` on a copy of the object with the changes applied,
so bad input answers 400 naming the field and the database is never the one to refuse.
"""

import copy
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.db import models
from django.utils import timezone
from rest_framework import serializers
from rest_framework.settings import api_settings

from api.validation import model_errors
from tenants.models import Tenant


def request_user(serializer: serializers.BaseSerializer[Any]) -> Any:
    request = serializer.context.get("request")
    return getattr(request, "user", None)


def visible_tenants(serializer: serializers.BaseSerializer[Any]) -> models.QuerySet[Tenant]:
    """Tenants the requesting user may see; none while the schema is being generated."""
    user = request_user(serializer)
    return Tenant.objects.for_user(user) if user is not None else Tenant.objects.none()


UNKNOWN_FIELD = "Unknown field; see the schema for the fields you can set."
READ_ONLY_FIELD = "Read-only: it cannot be set or changed; leave it out of the body."


class StrictInput:
    """Refuses unknown and read-only fields (naming them) and values of the wrong JSON type.

    A read-only field in a body (a policy's ``version``, its ``tenant``) is refused rather
    than ignored: a client sending one believes it changes something, and a 200 that changed
    nothing would tell it so. On an update, a read-only field with exactly its current value
    is accepted, so a representation read with GET can be edited and sent back with PUT."""

    fields: Any
    instance: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            refused = self._refused_fields(data)
            if refused:
                raise serializers.ValidationError(refused)
            wrong = {
                name: [error]
                for name, value in data.items()
                if (error := json_type_error(self.fields[name], value)) is not None
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)  # type: ignore[misc]

    def _refused_fields(self, data: Mapping[Any, Any]) -> dict[str, list[str]]:
        refused: dict[str, list[str]] = {}
        current: dict[str, Any] | None = None
        for key in sorted(data, key=str):
            field = self.fields.get(key)
            if field is None:
                refused[str(key)] = [UNKNOWN_FIELD]
            elif field.read_only:
                if current is None:
                    instance = getattr(self, "instance", None)
                    current = {} if instance is None else self.to_representation(instance)  # type: ignore[attr-defined]
                if key not in current or current[key] != data[key]:
                    refused[str(key)] = [READ_ONLY_FIELD]
        return refused


class StrictModelSerializer(StrictInput, serializers.ModelSerializer[Any]):
    # Model field names that are set on the model by ``create``/``update`` themselves.
    non_model_fields: tuple[str, ...] = ()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        """DRF's representation, with plain columns read directly.

        A policy has ~35 fields, and DRF's generic per-field path (source traversal, SkipField,
        PKOnlyObject checks) made a page of 100 cost ~80 ms; reading plain scalar columns
        straight off the instance gives the same values at a fraction of the cost. The
        readers are built once per serializer class (building a ModelSerializer's fields
        from the model is a millisecond per request) when every field's representation is
        independent of the request; see ``_class_readers``.
        """
        readers = getattr(self, "_readers", None)
        if readers is None:
            readers = self._readers = _class_readers(type(self)) or [
                _reader(field) for field in self._readable_fields
            ]
        return {name: read(instance) for name, read in readers}

    def build_standard_field(self, field_name: str, model_field: Any) -> tuple[type, dict]:
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        if issubclass(field_class, serializers.DateTimeField):
            # Times are answered in settings.TIME_ZONE (UTC; the API never activates another):
            # a fixed zone spares DRF a lookup of the active zone for every value it renders.
            kwargs["default_timezone"] = timezone.get_default_timezone()
        return field_class, kwargs

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        self.full_clean_model(attrs)
        return attrs

    def full_clean_model(self, attrs: dict[str, Any]) -> None:
        """Validate a copy of the object with ``attrs`` applied, as the model would."""
        model: type[models.Model] = self.Meta.model
        instance = copy.copy(self.instance) if self.instance is not None else model()
        names = {field.name for field in model._meta.concrete_fields}
        for name, value in attrs.items():
            if name in names and name not in self.non_model_fields:
                setattr(instance, name, value)
        errors = {_error_key(name): messages for name, messages in model_errors(instance).items()}
        if errors:
            raise serializers.ValidationError(errors)


# JSON types each kind of field accepts. DRF is lenient ("5" for an integer, 1 for a string,
# "yes" for a boolean); the schema promises exact JSON types, so input is held to them.
_NUMBER = (int, float)
_JSON_TYPES: list[tuple[type[serializers.Field], tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, _NUMBER, "a number"),
    (serializers.DecimalField, _NUMBER, "a number"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.SlugRelatedField, (str,), "a string"),
    (serializers.PrimaryKeyRelatedField, (int,), "an integer id"),
]


def json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why ``value`` is the wrong JSON type for ``field``, or None when it is right."""
    if value is None:
        return None  # the field's own allow_null check answers this one
    for field_class, types, name in _JSON_TYPES:
        if isinstance(field, field_class):
            wrong_bool = isinstance(value, bool) and bool not in types
            if wrong_bool or not isinstance(value, types):
                return f"Expected {name}, got {type(value).__name__}."
            # DRF reads "" as null for nullable relations (a form habit); in JSON, send null.
            if value == "" and isinstance(field, serializers.RelatedField):
                return "Expected a name, got an empty string; send null for none."
            return None
    return None


def _error_key(name: str) -> str:
    return str(api_settings.NON_FIELD_ERRORS_KEY) if name == NON_FIELD_ERRORS else name


# BigAutoField ids (DRF 3.16; the stubs do not know it yet).
_BigIntegerField: type[serializers.IntegerField] = getattr(serializers, "BigIntegerField")  # noqa: B009

# Field classes whose representation depends only on the value, never on the request or the
# serializer's context: readers of serializers made only of these are shared by every request.
_CONTEXT_FREE: tuple[type[serializers.Field], ...] = (
    serializers.IntegerField,
    _BigIntegerField,
    serializers.FloatField,
    serializers.BooleanField,
    serializers.CharField,
    serializers.ChoiceField,
    serializers.DateTimeField,
    serializers.DecimalField,
    serializers.JSONField,
    serializers.ListField,
    serializers.ModelField,
    serializers.ReadOnlyField,
    serializers.SlugRelatedField,
    serializers.PrimaryKeyRelatedField,
)
_SHARED_READERS: dict[type, list[tuple[str, Callable[[Any], Any]]] | None] = {}


def _class_readers(cls: type["StrictModelSerializer"]) -> list[tuple[str, Any]] | None:
    """The readers of ``cls``, built once from a context-free instance (no request kept
    alive); None when some field's representation may depend on the context."""
    if cls not in _SHARED_READERS:
        fields = list(cls()._readable_fields)
        shared = all(type(field) in _CONTEXT_FREE or _is_tenant_slug(field) for field in fields)
        _SHARED_READERS[cls] = [_reader(field) for field in fields] if shared else None
    return _SHARED_READERS[cls]


def _is_tenant_slug(field: serializers.Field) -> bool:
    return isinstance(field, TenantSlugField)


class TenantSlugField(serializers.CharField):
    """The slug of the object's tenant, reached through ``path`` (``workload.tenant``).

    Lists annotate it as ``tenant_slug`` (``F("workload__tenant__slug")``) instead of loading
    the workload and tenant rows: building those model instances was a tenth of a page of 100
    policies. An object without the annotation (just created) follows the relation.
    """

    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = path.split(".")
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, instance: Any) -> str:
        slug = getattr(instance, "tenant_slug", None)
        if slug is None:
            target = instance
            for attr in self.path:
                target = getattr(target, attr)
            slug = target.slug
        return str(slug)


# Exact field classes whose representation of a non-null column value is this conversion.
_PLAIN: dict[type[serializers.Field], Callable[[Any], Any]] = {
    serializers.IntegerField: int,
    serializers.FloatField: float,
    serializers.BooleanField: bool,
    serializers.CharField: str,
    serializers.ChoiceField: str,
}


def _coerced_to_string(field: serializers.Field) -> bool:
    return bool(getattr(field, "coerce_to_string", api_settings.COERCE_BIGINT_TO_STRING))


def _reader(field: serializers.Field) -> tuple[str, Callable[[Any], Any]]:
    name = str(field.field_name)
    convert = _PLAIN.get(type(field))
    if type(field) is _BigIntegerField and not _coerced_to_string(field):
        convert = int
    attrs = field.source_attrs
    if convert is not None and len(attrs) == 1:
        attr = attrs[0]

        def read_plain(instance: Any) -> Any:
            value = getattr(instance, attr)
            return None if value is None else convert(value)

        return name, read_plain

    def read_generic(instance: Any) -> Any:
        attribute = field.get_attribute(instance)
        return None if attribute is None else field.to_representation(attribute)

    return name, read_generic
