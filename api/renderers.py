"""YAML responses for the declarative configuration (``?format=yaml`` or Accept)."""

from collections.abc import Mapping
from typing import Any

import yaml
from rest_framework.renderers import BaseRenderer


def dump_yaml(data: Any) -> str:
    # Keys in the order the document defines them, so diffs between exports stay small.
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return dump_yaml(data).encode()
