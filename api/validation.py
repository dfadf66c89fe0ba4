"""Model validation with every message on the field it is about.

``full_clean`` reports a violated check constraint as an error of the whole object; a client
(or a config file) is better served by "lending_limit: The lending limit must be between 0 and
nominal GPUs." So constraints are validated one by one and each message is put on the one
field its condition tests, when there is one.
"""

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import Q


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
        try:
            constraint.validate(type(instance), instance)
        except DjangoValidationError as exc:
            errors.setdefault(_only_field(constraint), []).extend(exc.messages)
    return errors


def _only_field(constraint: models.BaseConstraint) -> str:
    """The one field a constraint tests (the left-hand side of its lookups), so its message
    lands on that field: "lending_limit <= nominal" is about the lending limit. When it tests
    several fields (a unique pair) it is the object's error."""
    if isinstance(constraint, models.UniqueConstraint):
        names = set(constraint.fields)
    elif isinstance(constraint, models.CheckConstraint):
        names = _fields_in(constraint.condition)
    else:
        return NON_FIELD_ERRORS
    return names.pop() if len(names) == 1 else NON_FIELD_ERRORS


def _fields_in(node: Any) -> set[str]:
    if isinstance(node, Q):
        return set().union(*(_fields_in(child) for child in node.children))
    if isinstance(node, tuple):
        return {str(node[0]).split("__")[0]}
    return set()
