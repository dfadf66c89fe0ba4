"""Randomised cross-tenant attempts: members of team-a poke at everything of team-b and of
another organisation. Zero leaks (404 like a missing object, no foreign id in any list) and
zero writes."""

import json
import random
from typing import Any

import pytest

from history.models import Change
from quotas.models import Quota
from scaling.models import BacktestJob, Decision, ScalingPolicy, Workload
from tenants.models import Membership, Namespace, Tenant

pytestmark = pytest.mark.django_db

ATTEMPTS = 600
NOT_FOUND = b'{"detail":"Not found."}'
MODELS: dict[str, Any] = {
    "tenants": Tenant,
    "memberships": Membership,
    "namespaces": Namespace,
    "quotas": Quota,
    "workloads": Workload,
    "policies": ScalingPolicy,
    "decisions": Decision,
    "backtests": BacktestJob,
}
READ_ONLY = {"decisions"}  # no writes at all
NO_UPDATE = {"backtests"}  # read and delete only


def database_state() -> dict[str, list[dict[str, Any]]]:
    state = {name: list(model.objects.order_by("pk").values()) for name, model in MODELS.items()}
    state["history"] = list(Change.objects.values("pk"))
    return state


def foreign_ids(fleet: Any) -> dict[str, set[int]]:
    """What team-a's members must never see: team-b (a sibling team) and all of globex."""
    tenants = [fleet.team_b, fleet.globex, fleet.globex_ml]
    workloads = Workload.objects.filter(tenant__in=tenants)
    return {
        "tenants": {t.pk for t in tenants} | {fleet.acme.pk},
        "memberships": set(
            Membership.objects.exclude(tenant=fleet.team_a).values_list("pk", flat=True)
        ),
        "namespaces": set(
            Namespace.objects.filter(tenant__in=tenants).values_list("pk", flat=True)
        ),
        "quotas": set(Quota.objects.filter(tenant__in=tenants).values_list("pk", flat=True)),
        "workloads": set(workloads.values_list("pk", flat=True)),
        "policies": set(
            ScalingPolicy.objects.filter(workload__in=workloads).values_list("pk", flat=True)
        ),
        "decisions": set(
            Decision.objects.filter(workload__in=workloads).values_list("pk", flat=True)
        ),
        "backtests": set(
            BacktestJob.objects.filter(policy__workload__in=workloads).values_list("pk", flat=True)
        ),
    }


def random_body(rng: random.Random, fleet: Any) -> dict[str, Any]:
    foreign_tenant = rng.choice(["team-b", "globex", "globex-ml", "acme"])
    candidates: list[dict[str, Any]] = [
        {"target": rng.uniform(0.1, 100)},
        {"max_replicas": rng.randint(1, 50), "mode": "enforce"},
        {"tenant": foreign_tenant},
        {"nominal": rng.randint(0, 100)},
        {"role": "admin", "user": "vera", "tenant": foreign_tenant},
        {"tenant": "team-a", "name": "team-a-stolen"},
        {"name": "pwned", "priority": 100},
        {"workload": fleet.workloads[rng.choice("bg")].pk, "target": 1},
        {},
    ]
    return rng.choice(candidates)


def create_body(rng: random.Random, fleet: Any, resource: str) -> dict[str, Any]:
    """A create that would land in another tenant, or point at another tenant's object."""
    foreign_tenant = rng.choice(["team-b", "globex-ml"])
    return {
        "workloads": {
            "tenant": foreign_tenant,
            "cluster": "east",
            "namespace": foreign_tenant,
            "deployment": f"x{rng.randint(0, 10**6)}",
            "model_name": "m",
            "gpu_type": "A100-80GB",
        },
        "policies": {"workload": fleet.workloads[rng.choice("bg")].pk, "target": 2},
        "memberships": {"user": "vera", "tenant": foreign_tenant, "role": "admin"},
        "quotas": {"tenant": foreign_tenant, "gpu_type": "A100-80GB", "nominal": 1},
        "namespaces": {"tenant": "team-a", "cluster": "east", "name": f"{foreign_tenant}-batch"},
        "tenants": {"slug": f"t{rng.randint(0, 10**6)}", "name": "T", "parent": "globex"},
    }[resource]


# Actions on one object: (resource, method, action path).
ACTIONS = [
    ("workloads", "post", "reconcile"),
    ("quotas", "get", "usage"),
    ("quotas", "post", "preview"),
    ("policies", "post", "backtests"),
]


def attempt_action(rng: random.Random, client: Any, foreign: dict[str, set[int]]) -> None:
    resource, method, name = rng.choice(ACTIONS)
    url = f"/api/v1/{resource}/{rng.choice(sorted(foreign[resource]))}/{name}/"
    if method == "get":
        response = client.get(url)
    else:
        body = {
            "preview": {"nominal": rng.randint(0, 50)},
            "backtests": {"trace": "conv", "duration_s": 60, "overrides": {"target": 2}},
            "reconcile": {},
        }[name]
        response = client.post(url, body, format="json")
    assert response.status_code == 404, (url, response.content)
    assert response.content == NOT_FOUND


def attempt(rng: random.Random, fleet: Any, client: Any, foreign: dict[str, set[int]]) -> None:
    resource = rng.choice(list(MODELS))
    operation = rng.choice(["get", "put", "patch", "delete", "list", "create", "action"])
    if operation == "action":
        attempt_action(rng, client, foreign)
        return
    if operation == "list":
        query = rng.choice(
            [
                "",
                "?tenant=team-b",
                "?tenant=globex-ml",
                "?page_size=100",
                "?ordering=-id",
                f"?workload={fleet.workloads['g'].pk}",
            ]
        )
        response = client.get(f"/api/v1/{resource}/{query}")
        assert response.status_code in (200, 400), response.content
        if response.status_code == 200:
            listed = {item["id"] for item in response.json()["results"]}
            assert not listed & foreign[resource], (resource, query)
        return
    if operation == "create":
        if resource in READ_ONLY | NO_UPDATE:
            response = client.post(f"/api/v1/{resource}/", {}, format="json")
            assert response.status_code == 405, (resource, response.content)
            return
        body = create_body(rng, fleet, resource)
        response = client.post(f"/api/v1/{resource}/", body, format="json")
        assert response.status_code in (400, 403), (resource, response.content)
        return
    target = rng.choice(sorted(foreign[resource]))
    url = f"/api/v1/{resource}/{target}/"
    if operation == "get":
        response = client.get(url)
    else:
        response = getattr(client, operation)(
            url, json.dumps(random_body(rng, fleet)), content_type="application/json"
        )
    read_only = resource in READ_ONLY and operation != "get"
    no_update = resource in NO_UPDATE and operation in ("put", "patch")
    expected = 405 if read_only or no_update else 404
    assert response.status_code == expected, (operation, url, response.content)
    if expected == 404:
        assert response.content == NOT_FOUND


def test_randomised_cross_tenant_attempts_leak_nothing_and_write_nothing(
    fleet: Any, client_for: Any, django_capture_on_commit_callbacks: Any
) -> None:
    rng = random.Random(20261122)
    actors = [client_for(fleet.users[role]) for role in ("viewer", "operator", "admin")]
    foreign = foreign_ids(fleet)
    before = database_state()
    with django_capture_on_commit_callbacks() as queued:
        for _ in range(ATTEMPTS):
            attempt(rng, fleet, rng.choice(actors), foreign)
    assert database_state() == before
    assert queued == []  # no task (reconcile, back-test) was queued for a foreign object
