"""The schema and the interactive docs: valid OpenAPI 3, served without a CDN, and every
operation it lists refuses anonymous callers."""

import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from .conftest import PUBLIC_STATUS_KEYS, RESOURCES

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json())


def test_schema_is_valid_openapi_and_lists_every_resource(schema: dict[str, Any]) -> None:
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    for name in RESOURCES:
        assert f"/api/v1/{name}/" in schema["paths"]
        assert f"/api/v1/{name}/{{id}}/" in schema["paths"]
    assert set(schema["paths"]["/api/v1/decisions/{id}/"]) == {"get"}
    patch = schema["paths"]["/api/v1/policies/{id}/"]["patch"]
    assert any(p["name"] == "If-Match" and p["in"] == "header" for p in patch["parameters"])
    assert {"400", "401", "403", "404", "412", "413", "415"} <= set(patch["responses"])
    listing = schema["paths"]["/api/v1/decisions/"]["get"]["parameters"]
    assert {"since", "until", "outcome", "tenant", "ordering", "page", "page_size"} <= {
        p["name"] for p in listing
    }


def test_every_operation_refuses_anonymous_callers(fleet: Any, schema: dict[str, Any]) -> None:
    client = APIClient()
    ids = {
        "tenants": fleet.team_a.pk,
        "memberships": 1,
        "gpu-types": fleet.gpu.pk,
        "clusters": fleet.cluster.pk,
        "quotas": fleet.quotas["a"].pk,
        "workloads": fleet.workloads["a"].pk,
        "policies": fleet.workloads["a"].policy.pk,
        "decisions": fleet.decisions["a"].pk,
    }
    checked = 0
    for path, operations in schema["paths"].items():
        name = path.split("/")[3]
        url = path.replace("{id}", str(ids.get(name, 1)))
        for method in operations:
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            response = getattr(client, method)(url, {}, format="json")
            assert response.status_code == 401, (method, path)
            assert response.json()["detail"]
            checked += 1
    assert checked >= 40


def test_swagger_ui_serves_its_assets_locally(client: Any) -> None:
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn" not in html.lower() and "unpkg" not in html
    assets = re.findall(r"(/static/[^\"']+\.(?:js|css))", html)
    assert assets
    for asset in assets:
        # A file of ours (the sidecar package's static files), found by staticfiles.
        assert finders.find(asset.removeprefix("/static/")), asset


def test_unknown_api_paths_answer_json_404(client: Any) -> None:
    response = client.get("/api/v1/nope/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_the_workload_status_is_a_documented_object_without_loop_state(
    schema: dict[str, Any],
) -> None:
    components = schema["components"]["schemas"]
    status = components["Workload"]["properties"]["status"]
    # A nullable reference (null before the first tick) to the status component.
    ref = status.get("$ref") or next(s["$ref"] for s in status["allOf"] if "$ref" in s)
    described = components[ref.rsplit("/", 1)[-1]]
    assert set(described["properties"]) == PUBLIC_STATUS_KEYS
    assert described["properties"]["at"]["format"] == "date-time"
    error = components[described["properties"]["error"]["allOf"][0]["$ref"].rsplit("/", 1)[-1]]
    assert {"cause", "count", "since", "last_at"} == set(error["properties"])
    assert "loop_state" not in components["Workload"]["properties"]


def test_a_policys_replica_counts_document_their_unit(schema: dict[str, Any]) -> None:
    """On a workload with variants the policy counts in primary-type replicas: every numeric
    field carrying such a count says so, and each type's own counts are plain replicas."""
    components = schema["components"]["schemas"]
    status = components["WorkloadStatus"]["properties"]
    decision = components["Decision"]["properties"]
    workload = components["Workload"]["properties"]
    counted = [status[k] for k in ("current", "raw_desired", "desired")]
    counted += [decision[k] for k in ("current_replicas", "raw_desired_replicas", "final_replicas")]
    counted += [workload[k] for k in ("ready_replicas", "warming_replicas", "desired_replicas")]
    for field in counted:
        assert "replicas of that primary type" in field["description"]
        assert "not a machine count" in field["description"]
    types = components["TypeStatus"]["properties"]
    assert {"ready", "current", "desired"} <= set(types)
    assert "Plain replicas of this type" in types["current"]["description"]
