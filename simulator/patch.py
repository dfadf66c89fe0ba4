"""The three patch flavours the Kubernetes API accepts as JSON.

- ``application/merge-patch+json`` (RFC 7386): objects merge recursively, ``null`` deletes.
- ``application/strategic-merge-patch+json``: a merge patch whose lists of named objects
  (containers, ...) merge by ``name`` instead of being replaced; the official Python client
  sends this for a dict body.
- ``application/json-patch+json`` (RFC 6902): a list of ``add``/``remove``/``replace``/
  ``test`` operations on JSON pointers.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH)


class PatchError(ValueError):
    """The patch cannot be applied (bad operation, missing path, failed test)."""


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Return a patched deep copy of ``target``."""
    document = copy.deepcopy(target)
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise PatchError("a JSON patch must be a list of operations")
        for operation in patch:
            _json_patch_op(document, operation)
        return document
    if not isinstance(patch, dict):
        raise PatchError("a merge patch must be a JSON object")
    merged = _merge(document, patch, strategic=content_type == STRATEGIC)
    assert isinstance(merged, dict)
    return merged


def _merge(target: Any, patch: Any, strategic: bool) -> Any:
    if not isinstance(patch, dict):
        if strategic and isinstance(patch, list) and isinstance(target, list):
            return _merge_named_lists(target, patch)
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value, strategic)
    return result


def _merge_named_lists(target: list[Any], patch: list[Any]) -> list[Any]:
    named = all(isinstance(i, dict) and "name" in i for i in [*target, *patch])
    if not named:
        return copy.deepcopy(patch)
    merged = [copy.deepcopy(i) for i in target]
    index = {item["name"]: n for n, item in enumerate(merged)}
    for item in patch:
        if item["name"] in index:
            position = index[item["name"]]
            merged[position] = _merge(merged[position], item, strategic=True)
        else:
            merged.append(copy.deepcopy(item))
    return merged


def _json_patch_op(document: dict[str, Any], operation: Any) -> None:
    if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
        raise PatchError("each operation needs 'op' and 'path'")
    op, path = operation["op"], _pointer(operation["path"])
    if not path:
        raise PatchError("operations on the whole document are not supported")
    parent = _walk(document, path[:-1])
    key: Any = path[-1]
    if isinstance(parent, list):
        key = len(parent) if key == "-" else _index(key)
    if op == "test":
        if _get(parent, key) != operation.get("value"):
            raise PatchError(f"test failed at {operation['path']}")
    elif op == "remove":
        _get(parent, key)
        del parent[key]
    elif op == "replace":
        _get(parent, key)
        parent[key] = copy.deepcopy(operation.get("value"))
    elif op == "add":
        if isinstance(parent, list):
            parent.insert(key, copy.deepcopy(operation.get("value")))
        else:
            parent[key] = copy.deepcopy(operation.get("value"))
    else:
        raise PatchError(f"unsupported operation {op!r}")


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise PatchError(f"bad JSON pointer {text!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/")]


def _walk(document: Any, path: list[str]) -> Any:
    node = document
    for part in path:
        node = _get(node, _index(part) if isinstance(node, list) else part)
    return node


def _get(node: Any, key: Any) -> Any:
    try:
        return node[key]
    except (KeyError, IndexError, TypeError) as exc:
        raise PatchError(f"path not found: {key!r}") from exc


def _index(part: str) -> int:
    try:
        return int(part)
    except ValueError as exc:
        raise PatchError(f"bad list index {part!r}") from exc
