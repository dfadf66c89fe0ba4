"""One error format for every API failure: ``{"detail": "...", "errors": {...}}``.

``detail`` is a sentence for a human; ``errors`` (validation failures only) keeps DRF's field
error shape, field name to a list of messages, so scripts can point at the field. Errors the
database would raise are mapped to 4xx here as a last line of defence; serializers validate
first so the database is never the one to refuse.
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

NOT_FOUND = "Not found."


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the object."
    default_code = "conflict"


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = (
        "If-Match does not match the current ETag: the object changed since you read it. "
        "Read it again and retry."
    )
    default_code = "precondition_failed"


def _as_api_exception(exc: Exception) -> Exception:
    # Http404 from a scoped queryset and a missing id must read the same: no model name.
    if isinstance(exc, Http404 | exceptions.NotFound):
        return exceptions.NotFound(NOT_FOUND)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, ProtectedError | RestrictedError):
        objects: Any = (
            exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
        )
        used_by = sorted({str(type(obj)._meta.verbose_name_plural) for obj in objects})
        return Conflict(
            f"Still in use by {', '.join(str(name) for name in used_by)}; remove those first."
        )
    if isinstance(exc, IntegrityError):
        # Only a race gets here (validation runs first): another request wrote the same key.
        return Conflict("Another change to the same data happened at the same time; retry.")
    return exc


def _first_message(errors: Any, path: str = "") -> str:
    """The first message in a (possibly nested) DRF error structure, prefixed by its field."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = "" if key == "non_field_errors" else str(key)
            return _first_message(value, f"{path}.{name}" if path and name else path or name)
    if isinstance(errors, list) and errors:
        return _first_message(errors[0], path)
    return f"{path}: {errors}" if path else str(errors)


def _count_fields(errors: Any) -> int:
    return len(errors) if isinstance(errors, dict) else 1


def validation_body(errors: Any) -> dict[str, Any]:
    """The response body for field errors (also used by the config import)."""
    if not isinstance(errors, dict):
        errors = {"non_field_errors": errors if isinstance(errors, list) else [errors]}
    detail = "Invalid input: " + _first_message(errors)
    extra = _count_fields(errors) - 1
    if extra > 0:
        detail += f" (and {extra} more field{'s' if extra > 1 else ''})"
    return {"detail": detail, "errors": errors}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = validation_body(exc.detail)
    elif isinstance(exc, exceptions.APIException):
        response.data = {"detail": str(exc.detail)}
    return response
