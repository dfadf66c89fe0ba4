"""Check constraints decided in Python (api.validation) agree with the database's verdict,
for every check constraint of the models the API writes, over random values with NULLs."""

import random
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import models

from api.validation import _holds
from clusters.models import Cluster
from quotas.models import GpuType, Quota
from scaling.models import BacktestJob, ScalingPolicy
from tenants.models import Membership, Tenant

pytestmark = pytest.mark.django_db

CANDIDATES: dict[type, list[Any]] = {
    models.FloatField: [None, -1.5, -0.0, 0.0, 0.2, 1.0, 7.5, 1e9],
    models.PositiveIntegerField: [None, 0, 1, 2, 5, 10, 50],
    models.DecimalField: [None, -1, 0, 2],
    models.CharField: ["", "x", "hpa", "viewer", "owner"],
    models.URLField: ["", "http://127.0.0.1/x"],
}


def random_instance(model: type[models.Model], rng: random.Random) -> models.Model:
    instance = model()
    for field in model._meta.concrete_fields:
        for kind, values in CANDIDATES.items():
            if type(field) is kind:
                setattr(instance, field.attname, rng.choice(values))
                break
    return instance


def database_says(constraint: Any, instance: models.Model) -> bool:
    try:
        constraint.validate(type(instance), instance)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "model", [ScalingPolicy, Quota, GpuType, Tenant, Membership, Cluster, BacktestJob]
)
def test_python_and_the_database_agree_on_every_check(model: type[models.Model]) -> None:
    rng = random.Random(7)
    checks = [c for c in model._meta.constraints if isinstance(c, models.CheckConstraint)]
    decided = 0
    for _ in range(40):
        instance = random_instance(model, rng)
        for constraint in checks:
            verdict = _holds(constraint.condition, instance)
            if verdict is not None:
                decided += 1
                assert verdict == database_says(constraint, instance), (
                    constraint.name,
                    vars(instance),
                )
    assert decided > 0 or model in (Tenant,)  # the slug regex is left to the database


# --- what a body, a page and an ordering may say -------------------------------------------


@pytest.fixture
def staff(fleet: Any, client_for: Any) -> Any:
    return client_for(fleet.users["staff"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 99}, "version"),
        ({"tenant": "globex"}, "tenant"),
        ({"updated_at": "2020-01-01T00:00:00Z", "target": 3}, "updated_at"),
        ({"id": 12345}, "id"),
    ],
)
def test_a_read_only_field_in_a_patch_is_a_400_naming_it(
    fleet: Any, staff: Any, body: dict[str, Any], field: str
) -> None:
    from history.models import Change

    policy = fleet.workloads["a"].policy
    url = f"/api/v1/policies/{policy.pk}/"
    response = staff.patch(url, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][field] == [
        "Read-only: it cannot be set or changed; leave it out of the body."
    ]
    stored = ScalingPolicy.objects.get(pk=policy.pk)
    assert (stored.version, stored.target) == (policy.version, policy.target)
    assert not Change.objects.exists()


def test_a_read_only_field_on_create_is_refused(fleet: Any, staff: Any) -> None:
    body = {"name": "L4", "memory_gib": 24, "node_label": "NVIDIA-L4", "id": 7}
    response = staff.post("/api/v1/gpu-types/", body, format="json")
    assert response.status_code == 400 and "id" in response.json()["errors"]


def test_a_representation_sent_back_unchanged_with_put_is_fine(fleet: Any, staff: Any) -> None:
    url = f"/api/v1/quotas/{fleet.quotas['a'].pk}/"
    body = staff.get(url).json()
    body["nominal"] = 9
    assert staff.put(url, body, format="json").status_code == 200
    body["over_since"] = "2020-01-01T00:00:00Z"
    response = staff.put(url, body, format="json")
    assert response.status_code == 400 and "over_since" in response.json()["errors"]


def test_a_page_past_the_last_is_a_400_naming_page(fleet: Any, staff: Any) -> None:
    response = staff.get("/api/v1/policies/?page=999")
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["page"] == [
        "Page 999 is past the last page, 1 (3 items in all)."
    ]
    assert staff.get("/api/v1/policies/?page=1").status_code == 200


@pytest.mark.parametrize("ordering", ["secret", "-secret", "id,secret", "workload__tenant__name"])
def test_an_unknown_ordering_is_a_400_naming_the_allowed_fields(
    fleet: Any, staff: Any, ordering: str
) -> None:
    response = staff.get(f"/api/v1/policies/?ordering={ordering}")
    assert response.status_code == 400, response.content
    message = response.json()["errors"]["ordering"][0]
    assert ordering.split(",")[-1] in message and "updated_at" in message


def test_allowed_orderings_still_order(fleet: Any, staff: Any) -> None:
    ids = [row["id"] for row in staff.get("/api/v1/policies/?ordering=-id").json()["results"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3


@pytest.mark.parametrize("body", [{}, {"target": 8.0}, {"target": 8, "mode": "dry-run"}])
def test_a_patch_that_changes_nothing_keeps_the_version_and_records_no_history(
    fleet: Any, staff: Any, body: dict[str, Any]
) -> None:
    from history.models import Change

    policy = fleet.workloads["a"].policy
    url = f"/api/v1/policies/{policy.pk}/"
    response = staff.patch(url, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == policy.version
    assert response["ETag"] == f'"v{policy.version}"'
    stored = ScalingPolicy.objects.get(pk=policy.pk)
    assert (stored.version, stored.updated_at) == (policy.version, policy.updated_at)
    assert not Change.objects.exists()
    changed = staff.patch(url, {"target": 9}, format="json").json()
    assert changed["version"] == policy.version + 1
    assert Change.objects.count() == 1
