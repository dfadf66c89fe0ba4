"""Request body parsers that refuse what Python's json module would let through.

``json`` accepts ``NaN``, ``Infinity`` and ``1e400`` (which becomes ``inf``); none of them is a
number a quota or a policy can hold, so they are refused at parse time with a clear 400, before
any field sees them. It also accepts a lone surrogate (``"\\ud800"``): not a Unicode character,
so not text any field can hold, store or repeat in an error message (UTF-8 cannot encode it).
Such a string is refused at parse time too, as a 400 naming the field it was sent to. Bodies
over ``MAX_BODY_BYTES`` answer 413 without being read in full.
"""

import json
import math
import re
from collections.abc import Mapping
from typing import IO, Any

import yaml
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import BaseParser

MAX_BODY_BYTES = 1024 * 1024
# Larger integers are no count of GPUs or replicas, and some would overflow float() later.
MAX_INTEGER = 2**63 - 1
# UTF-16 surrogates: half of a pair in JSON's \uXXXX escapes, never a character on their own.
SURROGATE = re.compile("[\ud800-\udfff]")


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    default_code = "body_too_large"


def read_limited(stream: IO[bytes] | None, parser_context: Mapping[str, Any] | None) -> bytes:
    """The whole body, refusing one over the limit from its Content-Length or while reading."""
    request = (parser_context or {}).get("request")
    if request is not None:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_BODY_BYTES:
            raise BodyTooLarge()
    if stream is None:
        return b""
    raw = stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLarge()
    return raw


def decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"The request body is not valid UTF-8: {exc.reason}.") from exc


def _refuse_constant(name: str) -> float:
    raise ParseError(f"Malformed JSON: {name} is not a number this API accepts (use a finite one).")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ParseError(f"Malformed JSON: {text} is out of range (numbers must be finite).")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_INTEGER:
        raise ParseError(f"Malformed JSON: the integer {text[:30]} is out of range.")
    return int(text)


class StrictJSONParser(BaseParser):
    """JSON with finite numbers only, at most 1 MiB."""

    media_type = "application/json"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        text = decode_utf8(read_limited(stream, parser_context))
        try:
            data = json.loads(
                text,
                parse_constant=_refuse_constant,
                parse_float=_finite_float,
                parse_int=_bounded_int,
            )
        except ValueError as exc:
            raise ParseError(f"Malformed JSON: {exc}.") from exc
        except RecursionError as exc:
            raise ParseError("Malformed JSON: nested too deeply.") from exc
        if "\\u" in text:  # only an escape can put a surrogate into decoded UTF-8
            refuse_surrogates(data)
        return data


NOT_TEXT = (
    "Not text: it holds a lone UTF-16 surrogate (an unpaired escape from \\ud800 to \\udfff), "
    "which is no Unicode character."
)


def refuse_surrogates(data: Any) -> None:
    """Raise a 400 naming where a string (or a key) holds a lone surrogate.

    The error nests like DRF's field errors (``{"overrides": {"metric": [...]}}``), so the
    client sees which field it was; a key that is itself not text is named by its parent.
    Iterative: a body nested as deep as the JSON decoder allows must not overflow here."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and SURROGATE.search(item):
            raise ValidationError(_nested(path, [NOT_TEXT]))
        if isinstance(item, dict):
            for key, value in item.items():
                if SURROGATE.search(str(key)):
                    message = f"A field name is {NOT_TEXT[0].lower()}{NOT_TEXT[1:]}"
                    raise ValidationError(_nested(path, {"non_field_errors": [message]}))
                stack.append(((*path, key), value))
        elif isinstance(item, list):
            stack.extend(((*path, index), value) for index, value in enumerate(item))


def _nested(path: tuple[str | int, ...], error: Any) -> Any:
    for key in reversed(path):
        error = {key: error}
    return error


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases: a few aliases can expand into a huge document."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise ParseError("Malformed YAML: anchors and aliases are not accepted.")
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """Parse one YAML document safely, with the JSON parser's rules on numbers."""
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        raise ParseError(f"Malformed YAML: {exc}") from exc
    except RecursionError as exc:
        raise ParseError("Malformed YAML: nested too deeply.") from exc
    _check_finite(data)
    refuse_surrogates(data)  # YAML's "\\ud800" escape makes one too
    return data


def _check_finite(data: Any) -> None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ParseError("Malformed YAML: numbers must be finite (no .nan or .inf).")
        if isinstance(item, int) and abs(item) > MAX_INTEGER:
            raise ParseError("Malformed YAML: an integer is out of range.")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class YAMLParser(BaseParser):
    """YAML bodies for the declarative configuration (same limits as JSON)."""

    media_type = "application/yaml"

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        return load_yaml(decode_utf8(read_limited(stream, parser_context)))
