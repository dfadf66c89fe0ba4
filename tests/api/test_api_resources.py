"""Each resource through HTTP: list, detail, create, update, delete, per role."""

from typing import Any

import pytest

from history.models import Change
from quotas.models import GpuType, Quota
from scaling.models import ScalingPolicy, Workload
from tenants.models import Membership, Tenant

from .conftest import RESOURCES

pytestmark = pytest.mark.django_db


def ids(response: Any) -> set[int]:
    return {item["id"] for item in response.json()["results"]}


# --- reading --------------------------------------------------------------------------------------


def test_unauthenticated_requests_are_refused_with_401(fleet: Any, client_for: Any) -> None:
    for name in (*RESOURCES, "config"):
        response = client_for(None).get(f"/api/v1/{name}/")
        assert response.status_code == 401, name
        assert response.json()["detail"]


def test_viewer_lists_only_its_tenant_and_organisation_view_is_scoped(
    fleet: Any, client_for: Any
) -> None:
    viewer = client_for(fleet.users["viewer"])
    assert {t["slug"] for t in viewer.get("/api/v1/tenants/").json()["results"]} == {"team-a"}
    assert ids(viewer.get("/api/v1/workloads/")) == {fleet.workloads["a"].pk}
    assert ids(viewer.get("/api/v1/policies/")) == {fleet.workloads["a"].policy.pk}
    assert ids(viewer.get("/api/v1/quotas/")) == {fleet.quotas["a"].pk}
    assert ids(viewer.get("/api/v1/decisions/")) == {fleet.decisions["a"].pk}
    memberships = viewer.get("/api/v1/memberships/").json()["results"]
    assert {m["tenant"] for m in memberships} == {"team-a"}


def test_role_on_an_organisation_carries_to_its_teams(fleet: Any, client_for: Any) -> None:
    alice = client_for(fleet.users["org_operator"])
    slugs = {t["slug"] for t in alice.get("/api/v1/tenants/").json()["results"]}
    assert slugs == {"acme", "team-a", "team-b"}
    assert ids(alice.get("/api/v1/workloads/")) == {
        fleet.workloads["a"].pk,
        fleet.workloads["b"].pk,
    }


def test_staff_see_everything_and_user_without_role_sees_no_tenant(
    fleet: Any, client_for: Any
) -> None:
    assert client_for(fleet.users["staff"]).get("/api/v1/workloads/").json()["count"] == 3
    nobody = client_for(fleet.users["nobody"])
    assert nobody.get("/api/v1/tenants/").json()["count"] == 0
    # Shared catalogue objects stay readable to every signed-in user.
    assert nobody.get("/api/v1/gpu-types/").json()["count"] == 1
    assert nobody.get("/api/v1/clusters/").json()["count"] == 1


def test_another_tenants_object_answers_404_exactly_like_a_missing_one(
    fleet: Any, client_for: Any
) -> None:
    viewer = client_for(fleet.users["viewer"])
    for name, obj in (
        ("workloads", fleet.workloads["g"]),
        ("policies", fleet.workloads["g"].policy),
        ("quotas", fleet.quotas["g"]),
        ("decisions", fleet.decisions["g"]),
        ("tenants", fleet.globex_ml),
    ):
        foreign = viewer.get(f"/api/v1/{name}/{obj.pk}/")
        missing = viewer.get(f"/api/v1/{name}/999999/")
        assert foreign.status_code == missing.status_code == 404, name
        assert foreign.content == missing.content == b'{"detail":"Not found."}'
        for method in ("put", "patch", "delete"):
            foreign = getattr(viewer, method)(f"/api/v1/{name}/{obj.pk}/", {}, format="json")
            assert foreign.status_code in (404, 405), (name, method)


def test_cluster_credential_is_write_only(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    response = staff.patch(
        f"/api/v1/clusters/{fleet.cluster.pk}/", {"token": "s3cret-token"}, format="json"
    )
    assert response.status_code == 200
    assert "token" not in response.json() and response.json()["has_credential"] is True
    fleet.cluster.refresh_from_db()
    assert fleet.cluster.credential == "s3cret-token"
    body = client_for(fleet.users["viewer"]).get(f"/api/v1/clusters/{fleet.cluster.pk}/")
    assert b"s3cret" not in body.content and b"ciphertext" not in body.content


# --- writing: workloads and policies (operators) --------------------------------------------------


def workload_body(tenant: str = "team-a", deployment: str = "summarise") -> dict[str, Any]:
    return {
        "tenant": tenant,
        "cluster": "east",
        "namespace": tenant,
        "deployment": deployment,
        "model_name": "Qwen/Qwen2.5-7B-Instruct",
        "gpu_type": "A100-80GB",
        "gpus_per_replica": 2,
    }


def test_operator_creates_updates_and_deletes_a_workload(fleet: Any, client_for: Any) -> None:
    operator = client_for(fleet.users["operator"])
    created = operator.post("/api/v1/workloads/", workload_body(), format="json")
    assert created.status_code == 201, created.json()
    assert created["ETag"]
    workload_id = created.json()["id"]
    assert created.json()["policy"] is None
    changed = operator.patch(
        f"/api/v1/workloads/{workload_id}/", {"gpus_per_replica": 4}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["gpus_per_replica"] == 4
    assert operator.delete(f"/api/v1/workloads/{workload_id}/").status_code == 204
    assert not Workload.objects.filter(pk=workload_id).exists()


def test_viewer_cannot_change_workloads_it_sees(fleet: Any, client_for: Any) -> None:
    viewer = client_for(fleet.users["viewer"])
    url = f"/api/v1/workloads/{fleet.workloads['a'].pk}/"
    assert viewer.patch(url, {"gpus_per_replica": 3}, format="json").status_code == 403
    assert viewer.delete(url).status_code == 403
    created = viewer.post("/api/v1/workloads/", workload_body(), format="json")
    assert created.status_code == 403
    assert Workload.objects.count() == 3


def test_operator_cannot_create_in_a_tenant_it_cannot_see(fleet: Any, client_for: Any) -> None:
    operator = client_for(fleet.users["operator"])
    response = operator.post("/api/v1/workloads/", workload_body("globex-ml"), format="json")
    assert response.status_code == 400
    assert "tenant" in response.json()["errors"]
    assert Workload.objects.count() == 3


def test_operator_edits_a_policy_and_the_version_and_history_follow(
    fleet: Any, client_for: Any
) -> None:
    policy = fleet.workloads["a"].policy
    operator = client_for(fleet.users["operator"])
    response = operator.patch(
        f"/api/v1/policies/{policy.pk}/", {"target": 12.5, "max_replicas": 20}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["version"] == policy.version + 1
    assert response["ETag"] == f'"v{policy.version + 1}"'
    change = Change.objects.get(object_id=policy.pk, content_type__model="scalingpolicy")
    assert change.actor == fleet.users["operator"] and change.reason == "api"
    assert change.changed_fields["target"] == (8.0, 12.5)


def test_saving_a_policy_reconciles_its_workload_after_commit(
    fleet: Any, client_for: Any, django_capture_on_commit_callbacks: Any
) -> None:
    policy = fleet.workloads["a"].policy
    operator = client_for(fleet.users["operator"])
    with django_capture_on_commit_callbacks() as callbacks:
        response = operator.patch(f"/api/v1/policies/{policy.pk}/", {"target": 9}, format="json")
    assert response.status_code == 200
    assert len(callbacks) == 1  # scaling.tasks.reconcile_workload, queued once committed


def test_operator_creates_a_policy_for_a_workload_without_one(fleet: Any, client_for: Any) -> None:
    operator = client_for(fleet.users["operator"])
    workload = operator.post("/api/v1/workloads/", workload_body(), format="json").json()
    body = {"workload": workload["id"], "algorithm": "kpa", "target": 4, "mode": "enforce"}
    created = operator.post("/api/v1/policies/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["version"] == 1 and created.json()["tenant"] == "team-a"
    again = operator.post("/api/v1/policies/", body, format="json")
    assert again.status_code == 400 and "workload" in again.json()["errors"]
    assert Change.objects.filter(action="create", content_type__model="scalingpolicy").count() == 1


def test_viewer_cannot_edit_a_policy(fleet: Any, client_for: Any) -> None:
    policy = fleet.workloads["a"].policy
    response = client_for(fleet.users["viewer"]).patch(
        f"/api/v1/policies/{policy.pk}/", {"target": 1}, format="json"
    )
    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.target == 8 and policy.version == 1


def test_policy_workload_cannot_be_repointed(fleet: Any, client_for: Any) -> None:
    policy = fleet.workloads["a"].policy
    response = client_for(fleet.users["org_operator"]).patch(
        f"/api/v1/policies/{policy.pk}/", {"workload": fleet.workloads["b"].pk}, format="json"
    )
    assert response.status_code == 400 and "workload" in response.json()["errors"]


def test_operator_deletes_a_policy_and_history_keeps_it(fleet: Any, client_for: Any) -> None:
    policy = fleet.workloads["a"].policy
    operator = client_for(fleet.users["operator"])
    assert operator.delete(f"/api/v1/policies/{policy.pk}/").status_code == 204
    assert not ScalingPolicy.objects.filter(pk=policy.pk).exists()
    before = Change.objects.get(object_id=policy.pk, action="delete").before
    assert before is not None and before["target"] == 8.0


# --- writing: memberships (tenant admins) ---------------------------------------------------------


def test_tenant_admin_manages_memberships_of_its_tenant(
    fleet: Any, client_for: Any, make_user: Any
) -> None:
    make_user("newbie")
    admin = client_for(fleet.users["admin"])
    created = admin.post(
        "/api/v1/memberships/",
        {"user": "newbie", "tenant": "team-a", "role": "viewer"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    url = f"/api/v1/memberships/{created.json()['id']}/"
    assert admin.patch(url, {"role": "operator"}, format="json").json()["role"] == "operator"
    assert admin.delete(url).status_code == 204
    assert not Membership.objects.filter(user__username="newbie").exists()


def test_operator_cannot_grant_roles(fleet: Any, client_for: Any, make_user: Any) -> None:
    make_user("newbie")
    operator = client_for(fleet.users["operator"])
    body = {"user": "newbie", "tenant": "team-a", "role": "admin"}
    assert operator.post("/api/v1/memberships/", body, format="json").status_code == 403
    own = Membership.objects.get(user=fleet.users["operator"])
    response = operator.patch(f"/api/v1/memberships/{own.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 403
    own.refresh_from_db()
    assert own.role == "operator"


def test_tenant_admin_cannot_grant_on_another_tenant(
    fleet: Any, client_for: Any, make_user: Any
) -> None:
    make_user("newbie")
    body = {"user": "newbie", "tenant": "team-b", "role": "viewer"}
    response = client_for(fleet.users["admin"]).post("/api/v1/memberships/", body, format="json")
    assert response.status_code == 400 and "tenant" in response.json()["errors"]


# --- writing: staff-managed resources -------------------------------------------------------------


def test_staff_manage_tenants_with_history(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    created = staff.post(
        "/api/v1/tenants/",
        {"slug": "team-c", "name": "Équipe C ☃", "parent": "acme"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["name"] == "Équipe C ☃" and created.json()["parent"] == "acme"
    tenant_id = created.json()["id"]
    changed = staff.patch(f"/api/v1/tenants/{tenant_id}/", {"priority": 5}, format="json")
    assert changed.status_code == 200
    assert staff.delete(f"/api/v1/tenants/{tenant_id}/").status_code == 204
    actions = list(
        Change.objects.filter(object_id=tenant_id, content_type__model="tenant")
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == ["create", "update", "delete"]


def test_deleting_a_tenant_in_use_answers_409(fleet: Any, client_for: Any) -> None:
    response = client_for(fleet.users["staff"]).delete(f"/api/v1/tenants/{fleet.team_a.pk}/")
    assert response.status_code == 409 and "workloads" in response.json()["detail"]
    assert Tenant.objects.filter(pk=fleet.team_a.pk).exists()


@pytest.mark.parametrize("role", ["viewer", "operator", "admin", "org_operator"])
def test_members_cannot_change_staff_managed_resources(
    fleet: Any, client_for: Any, role: str
) -> None:
    client = client_for(fleet.users[role])
    assert (
        client.patch(
            f"/api/v1/tenants/{fleet.team_a.pk}/", {"priority": 9}, format="json"
        ).status_code
        == 403
    )
    assert (
        client.patch(
            f"/api/v1/quotas/{fleet.quotas['a'].pk}/", {"nominal": 99}, format="json"
        ).status_code
        == 403
    )
    assert client.delete(f"/api/v1/gpu-types/{fleet.gpu.pk}/").status_code == 403
    assert (
        client.patch(
            f"/api/v1/clusters/{fleet.cluster.pk}/", {"enabled": False}, format="json"
        ).status_code
        == 403
    )
    for name, body in (
        ("tenants", {"slug": "x", "name": "X"}),
        ("quotas", {"tenant": "team-a", "gpu_type": "A100-80GB", "nominal": 1}),
        ("gpu-types", {"name": "H100", "memory_gib": 80, "node_label": "H100"}),
        ("clusters", {"name": "west", "api_url": "https://west.example"}),
    ):
        assert client.post(f"/api/v1/{name}/", body, format="json").status_code == 403, name
    assert Quota.objects.get(pk=fleet.quotas["a"].pk).nominal == 8
    assert GpuType.objects.count() == 1


def test_staff_manage_quotas_gpu_types_and_clusters(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    gpu = staff.post(
        "/api/v1/gpu-types/",
        {"name": "H100-80GB", "memory_gib": 80, "hourly_cost": 4.5, "node_label": "NVIDIA-H100"},
        format="json",
    )
    assert gpu.status_code == 201 and gpu.json()["hourly_cost"] == 4.5
    quota = staff.post(
        "/api/v1/quotas/",
        {"tenant": "team-a", "gpu_type": "H100-80GB", "nominal": 4, "borrowing_limit": 2},
        format="json",
    )
    assert quota.status_code == 201, quota.json()
    assert Change.objects.filter(content_type__model="quota", action="create").count() == 1
    cluster = staff.post(
        "/api/v1/clusters/",
        {"name": "west", "kubeconfig_context": "west-admin", "token": "abc"},
        format="json",
    )
    assert cluster.status_code == 201 and cluster.json()["has_credential"] is True


def test_lists_filter_order_and_paginate(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    assert ids(staff.get("/api/v1/workloads/?tenant=team-b")) == {fleet.workloads["b"].pk}
    assert staff.get("/api/v1/workloads/?gpu_type=nope").json()["count"] == 0
    assert staff.get("/api/v1/policies/?cluster=east").json()["count"] == 3
    ordered = staff.get("/api/v1/workloads/?ordering=-deployment").json()["results"]
    assert [w["deployment"] for w in ordered] == ["vision", "embed", "chat"]
    page = staff.get("/api/v1/workloads/?page_size=2&ordering=deployment").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert staff.get("/api/v1/decisions/?outcome=applied").json()["count"] == 3
    assert staff.get("/api/v1/decisions/?outcome=held").json()["count"] == 0
    assert staff.get("/api/v1/decisions/?since=2000-01-01T00:00:00Z").json()["count"] == 3
    assert staff.get("/api/v1/decisions/?until=2000-01-01T00:00:00Z").json()["count"] == 0
    bad = staff.get("/api/v1/decisions/?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()["errors"]


def test_decisions_are_read_only(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    url = f"/api/v1/decisions/{fleet.decisions['a'].pk}/"
    assert staff.get(url).status_code == 200
    assert staff.delete(url).status_code == 405
    assert staff.post("/api/v1/decisions/", {}, format="json").status_code == 405


@pytest.mark.parametrize("algorithm", ["predictive", "slo"])
def test_a_policy_whose_algorithm_reads_no_target_needs_none(
    fleet: Any, client_for: Any, algorithm: str
) -> None:
    operator = client_for(fleet.users["operator"])
    workload = operator.post("/api/v1/workloads/", workload_body(), format="json").json()
    body = {"workload": workload["id"], "algorithm": algorithm, "slo_ttft_p95_s": 2.0}
    created = operator.post("/api/v1/policies/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["target"] is None
    stored = ScalingPolicy.objects.get(pk=created.json()["id"])
    assert stored.target is None and stored.engine_params().target is None
    # Switching it to an algorithm that reads a target without giving one is refused.
    url = f"/api/v1/policies/{stored.pk}/"
    switched = operator.patch(url, {"algorithm": "hpa"}, format="json")
    assert switched.status_code == 400
    assert "required by the hpa algorithm" in switched.json()["errors"]["target"][0]


@pytest.mark.parametrize("algorithm", ["hpa", "kpa", "apa"])
def test_a_policy_whose_algorithm_reads_a_target_is_refused_without_one(
    fleet: Any, client_for: Any, algorithm: str
) -> None:
    operator = client_for(fleet.users["operator"])
    workload = operator.post("/api/v1/workloads/", workload_body(), format="json").json()
    for body in (
        {"workload": workload["id"], "algorithm": algorithm},
        {"workload": workload["id"], "algorithm": algorithm, "target": None},
    ):
        refused = operator.post("/api/v1/policies/", body, format="json")
        assert refused.status_code == 400, refused.json()
        assert list(refused.json()["errors"]) == ["target"]
        assert f"required by the {algorithm} algorithm" in refused.json()["errors"]["target"][0]
    assert not ScalingPolicy.objects.filter(workload_id=workload["id"]).exists()
