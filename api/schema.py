"""OpenAPI generation: drf-spectacular's AutoSchema plus what it cannot see by itself — the
error responses every operation may give (in the one error format), the ETag response header
and the If-Match request header."""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

ERROR_DESCRIPTIONS = {
    400: "Invalid input: `errors` names each field with its messages.",
    401: "Not authenticated: send `Authorization: Token <key>` or a session cookie.",
    403: "Authenticated, but your role does not allow this.",
    404: "Not found (also what another tenant's object answers).",
    409: "Conflicts with the current state (for example the object is still in use).",
    412: "If-Match does not match the current ETag.",
    413: "The body is larger than 1 MiB.",
    415: "Unsupported content type: send application/json.",
    429: "Too many requests: slow down (see Retry-After).",
}
WRITE_METHODS = {"POST", "PUT", "PATCH"}
CONDITIONAL_METHODS = {"PUT", "PATCH", "DELETE"}


class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField(help_text="What went wrong, in words.")
    # Shadows Serializer.errors only for the type checker; DRF pops declared fields.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False,
        child=serializers.JSONField(),
        help_text="Field name to its list of messages (validation errors only).",
    )


class ApiAutoSchema(AutoSchema):
    def _is_detail(self) -> bool:
        return "{id}" in self.path or "{pk}" in self.path

    def _uses_etags(self) -> bool:
        return hasattr(self.view, "etag") and self._is_detail()

    def error_codes(self) -> list[int]:
        codes = {401, 403, 429}
        if self._is_detail():
            codes.add(404)
        if self._is_list_view():
            codes |= {400, 404}  # a bad filter value, a page past the end
        if self.method in WRITE_METHODS:
            codes |= {400, 409, 413, 415}
        if self.method in CONDITIONAL_METHODS and self._uses_etags():
            codes.add(412)
        if self.method == "DELETE":
            codes.add(409)
        return sorted(codes)

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self.method in CONDITIONAL_METHODS and self._uses_etags():
            parameters.append(
                OpenApiParameter(
                    "If-Match",
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    description="Apply only if the object's ETag still is this value (else 412).",
                )
            )
        return parameters

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        error_ref = self.resolve_serializer(ErrorSerializer(), "response").ref
        for code in self.error_codes():
            responses.setdefault(
                str(code),
                {
                    "description": ERROR_DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": error_ref}},
                },
            )
        if self._uses_etags():
            for success in ("200", "201"):
                if success in responses:
                    responses[success]["headers"] = {
                        "ETag": {
                            "schema": {"type": "string"},
                            "description": "Send it back in If-Match to update safely.",
                        }
                    }
        return responses
