"""Namespace ownership: which namespaces a tenant's workloads may name, on which cluster, and who
may change that (staff only, through the admin, the API and the fleet config)."""

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.fleet_config import ConfigInvalid, export_config, import_config
from clusters.models import Cluster
from history.models import Change
from scaling.models import Workload
from tenants.models import Namespace, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def west(db):
    return Cluster.objects.create(name="west", api_url="http://127.0.0.1:9400/west")


def client_of(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def workload_body(tenant, cluster, namespace, deployment="chat"):
    return {
        "tenant": tenant,
        "cluster": cluster,
        "namespace": namespace,
        "deployment": deployment,
        "model_name": "meta-llama/Llama-3.1-8B-Instruct",
        "gpu_type": "A100-80GB",
    }


def owns(tenant, cluster, namespace):
    return Namespace.objects.ownership(cluster.pk).owns(tenant, namespace)


def test_a_tenant_owns_the_namespace_named_after_it_until_it_is_mapped_others(
    org, other_org, cluster, west
):
    assert owns(org, cluster, "acme") and owns(org, west, "acme")
    assert not owns(org, cluster, "globex") and not owns(org, cluster, "anything-else")
    Namespace.objects.create(tenant=org, cluster=west, name="acme-west")
    # On west the mapping replaces the default; on east nothing changed.
    assert owns(org, west, "acme-west") and not owns(org, west, "acme")
    assert owns(org, cluster, "acme") and not owns(org, cluster, "acme-west")
    assert not owns(other_org, west, "acme-west")


@pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease", "default"])
def test_cluster_namespaces_are_never_a_tenants(name, cluster, db):
    tenant = Tenant.objects.create(slug=name, name=name)  # even a tenant named after one
    assert not owns(tenant, cluster, name)
    with pytest.raises(ValidationError) as raised:
        Namespace(tenant=tenant, cluster=cluster, name=name).full_clean()
    assert "belong to the cluster" in str(raised.value)


def test_a_namespace_has_one_owner_per_cluster_and_never_another_tenants_slug(
    org, other_org, cluster, west
):
    Namespace.objects.create(tenant=org, cluster=cluster, name="shared")
    with pytest.raises(ValidationError, match="already belongs"):
        Namespace(tenant=other_org, cluster=cluster, name="shared").full_clean()
    Namespace(tenant=other_org, cluster=west, name="shared").full_clean()  # another cluster
    with pytest.raises(ValidationError, match="another tenant is that tenant's own"):
        Namespace(tenant=org, cluster=cluster, name="globex").full_clean()
    # ... and a new tenant cannot take the slug of a namespace mapped to someone else.
    with pytest.raises(ValidationError, match="belongs to another tenant"):
        Tenant(slug="shared", name="Shared").full_clean()


def test_a_workload_may_only_name_a_namespace_its_tenant_owns(org, other_org, cluster, gpu_type):
    def workload(tenant, namespace):
        return Workload(
            tenant=tenant,
            cluster=cluster,
            namespace=namespace,
            deployment="chat",
            model_name="m",
            gpu_type=gpu_type,
        )

    workload(org, "acme").full_clean()
    for namespace in ("globex", "kube-system", "default", "nobodys"):
        with pytest.raises(ValidationError) as raised:
            workload(org, namespace).full_clean()
        assert "does not own namespace" in str(raised.value)


def test_staff_map_namespaces_through_the_api_and_members_only_read_their_own(
    make_user, org, other_org, cluster, west, gpu_type
):
    staff = client_of(make_user("root", staff=True))
    alice = client_of(make_user("alice", org, "admin"))
    created = staff.post(
        "/api/v1/namespaces/", {"tenant": "acme", "cluster": "west", "name": "acme-west"}, "json"
    )
    assert created.status_code == 201, created.content
    staff.post("/api/v1/namespaces/", {"tenant": "globex", "cluster": "west", "name": "gx"}, "json")
    assert Change.objects.filter(object_repr__startswith="west/acme-west").count() == 1

    listed = alice.get("/api/v1/namespaces/").json()["results"]
    assert [(n["tenant"], n["cluster"], n["name"]) for n in listed] == [
        ("acme", "west", "acme-west")
    ]
    # A tenant admin can neither map a namespace nor move one, not even to itself.
    before = list(Namespace.objects.values())
    refused = [
        alice.post(
            "/api/v1/namespaces/", {"tenant": "acme", "cluster": "east", "name": "x"}, "json"
        ),
        alice.patch(f"/api/v1/namespaces/{created.json()['id']}/", {"name": "y"}, "json"),
        alice.delete(f"/api/v1/namespaces/{created.json()['id']}/"),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    gx = Namespace.objects.get(name="gx")
    assert (
        alice.patch(f"/api/v1/namespaces/{gx.pk}/", {"tenant": "acme"}, "json").status_code == 404
    )
    assert list(Namespace.objects.values()) == before
    bad = staff.post(
        "/api/v1/namespaces/", {"tenant": "acme", "cluster": "east", "name": "kube-system"}, "json"
    )
    assert bad.status_code == 400 and "name" in bad.json()["errors"]


def test_the_workload_api_answers_alike_for_any_namespace_the_tenant_does_not_own(
    make_user, make_workload, org, other_org, cluster, gpu_type
):
    """Colliding with another tenant's Deployment must read exactly like a free name in a
    namespace you do not own: the answer reveals nothing about what exists there."""
    make_workload(other_org, cluster, gpu_type, "secret-model")
    alice = client_of(make_user("alice", org, "operator"))
    answers = {
        alice.post(
            "/api/v1/workloads/", workload_body("acme", "east", "globex", deployment), "json"
        ).content.replace(deployment.encode(), b"")
        for deployment in ("secret-model", "nothing-here")
    }
    assert len(answers) == 1
    body = next(iter(answers))
    assert b"does not own namespace globex" in body and b"already" not in body
    assert Workload.objects.filter(tenant=org).count() == 0


def test_namespace_mappings_round_trip_through_the_fleet_config(org, other_org, cluster, west):
    Namespace.objects.create(tenant=org, cluster=west, name="acme-west")
    document = yaml.safe_load(yaml.safe_dump(export_config()))
    assert document["namespaces"] == [{"cluster": "west", "name": "acme-west", "tenant": "acme"}]
    assert import_config(document).changes == []

    document["namespaces"].append({"cluster": "east", "name": "kube-system", "tenant": "acme"})
    document["namespaces"].append({"cluster": "west", "name": "acme-west", "tenant": "globex"})
    with pytest.raises(ConfigInvalid) as raised:
        import_config(document)
    assert "namespaces[1].name" in raised.value.errors
    assert Namespace.objects.count() == 1 and Namespace.objects.get().tenant == org
    del document["namespaces"][1]
    result = import_config(document)  # moving a namespace is a staff decision
    assert [c.action for c in result.changes] == ["update"]
    assert Namespace.objects.get().tenant == other_org


def test_import_config_refuses_a_workload_in_a_namespace_its_tenant_does_not_own(
    org, other_org, cluster, gpu_type, tmp_path, capsys
):
    document = {
        "workloads": [
            {
                "cluster": "east",
                "namespace": "globex",
                "deployment": "chat",
                "tenant": "acme",
                "model_name": "m",
                "gpu_type": gpu_type.name,
            }
        ]
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("import_config", str(path))
    assert "workloads[0].namespace: Tenant acme does not own namespace globex" in (
        capsys.readouterr().err
    )
    assert not Workload.objects.exists()


def test_the_admin_refuses_a_workload_in_another_tenants_namespace(
    client, make_user, org, other_org, cluster, gpu_type
):
    client.force_login(make_user("root", staff=True))
    response = client.post(
        "/admin/scaling/workload/add/",
        {
            "tenant": org.pk,
            "cluster": cluster.pk,
            "namespace": "globex",
            "deployment": "chat",
            "model_name": "m",
            "gpu_type": gpu_type.pk,
            "gpus_per_replica": 1,
        },
    )
    assert response.status_code == 200
    assert "does not own namespace globex" in response.content.decode()
    assert not Workload.objects.exists()
    response = client.post(
        "/admin/tenants/namespace/add/",
        {"tenant": org.pk, "cluster": cluster.pk, "name": "kube-system", "change_reason": ""},
    )
    assert response.status_code == 200 and not Namespace.objects.exists()
