"""Bad input: always a JSON 4xx naming the problem, never a 5xx, and nothing written."""

import json
from typing import Any

import pytest
from django.db import connection

from history.models import Change
from quotas.models import Quota
from scaling.models import ScalingPolicy
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def table_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in connection.introspection.table_names(cursor):
            if table.split("_")[0] in {"tenants", "quotas", "scaling", "clusters", "history"}:
                cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
                counts[table] = cursor.fetchone()[0]
    return counts


def send(client: Any, method: str, url: str, body: str, content_type: str = "application/json"):
    return getattr(client, method)(url, data=body, content_type=content_type)


@pytest.fixture
def staff(fleet: Any, client_for: Any) -> Any:
    return client_for(fleet.users["staff"])


def quota_url(fleet: Any) -> str:
    return f"/api/v1/quotas/{fleet.quotas['a'].pk}/"


def policy_url(fleet: Any) -> str:
    return f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/"


# (description, method, url factory, raw body, expected status, field named in errors or None)
CASES = [
    ("negative quota", "patch", quota_url, '{"nominal": -1}', 400, "nominal"),
    ("lending above nominal", "patch", quota_url, '{"lending_limit": 99}', 400, "lending_limit"),
    (
        "min above max",
        "patch",
        policy_url,
        '{"min_replicas": 9, "max_replicas": 2}',
        400,
        "max_replicas",
    ),
    ("NaN", "patch", policy_url, '{"target": NaN}', 400, None),
    ("Infinity", "patch", policy_url, '{"target": Infinity}', 400, None),
    ("-Infinity", "patch", policy_url, '{"target": -Infinity}', 400, None),
    ("1e400", "patch", policy_url, '{"target": 1e400}', 400, None),
    ("huge integer", "patch", quota_url, '{"nominal": 1' + "0" * 400 + "}", 400, None),
    ("NaN as a string", "patch", policy_url, '{"target": "NaN"}', 400, "target"),
    ("zero target", "patch", policy_url, '{"target": 0}', 400, "target"),
    ("unknown field", "patch", policy_url, '{"target": 3, "turbo": true}', 400, "turbo"),
    ("unknown choice", "patch", policy_url, '{"algorithm": "magic"}', 400, "algorithm"),
    ("malformed JSON", "patch", policy_url, '{"target": 3', 400, None),
    (
        "empty JSON body is fine but a list is not",
        "patch",
        policy_url,
        "[1, 2]",
        400,
        "non_field_errors",
    ),
    ("string for a number", "patch", quota_url, '{"nominal": "many"}', 400, "nominal"),
    ("slo without its target", "patch", policy_url, '{"algorithm": "slo"}', 400, "slo_ttft_p95_s"),
    ("invalid UTF-8", "patch", policy_url, b'{"metric": "\xff"}', 400, None),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_answers_json_4xx_and_writes_nothing(fleet: Any, staff: Any, case: Any) -> None:
    _, method, url, body, status, field = case
    before = table_counts()
    policy_version = fleet.workloads["a"].policy.version
    response = send(staff, method, url(fleet), body)
    assert response.status_code == status, response.content
    data = response.json()
    assert isinstance(data["detail"], str) and data["detail"]
    if field is not None:
        assert field in data["errors"], data
    assert table_counts() == before
    assert ScalingPolicy.objects.get(pk=fleet.workloads["a"].policy.pk).version == policy_version
    assert Quota.objects.get(pk=fleet.quotas["a"].pk).nominal == 8


def test_model_constraint_messages_reach_the_client(fleet: Any, staff: Any) -> None:
    response = send(staff, "patch", policy_url(fleet), '{"min_replicas": 9, "max_replicas": 2}')
    assert response.json()["errors"]["max_replicas"] == [
        "Min replicas cannot be above max replicas."
    ]
    assert response.json()["detail"] == (
        "Invalid input: max_replicas: Min replicas cannot be above max replicas."
    )


def test_nan_is_refused_at_parse_time_with_a_clear_message(fleet: Any, staff: Any) -> None:
    response = send(staff, "patch", policy_url(fleet), '{"target": NaN}')
    assert "NaN" in response.json()["detail"]
    response = send(staff, "patch", policy_url(fleet), '{"target": 1e400}')
    assert "finite" in response.json()["detail"]


@pytest.mark.parametrize(
    "slug", ["Team_C", "-team", "team-", "UPPER", "a" * 64, "ünï", "", "with space"]
)
def test_invalid_slugs_are_refused(fleet: Any, staff: Any, slug: str) -> None:
    response = staff.post("/api/v1/tenants/", {"slug": slug, "name": "X"}, format="json")
    assert response.status_code == 400 and "slug" in response.json()["errors"]
    assert not Tenant.objects.filter(name="X").exists()


def test_duplicate_slug_is_a_field_error_not_a_database_error(fleet: Any, staff: Any) -> None:
    response = staff.post("/api/v1/tenants/", {"slug": "team-a", "name": "X"}, format="json")
    assert response.status_code == 400 and "slug" in response.json()["errors"]


def test_quota_rules_of_the_model_apply(fleet: Any, staff: Any) -> None:
    # Borrowing is for teams inside an organisation only (Quota.clean).
    body = {"tenant": "acme", "gpu_type": "A100-80GB", "nominal": 2, "borrowing_limit": 1}
    response = staff.post("/api/v1/quotas/", body, format="json")
    assert response.status_code == 400 and "borrowing_limit" in response.json()["errors"]
    duplicate = {"tenant": "team-a", "gpu_type": "A100-80GB", "nominal": 2}
    response = staff.post("/api/v1/quotas/", duplicate, format="json")
    assert response.status_code == 400
    assert "already has a quota" in response.json()["detail"]


def test_body_over_one_mebibyte_answers_413(fleet: Any, staff: Any) -> None:
    body = json.dumps({"metric": "x" * (1024 * 1024)})
    before = table_counts()
    response = send(staff, "patch", policy_url(fleet), body)
    assert response.status_code == 413 and response.json()["detail"]
    assert table_counts() == before


def test_wrong_content_type_answers_415(fleet: Any, staff: Any) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = send(staff, "patch", policy_url(fleet), '{"target": 3}', content_type)
        assert response.status_code == 415, content_type
        assert "Unsupported media type" in response.json()["detail"]
    assert ScalingPolicy.objects.get(pk=fleet.workloads["a"].policy.pk).target == 8


def test_unicode_names_are_fine(fleet: Any, staff: Any) -> None:
    response = staff.patch(
        f"/api/v1/tenants/{fleet.team_a.pk}/", {"name": "チームA — 研究 🚀"}, format="json"
    )
    assert response.status_code == 200 and response.json()["name"] == "チームA — 研究 🚀"


def test_a_failed_write_records_no_history(fleet: Any, staff: Any) -> None:
    send(staff, "patch", quota_url(fleet), '{"nominal": -5}')
    assert not Change.objects.exists()


def test_csrf_is_enforced_for_session_authentication(fleet: Any) -> None:
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(fleet.users["operator"])
    assert client.get("/api/v1/workloads/").status_code == 200
    response = client.patch(policy_url(fleet), {"target": 3}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.patch(policy_url(fleet), {"target": 3}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "page=",
        "page=0",
        "page=abc",
        "page_size=",
        "page_size=0",
        "page_size=101",
        "page_size=x",
        "workload=-1",
        "workload=99999999999999999999999",
        "outcome=maybe",
        "until=soon",
    ],
)
def test_bad_list_parameters_answer_400_naming_them(fleet: Any, staff: Any, query: str) -> None:
    response = staff.get(f"/api/v1/decisions/?{query}")
    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()["errors"]


def test_any_id_shape_answers_json_404(fleet: Any, staff: Any) -> None:
    for raw in ("0.5", "null,null", "-1", "99999999999999999999999", "%F0%9F%9A%80"):
        response = staff.get(f"/api/v1/policies/{raw}/")
        assert response.status_code == 404 and response.json() == {"detail": "Not found."}, raw
        response = staff.patch(f"/api/v1/policies/{raw}/", {"target": 1}, format="json")
        assert response.status_code == 404, raw
