"""A workload's further GPU types (issue 17, item 1) through the API: nested, validated like
the workload itself (Deployment found in the workload's namespace, one owner per Deployment),
4xx on bad input with nothing written, and no reach into another tenant's Deployments."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.models import Cluster
from quotas.models import GpuType
from scaling.models import Workload, WorkloadVariant

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _deployment(namespace: str, name: str, gpu_type: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "gpu_type": gpu_type,
        "replicas": 0,
    }


FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 4},
                {"gpu_type": "A40-48GB", "count": 1, "gpus_per_node": 4},
            ],
            "namespaces": ["team-a", "team-b"],
            "workloads": [
                _deployment("team-a", "summarise", "A100-80GB"),
                _deployment("team-a", "summarise-a40", "A40-48GB"),
                _deployment("team-a", "summarise-l4", "A40-48GB"),
                _deployment("team-b", "embed-a40", "A40-48GB"),
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def simulator_url(start_module_simulator: Any) -> str:
    url: str = start_module_simulator(FLEET, speed=4.0)
    return url


@pytest.fixture
def cluster(simulator_url: str) -> Cluster:
    """Overrides the shared fixture: east is the simulator's, so the checks get answers."""
    return Cluster.objects.create(name="east", api_url=f"{simulator_url}/east")


@pytest.fixture
def a40(db: Any) -> GpuType:
    return GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.50", node_label="NVIDIA-A40"
    )


@pytest.fixture
def l4(db: Any) -> GpuType:
    return GpuType.objects.create(
        name="L4-24GB", memory_gib=24, hourly_cost="0.30", node_label="NVIDIA-L4"
    )


A40 = {"gpu_type": "A40-48GB", "deployment": "summarise-a40", "min_replicas": 0, "max_replicas": 6}


def body(**changes: Any) -> dict[str, Any]:
    return {
        "tenant": "team-a",
        "cluster": "east",
        "namespace": "team-a",
        "deployment": "summarise",
        "model_name": "meta-llama/Llama-3.1-8B-Instruct",
        "gpu_type": "A100-80GB",
        "gpus_per_replica": 1,
        "variants": [A40],
    } | changes


def test_a_workload_is_created_with_its_variants_and_shows_them(
    fleet: Any, client_for: Any, a40: GpuType
) -> None:
    client = client_for(fleet.users["operator"])
    created = client.post("/api/v1/workloads/", body(), format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["variants"] == [A40]
    workload = Workload.objects.get(deployment="summarise")
    assert [(v.gpu_type, v.deployment) for v in workload.variants.all()] == [(a40, "summarise-a40")]
    shown = client.get(f"/api/v1/workloads/{workload.pk}/").json()
    assert shown["variants"] == [A40]


def test_writing_the_list_replaces_the_variants_and_leaving_it_out_keeps_them(
    fleet: Any, client_for: Any, a40: GpuType, l4: GpuType
) -> None:
    client = client_for(fleet.users["operator"])
    pk = client.post("/api/v1/workloads/", body(), format="json").json()["id"]
    url = f"/api/v1/workloads/{pk}/"
    l4_variant = {"gpu_type": "L4-24GB", "deployment": "summarise-l4", "max_replicas": 2}
    replaced = client.patch(url, {"variants": [l4_variant]}, format="json")
    assert replaced.status_code == 200, replaced.json()
    assert replaced.json()["variants"] == [l4_variant | {"min_replicas": 0}]
    kept = client.patch(url, {"model_name": "meta-llama/Llama-3.1-8B"}, format="json")
    assert kept.json()["variants"] == [l4_variant | {"min_replicas": 0}]
    cleared = client.patch(url, {"variants": []}, format="json")
    assert cleared.json()["variants"] == []
    assert not WorkloadVariant.objects.exists()


# Each field of a variant, given a value that must be refused, and the message's start.
BAD_VARIANTS = {
    "unknown GPU type": (A40 | {"gpu_type": "H100-80GB"}, "gpu_type", "Object with name"),
    "the primary's type": (A40 | {"gpu_type": "A100-80GB"}, "gpu_type", "A100-80GB is the"),
    "missing Deployment": (A40 | {"deployment": "nope"}, "deployment", "Deployment nope not"),
    "the primary Deployment": (A40 | {"deployment": "summarise"}, "deployment", "That is the"),
    "not a DNS label": (A40 | {"deployment": "Summarise_A40"}, "deployment", "Use lowercase"),
    "min above max": (A40 | {"min_replicas": 5, "max_replicas": 2}, "min_replicas", "Min"),
    "max of 0": (A40 | {"max_replicas": 0}, "max_replicas", "Ensure this value"),
    "negative min": (A40 | {"min_replicas": -1}, "min_replicas", "Ensure this value"),
    "text for a number": (A40 | {"max_replicas": "6"}, "max_replicas", "Expected an integer"),
    "a field it has not": (A40 | {"namespace": "team-b"}, "namespace", "Unknown field"),
}


@pytest.mark.parametrize("case", BAD_VARIANTS, ids=list(BAD_VARIANTS))
def test_a_bad_variant_is_a_400_naming_its_field_and_writes_nothing(
    fleet: Any, client_for: Any, a40: GpuType, case: str
) -> None:
    variant, field, message = BAD_VARIANTS[case]
    client = client_for(fleet.users["operator"])
    refused = client.post("/api/v1/workloads/", body(variants=[variant]), format="json")
    assert refused.status_code == 400, refused.json()
    errors = refused.json()["errors"]["variants"]["0"]
    assert errors[field][0].startswith(message), errors
    assert not Workload.objects.filter(deployment="summarise").exists()
    assert not WorkloadVariant.objects.exists()


def test_a_type_or_deployment_listed_twice_is_refused(
    fleet: Any, client_for: Any, a40: GpuType
) -> None:
    client = client_for(fleet.users["operator"])
    twice = [A40, A40 | {"deployment": "summarise-l4"}]
    refused = client.post("/api/v1/workloads/", body(variants=twice), format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"]["variants"]["1"]["gpu_type"] == [
        "Listed twice in this workload's variants."
    ]
    assert not Workload.objects.filter(deployment="summarise").exists()


def test_a_deployment_has_one_owner_across_workloads_and_variants(
    fleet: Any, client_for: Any, a40: GpuType, l4: GpuType
) -> None:
    client = client_for(fleet.users["operator"])
    assert client.post("/api/v1/workloads/", body(), format="json").status_code == 201
    # Another workload may not take the variant's Deployment, as primary or as variant.
    as_primary = client.post(
        "/api/v1/workloads/",
        body(deployment="summarise-a40", gpu_type="A40-48GB", variants=[]),
        format="json",
    )
    assert as_primary.status_code == 400
    assert "already scaled by another workload" in as_primary.json()["errors"]["deployment"][0]
    as_variant = client.post(
        "/api/v1/workloads/",
        body(deployment="summarise-l4", gpu_type="L4-24GB"),
        format="json",
    )
    assert as_variant.status_code == 400
    message = as_variant.json()["errors"]["variants"]["0"]["deployment"][0]
    assert message.startswith("Deployment summarise-a40 in namespace team-a is already scaled")
    assert Workload.objects.filter(deployment__startswith="summarise").count() == 1


def test_another_tenants_deployment_is_never_a_variant(
    fleet: Any, client_for: Any, a40: GpuType
) -> None:
    """team-b's Deployment embed-a40 exists, in team-b's namespace: a team-a workload's
    variant names a Deployment of its own namespace only, and no field reaches team-b's."""
    operator = client_for(fleet.users["operator"])
    theirs = A40 | {"deployment": "embed-a40"}
    refused = operator.post("/api/v1/workloads/", body(variants=[theirs]), format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"]["variants"]["0"]["deployment"] == [
        "Deployment embed-a40 not found in namespace team-a on cluster east"
    ]
    # The workload in team-b's namespace: refused on namespace, its variants with it.
    moved = operator.post(
        "/api/v1/workloads/", body(namespace="team-b", variants=[theirs]), format="json"
    )
    assert moved.status_code == 400 and "namespace" in moved.json()["errors"]
    # Another tenant's workload: not even visible to change its variants.
    other = fleet.workloads["b"]
    hidden = operator.patch(f"/api/v1/workloads/{other.pk}/", {"variants": [theirs]}, format="json")
    assert hidden.status_code == 404
    outsider = client_for(fleet.users["outsider"])
    mine = operator.post("/api/v1/workloads/", body(), format="json").json()["id"]
    assert (
        outsider.patch(f"/api/v1/workloads/{mine}/", {"variants": []}, format="json").status_code
        == 404
    )
    assert [v.deployment for v in WorkloadVariant.objects.all()] == ["summarise-a40"]
    assert not WorkloadVariant.objects.filter(workload=other).exists()


def test_a_viewer_cannot_write_variants(fleet: Any, client_for: Any, a40: GpuType) -> None:
    operator = client_for(fleet.users["operator"])
    pk = operator.post("/api/v1/workloads/", body(variants=[]), format="json").json()["id"]
    viewer = client_for(fleet.users["viewer"])
    refused = viewer.patch(f"/api/v1/workloads/{pk}/", {"variants": [A40]}, format="json")
    assert refused.status_code == 403
    assert not WorkloadVariant.objects.exists()


def admin_variant(deployment: str, gpu_type: GpuType) -> dict[str, Any]:
    return {
        "variants-TOTAL_FORMS": "1",
        "variants-0-gpu_type": str(gpu_type.pk),
        "variants-0-deployment": deployment,
        "variants-0-min_replicas": "0",
        "variants-0-max_replicas": "3",
    }


def test_the_admin_edits_variants_inline_and_checks_their_deployment(
    fleet: Any, client: Any, change_form: Any, a40: GpuType
) -> None:
    client.force_login(fleet.users["staff"])
    workload = fleet.workloads["a"]
    url = f"/admin/scaling/workload/{workload.pk}/change/"
    missing = client.post(url, change_form(client, url, **admin_variant("nope", a40)))
    assert "Deployment nope not found in namespace team-a on cluster east" in (
        missing.content.decode()
    )
    assert not WorkloadVariant.objects.exists()
    theirs = client.post(url, change_form(client, url, **admin_variant("embed-a40", a40)))
    assert "Deployment embed-a40 not found in namespace team-a" in theirs.content.decode()
    saved = client.post(url, change_form(client, url, **admin_variant("summarise-a40", a40)))
    assert saved.status_code == 302
    variant = WorkloadVariant.objects.get(workload=workload)
    assert (variant.gpu_type, variant.deployment, variant.max_replicas) == (a40, "summarise-a40", 3)


def test_changing_the_primary_type_to_a_variants_is_refused_on_the_variant(
    fleet: Any, client_for: Any, a40: GpuType
) -> None:
    client = client_for(fleet.users["operator"])
    pk = client.post("/api/v1/workloads/", body(), format="json").json()["id"]
    refused = client.patch(f"/api/v1/workloads/{pk}/", {"gpu_type": "A40-48GB"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"]["variants"]["0"]["gpu_type"] == [
        "A40-48GB is the workload's own (primary) GPU type."
    ]
    assert Workload.objects.get(pk=pk).gpu_type.name == "A100-80GB"


def test_the_status_serves_each_types_replicas_as_observed(
    team_a: Any, cluster: Any, gpu_type: Any, make_workload: Any
) -> None:
    """status.types carries each type's Deployment replicas (spec) beside ready and desired,
    as the loop records them (TypeStatus.of); a status stored before it serves null."""
    from django.utils import timezone

    from api.serializers.scaling import WorkloadSerializer
    from clusters.kubernetes import DeploymentState
    from scaling.status import TypeStatus, WorkloadStatus

    found = make_workload(team_a, cluster, gpu_type, "chat")
    seen = DeploymentState("team-a", "chat", 3, 3, 2, gpu_products=frozenset({"x"}))
    typed = TypeStatus.of("A100-80GB", "x", seen, 1)
    found.status = WorkloadStatus(timezone.now(), "applied", "r", types=(typed,)).to_dict()
    served = WorkloadSerializer(found).data["status"]["types"]
    assert served == [
        {
            "gpu_type": "A100-80GB",
            "deployment": "chat",
            "ready": 2,
            "current": 3,
            "desired": 1,
            "warning": "",
        }
    ]
    del found.status["types"][0]["current"]  # written before the field existed
    assert WorkloadSerializer(found).data["status"]["types"][0]["current"] is None
