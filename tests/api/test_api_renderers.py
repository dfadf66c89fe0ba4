"""The orjson renderer writes what DRF's JSON renderer writes."""

import datetime as dt
import decimal
import uuid
from typing import Any

from django.utils.translation import gettext_lazy
from rest_framework import renderers
from rest_framework.utils.serializer_helpers import ReturnDict

from api.renderers import JSONRenderer

SAMPLE = {
    "count": 3,
    "next": None,
    "results": [
        {"id": 1, "name": "Équipe 東京 🚀", "target": 12.5, "ratio": 0.1, "ok": True},
        {"line": "a\u2028b\u2029c", "quote": 'say "hi"\n', "empty": [], "nested": {"1": [1, 2]}},
        {
            "at": dt.datetime(2026, 11, 22, 11, 0, 0, 123456, tzinfo=dt.UTC),
            "day": dt.date(2026, 11, 22),
            "cost": decimal.Decimal("2.20"),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "detail": gettext_lazy("Not found."),
        },
    ],
}


def test_output_is_byte_for_byte_drfs() -> None:
    data: Any = ReturnDict(SAMPLE, serializer=None)  # type: ignore[call-overload]
    assert JSONRenderer().render(data) == renderers.JSONRenderer().render(data)


def test_an_indent_asked_for_is_honoured() -> None:
    media_type = "application/json; indent=2"
    ours = JSONRenderer().render({"a": [1]}, media_type, {})
    assert ours == renderers.JSONRenderer().render({"a": [1]}, media_type, {})
    assert b"\n  " in ours
