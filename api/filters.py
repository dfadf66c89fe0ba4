"""Query-string filters for list endpoints, typed and documented in the schema.

A view declares ``filter_fields = {"tenant": ("tenant__slug", CharField()), ...}``: the query
parameter, the ORM lookup, and the DRF field that parses and validates the value (a bad value
answers 400 naming the parameter). Ordering is DRF's ``OrderingFilter``, except that an
unknown field answers 400 naming the allowed ones where DRF silently ignores it (a script
asking for ``?ordering=created`` would otherwise page through an order it did not ask for).
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.filters import BaseFilterBackend, OrderingFilter
from rest_framework.request import Request
from rest_framework.views import APIView

# Ids are positive and fit the database's bigint: larger values would overflow the driver.
MAX_ID = 2**63 - 1


def id_filter(help_text: str = "") -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text=help_text)


_SCHEMA_TYPES: dict[type[serializers.Field], dict[str, Any]] = {
    serializers.IntegerField: {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    serializers.BooleanField: {"type": "boolean"},
    serializers.DateTimeField: {"type": "string", "format": "date-time"},
}


def _schema_of(field: serializers.Field) -> dict[str, Any]:
    if isinstance(field, serializers.ChoiceField):
        return {"type": "string", "enum": list(field.choices)}
    for field_class, schema in _SCHEMA_TYPES.items():
        if isinstance(field, field_class):
            return dict(schema)  # a copy: the schema generator may annotate it
    return {"type": "string"}


class FieldFilterBackend(BaseFilterBackend):
    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: APIView) -> Any:
        specs: dict[str, tuple[str, serializers.Field]] = getattr(view, "filter_fields", {})
        lookups: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for name, (lookup, field) in specs.items():
            raw = request.query_params.get(name)
            if raw is None:
                continue
            try:
                lookups[lookup] = field.run_validation(raw)
            except serializers.ValidationError as exc:
                errors[name] = [str(message) for message in exc.detail]
        if errors:
            raise serializers.ValidationError(errors)
        return queryset.filter(**lookups)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        specs: dict[str, tuple[str, serializers.Field]] = getattr(view, "filter_fields", {})
        return [
            {
                "name": name,
                "required": False,
                "in": "query",
                "description": field.help_text or f"Only items whose {name} is this value.",
                "schema": _schema_of(field),
            }
            for name, (_, field) in specs.items()
        ]


class StrictOrderingFilter(OrderingFilter):
    def remove_invalid_fields(
        self, queryset: QuerySet[Any], fields: Iterable[str], view: APIView, request: Request
    ) -> list[str]:
        fields = list(fields)
        allowed = [name for name, _ in self.get_valid_fields(queryset, view, {"request": request})]
        unknown = [term for term in fields if term.lstrip("-") not in allowed]
        if unknown:
            names = ", ".join(allowed)
            raise serializers.ValidationError(
                {
                    self.ordering_param: [
                        f"Cannot order by {', '.join(unknown)[:100]}; use one of {names} "
                        "(prefix - for descending, several separated by commas)."
                    ]
                }
            )
        return fields

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        allowed = list(getattr(view, "ordering_fields", None) or [])
        for parameter in parameters:
            if parameter["name"] == self.ordering_param and allowed:
                parameter["description"] = (
                    f"Order by {', '.join(allowed)} (prefix - for descending; several "
                    "separated by commas). Any other field answers 400."
                )
        return parameters
