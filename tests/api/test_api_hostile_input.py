"""Hostile input, sent to every field of every writable endpoint the OpenAPI schema lists:
a JSON 4xx naming the field, never a 5xx, and nothing written.

The endpoints and their fields are read from the schema (and the configuration document from
an export), not listed by hand, so a field or an endpoint added later is covered too.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

SURROGATE = '"\\ud800"'  # JSON text: a lone high surrogate escape
WRITES = ("post", "put", "patch")


def all_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in connection.introspection.table_names(cursor):
            if table != "django_session":
                cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
                counts[table] = cursor.fetchone()[0]
    return counts


@pytest.fixture
def staff(fleet: Any, client_for: Any) -> APIClient:
    return client_for(fleet.users["staff"])


@pytest.fixture
def schema(staff: APIClient) -> dict[str, Any]:
    return dict(staff.get("/api/v1/schema/?format=json").json())


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].split("/")[-1]]
    for combined in ("allOf", "oneOf", "anyOf"):
        if combined in node:  # drf-spectacular wraps nested serializers and enums this way
            return resolve(schema, node[combined][0])
    return node


def field_paths(schema: dict[str, Any], node: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    """The path of every field of a body schema, nested objects' fields included."""
    node = resolve(schema, node)
    for name, prop in node.get("properties", {}).items():
        if prop.get("readOnly"):
            continue
        inner = resolve(schema, prop)
        if inner.get("properties"):
            yield from ((name, *rest) for rest in field_paths(schema, inner))
        yield (name,)


def body_with(path: tuple[str, ...], value: str, listed: int | None = None) -> str:
    """A JSON body with ``value`` (JSON text) at ``path``; the level ``listed`` holds a list of
    one item (a configuration section)."""
    marker = "@@hostile@@"
    body: Any = marker
    for depth in reversed(range(len(path))):
        body = {path[depth]: [body] if listed == depth + 1 else body}
    return json.dumps(body).replace(f'"{marker}"', value)


def url_of(staff: APIClient, path: str) -> str:
    if "{id}" not in path:
        return path
    listing = staff.get(path.split("{id}")[0]).json()
    return path.replace("{id}", str(listing["results"][0]["id"]))


def writable_operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method in WRITES:
                content = operation.get("requestBody", {}).get("content", {})
                yield method, path, content.get("application/json", {}).get("schema", {})


def config_paths(staff: APIClient) -> Iterator[tuple[str, ...]]:
    """Every field of every item of every section of the exported configuration."""
    document = staff.get("/api/v1/config/").json()
    for section, items in document.items():
        if not isinstance(items, list):
            yield (section,)
            continue
        for item in items:
            for name, value in item.items():
                if isinstance(value, dict):
                    yield from ((section, name, inner) for inner in value)
                yield (section, name)


def assert_refused(response: Any, where: str) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (where, response.status_code, response.content)
    assert response["Content-Type"].startswith("application/json"), where
    data = response.json()  # valid UTF-8 JSON, whatever was sent
    assert isinstance(data["detail"], str) and data["detail"], where
    return dict(data)


def test_a_lone_surrogate_in_any_field_of_any_write_is_a_400_naming_it(
    fleet: Any, staff: APIClient, schema: dict[str, Any]
) -> None:
    before = all_counts()
    sent = 0
    for method, path, body_schema in writable_operations(schema):
        config = path == "/api/v1/config/"
        if not body_schema:
            continue  # an action that reads no body (reconcile) never parses one
        url = url_of(staff, path)
        paths = list(config_paths(staff) if config else field_paths(schema, body_schema))
        for field in [*paths, ()]:
            for value in (SURROGATE, f"[{SURROGATE}]", '"ok\\udc00tail"'):
                body = body_with(field, value, listed=1 if config else None)
                response = getattr(staff, method)(url, data=body, content_type="application/json")
                data = assert_refused(response, f"{method} {path} {field}")
                if field and not config:
                    errors: Any = data["errors"]
                    for name in field:  # the error is on the field, nested as the body is
                        assert name in errors, (method, path, field, data)
                        errors = errors[name]
                sent += 1
            key_body = '{"\\ud800": 1}'
            response = getattr(staff, method)(url, data=key_body, content_type="application/json")
            assert_refused(response, f"{method} {path} key")
    assert sent > 300  # every resource, the config sections, the actions
    assert all_counts() == before


def test_the_choice_fields_the_issue_named_answer_400_not_500(fleet: Any, staff: APIClient) -> None:
    policy = f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/"
    cases = [
        (policy, "mode"),
        (policy, "algorithm"),
        (policy, "aggregation"),
        ("/api/v1/memberships/1/", "role"),
        (f"/api/v1/clusters/{fleet.cluster.pk}/", "metrics_source"),
    ]
    for url, field in cases:
        response = staff.patch(
            url, data=body_with((field,), SURROGATE), content_type="application/json"
        )
        assert response.status_code == 400, (field, response.content)
        assert "surrogate" in response.json()["errors"][field][0]
    response = staff.post(
        f"{policy}backtests/",
        data=body_with(("trace",), SURROGATE),
        content_type="application/json",
    )
    assert response.status_code == 400 and "trace" in response.json()["errors"]


def test_yaml_surrogate_escapes_are_refused_too(fleet: Any, staff: APIClient) -> None:
    before = all_counts()
    body = 'tenants:\n- slug: "\\ud800"\n  name: x\n'
    response = staff.post("/api/v1/config/", data=body, content_type="application/yaml")
    data = assert_refused(response, "yaml")
    assert "tenants" in data["errors"]
    assert all_counts() == before


GARBAGE = ["%ED%A0%80", "%FF%FE", "%00", "%C0%AF", "%E2%80%A8", "'%22%7B%7D", "%F0%9F%9A%80" * 50]


def test_garbage_in_query_parameters_and_paths_is_never_a_5xx(
    fleet: Any, staff: APIClient, schema: dict[str, Any]
) -> None:
    checked = 0
    for path, operations in schema["paths"].items():
        operation = operations.get("get")
        if operation is None:
            continue
        url = url_of(staff, path)
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            for junk in GARBAGE:
                response = staff.get(f"{url}?{parameter['name']}={junk}")
                assert response.status_code < 500, (path, parameter["name"], junk)
                response.json()
                checked += 1
        for junk in GARBAGE:
            response = staff.get(path.replace("{id}", junk))
            assert response.status_code in (200, 400, 404), (path, junk)
            response.json()
    assert checked > 100


def test_the_json_renderer_never_fails_on_a_string_utf8_cannot_encode() -> None:
    from rest_framework.exceptions import ErrorDetail

    from api.renderers import JSONRenderer

    data = {"detail": "bad \ud800", "errors": {"m\udfff": [ErrorDetail("\ud800 is not")]}}
    rendered = JSONRenderer().render(data)
    assert json.loads(rendered) == {
        "detail": "bad \ufffd",
        "errors": {"m\ufffd": ["\ufffd is not"]},
    }
