"""``/api/v1/config/``: the declarative fleet configuration over HTTP (staff only).

GET exports it (JSON, or YAML with ``?format=yaml`` or ``Accept: application/yaml``); POST
imports a document (JSON or YAML body) and answers the diff; ``?dry_run=1`` only shows it.
"""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.exceptions import validation_body
from api.fleet_config import ConfigInvalid, ImportResult, export_config, import_config
from api.parsers import StrictJSONParser, YAMLParser
from api.renderers import JSONRenderer, YAMLRenderer
from api.schema import ErrorSerializer


class ChangeSerializer(serializers.Serializer[Any]):
    action = serializers.ChoiceField(choices=["create", "update"])
    kind = serializers.CharField()
    key = serializers.CharField()
    # Shadows Serializer.fields only for the type checker; DRF pops declared fields.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.JSONField(allow_null=True)),
        help_text="Field name to [before, after].",
    )


class ImportResultSerializer(serializers.Serializer[Any]):
    dry_run = serializers.BooleanField()
    summary = serializers.CharField()
    unchanged = serializers.IntegerField()
    changes = ChangeSerializer(many=True)


def _result_data(result: ImportResult) -> dict[str, Any]:
    return {
        "dry_run": result.dry_run,
        "summary": result.summary,
        "unchanged": result.unchanged,
        "changes": [
            {"action": c.action, "kind": c.kind, "key": c.key, "fields": c.fields}
            for c in result.changes
        ],
    }


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    try:
        return bool(serializers.BooleanField().run_validation(raw))
    except ValidationError as exc:
        raise ValidationError({name: exc.detail}) from exc


class ConfigView(APIView):
    permission_classes = [IsAdminUser]
    parser_classes = [StrictJSONParser, YAMLParser]
    renderer_classes = [JSONRenderer, YAMLRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # DRF answers an unknown ?format= with 404 (and ignores an empty one); it is a bad
        # parameter, so 400. The error itself is then rendered as JSON (force=True).
        if force:
            return (JSONRenderer(), JSONRenderer.media_type)
        if request.query_params.get("format", "json") not in {"json", "yaml"}:
            raise ValidationError({"format": ["Use json or yaml."]})
        return super().perform_content_negotiation(request, force)

    @extend_schema(
        summary="Export the fleet configuration",
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "yaml"]),
        ],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "application/yaml"): OpenApiTypes.OBJECT,
            400: OpenApiResponse(ErrorSerializer, "Unknown format."),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(export_config())

    @extend_schema(
        summary="Import a fleet configuration (idempotent); dry_run=1 only shows the diff",
        request={
            "application/json": OpenApiTypes.OBJECT,
            "application/yaml": OpenApiTypes.OBJECT,
        },
        parameters=[
            OpenApiParameter(
                "dry_run",
                OpenApiTypes.BOOL,
                description="Validate and show the diff; change nothing.",
            )
        ],
        responses={
            200: ImportResultSerializer,
            400: OpenApiResponse(ErrorSerializer, "The document is invalid; nothing changed."),
        },
    )
    def post(self, request: Request) -> Response:
        dry_run = _flag(request, "dry_run")
        try:
            result = import_config(request.data, dry_run=dry_run, actor=request.user)
        except ConfigInvalid as exc:
            body = validation_body(exc.errors)
            body["detail"] = "The configuration is invalid; nothing was changed. " + body["detail"]
            return Response(body, status=400)
        return Response(_result_data(result))
