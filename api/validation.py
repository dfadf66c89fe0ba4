"""Model validation with every message on the field it is about.

``full_clean`` reports a violated check constraint as an error of the whole object; a client
(or a config file) is better served by "lending_limit: The lending limit must be between 0 and
nominal GPUs." So constraints are validated one by one and each message is put on the one
field its condition tests, when there is one.
"""

import math
import operator
from collections.abc import Callable
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import F, Q


def model_errors(instance: models.Model) -> dict[str, list[str]]:
    """Field name (or NON_FIELD_ERRORS) to messages; empty when ``instance`` is valid."""
    errors: dict[str, list[str]] = {}
    try:
        instance.full_clean(validate_constraints=False)
    except DjangoValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    constraints: list[Any] = list(type(instance)._meta.constraints)
    for constraint in constraints:
        # As Django's forms do, a constraint on a field that failed already is not checked:
        # its message would be noise, and a uniqueness answer about a value the user may not
        # use (another tenant's namespace) tells what exists there.
        if _constrained_fields(constraint) & errors.keys():
            continue
        if isinstance(constraint, models.CheckConstraint):
            holds = _holds(constraint.condition, instance)
            if holds is not None:  # decided here, without a query
                if not holds:
                    message = constraint.get_violation_error_message()
                    errors.setdefault(_only_field(constraint), []).append(message)
                continue
        try:
            constraint.validate(type(instance), instance)
        except DjangoValidationError as exc:
            errors.setdefault(_only_field(constraint), []).extend(exc.messages)
    return errors


# A check constraint is a condition the database evaluates; Django validates one by sending a
# query per constraint (a policy has 20: most of the time of an API PATCH). Simple conditions
# (comparisons of a column with a constant or another column, isnull, in; and, or, not) are
# evaluated here instead, with SQL's three-valued logic: a comparison with NULL is unknown,
# and a check passes unless its condition is false. Anything else goes to the database.
UNKNOWN = "unknown"
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "exact": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


class _Undecidable(Exception):
    pass


def _holds(condition: Any, instance: models.Model) -> bool | None:
    """Whether ``condition`` holds for ``instance``; None when only the database can tell."""
    try:
        return _evaluate(condition, instance) is not False
    except _Undecidable:
        return None


def _evaluate(node: Any, instance: models.Model) -> bool | str:
    if isinstance(node, Q):  # (a bare expression, not a Q, is left to the database)
        values = [_evaluate(child, instance) for child in node.children]
        if node.connector == Q.AND:
            result: bool | str = (
                False if False in values else (UNKNOWN if UNKNOWN in values else True)
            )
        else:
            result = True if True in values else (UNKNOWN if UNKNOWN in values else False)
        if node.negated and result is not UNKNOWN:
            result = not result
        return result
    if not isinstance(node, tuple):
        raise _Undecidable
    lookup, rhs = node
    name, _, kind = str(lookup).partition("__")
    kind = kind or "exact"
    value = _column(instance, name)
    if kind == "isnull":
        return (value is None) is bool(rhs)
    if isinstance(rhs, F):
        rhs = _column(instance, rhs.name)
    elif hasattr(rhs, "resolve_expression"):
        raise _Undecidable
    if value is None or rhs is None:
        return UNKNOWN
    try:
        if kind == "in":
            return value in rhs
        compare = _COMPARE.get(kind)
        if compare is None:
            raise _Undecidable
        return bool(compare(value, rhs))
    except TypeError as exc:  # a value that failed its field's own validation
        raise _Undecidable from exc


def _column(instance: models.Model, name: str) -> Any:
    """A concrete column's value; NaN and related paths are left to the database."""
    try:
        field = instance._meta.get_field(name)
    except Exception as exc:
        raise _Undecidable from exc
    if not isinstance(field, models.Field) or not field.concrete:
        raise _Undecidable
    value = getattr(instance, field.attname)
    if (isinstance(value, float) and math.isnan(value)) or hasattr(value, "resolve_expression"):
        raise _Undecidable  # PostgreSQL orders NaN above every number; F() is not a value
    return value


def _only_field(constraint: models.BaseConstraint) -> str:
    """The one field a constraint tests (the left-hand side of its lookups), so its message
    lands on that field: "lending_limit <= nominal" is about the lending limit. When it tests
    several fields (a unique pair) it is the object's error."""
    names = _constrained_fields(constraint)
    return names.pop() if len(names) == 1 else NON_FIELD_ERRORS


def _constrained_fields(constraint: models.BaseConstraint) -> set[str]:
    if isinstance(constraint, models.UniqueConstraint):
        return set(constraint.fields)
    if isinstance(constraint, models.CheckConstraint):
        return _fields_in(constraint.condition)
    return set()


def _fields_in(node: Any) -> set[str]:
    if isinstance(node, Q):  # (a bare expression, not a Q, is left to the database)
        return set().union(*(_fields_in(child) for child in node.children))
    if isinstance(node, tuple):
        return {str(node[0]).split("__")[0]}
    return set()
