"""Declarative configuration: export, import with a diff, idempotence, validation, history,
both through the management commands and through /api/v1/config/."""

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from clusters.models import Cluster
from history.models import Change
from quotas.models import GpuType, Quota
from scaling.models import ScalingPolicy, WorkloadVariant
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_export_names_objects_by_natural_keys_and_never_credentials(fleet: Any) -> None:
    fleet.cluster.credential = "top-secret-token"
    fleet.cluster.save()
    text = run("export_config")
    document = yaml.safe_load(text)
    assert "top-secret" not in text and "credential" not in text
    assert [t["slug"] for t in document["tenants"]][:2] == ["acme", "globex"]  # orgs first
    team_a = next(t for t in document["tenants"] if t["slug"] == "team-a")
    assert team_a["parent"] == "acme" and "id" not in team_a
    quota = next(q for q in document["quotas"] if q["tenant"] == "team-a")
    assert quota == {
        "tenant": "team-a",
        "gpu_type": "A100-80GB",
        "nominal": 8,
        "borrowing_limit": None,
        "lending_limit": None,
        "max_replicas_per_workload": None,
        "reclaim_grace_s": None,
    }
    workload = next(w for w in document["workloads"] if w["deployment"] == "chat")
    assert workload["cluster"] == "east" and workload["policy"]["target"] == 8.0
    assert "version" not in workload["policy"] and "id" not in workload["policy"]


def test_reimporting_an_export_changes_nothing(fleet: Any, tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(run("export_config"))
    versions = list(ScalingPolicy.objects.values_list("version", flat=True))
    output = run("import_config", str(path))
    assert "No changes" in output
    assert list(ScalingPolicy.objects.values_list("version", flat=True)) == versions
    assert not Change.objects.exists()


def test_import_shows_a_diff_applies_it_and_records_history(fleet: Any, tmp_path: Path) -> None:
    document = yaml.safe_load(run("export_config"))
    document["tenants"].append({"slug": "team-z", "name": "Team Z", "parent": "acme"})
    next(q for q in document["quotas"] if q["tenant"] == "team-a")["nominal"] = 11
    document["quotas"].append({"tenant": "team-z", "gpu_type": "A100-80GB", "nominal": 2})
    document["workloads"][0]["policy"]["max_replicas"] = 33
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(document))

    dry = run("import_config", str(path), "--dry-run")
    assert "+ tenant team-z" in dry and "nominal: 8 -> 11" in dry and "would be applied" in dry
    assert not Tenant.objects.filter(slug="team-z").exists() and not Change.objects.exists()

    applied = run("import_config", str(path))
    assert "2 created, 2 updated" in applied
    assert Tenant.objects.get(slug="team-z").parent == fleet.acme
    changes = Change.objects.all()
    assert {c.reason for c in changes} == {"import_config"} and changes.count() == 4
    policy = ScalingPolicy.objects.get(max_replicas=33)
    assert policy.version == 2
    assert "No changes" in run("import_config", str(path))


def test_invalid_document_changes_nothing_and_names_every_error(fleet: Any, tmp_path: Path) -> None:
    document = yaml.safe_load(run("export_config"))
    document["tenants"].append({"slug": "Bad_Slug", "name": "x"})
    document["quotas"][0]["nominal"] = -3
    document["quotas"][1]["lending_limit"] = 99
    document["gpu_types"].append({"name": "H100", "memory_gib": 80, "node_label": "h", "x": 1})
    document["tenants"][0]["name"] = "Renamed"  # valid, but must not land either
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(document))
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("import_config", str(path), stdout=io.StringIO(), stderr=err)
    messages = err.getvalue()
    assert "slug" in messages and "nominal" in messages and "lending_limit" in messages
    assert "gpu_types[1].x: Unknown field." in messages
    assert Tenant.objects.get(slug="acme").name == "Acme"
    assert not Change.objects.exists()


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        "tenants: 5",
        "a: &x [1]\nb: *x",
        "quotas: [{nominal: .nan}]",
        "{{{",
        "wat: 1",
        "gpu_types: [{name: x, memory_gib: 1, node_label: y, relative_throughput: 1"
        + "0" * 400
        + "}]",
    ],
)
def test_malformed_files_are_refused(fleet: Any, tmp_path: Path, text: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(CommandError):
        call_command("import_config", str(path), stdout=io.StringIO(), stderr=io.StringIO())


def test_config_over_the_api_is_staff_only(fleet: Any, client_for: Any) -> None:
    for role in ("viewer", "operator", "admin", "org_operator"):
        client = client_for(fleet.users[role])
        assert client.get("/api/v1/config/").status_code == 403
        assert client.post("/api/v1/config/", {}, format="json").status_code == 403


def test_config_export_and_import_over_the_api(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    exported = staff.get("/api/v1/config/?format=yaml")
    assert exported.status_code == 200 and exported["Content-Type"].startswith("application/yaml")
    document = yaml.safe_load(exported.content)
    assert staff.get("/api/v1/config/").json() == document
    document["clusters"][0]["enabled"] = False
    dry = staff.post("/api/v1/config/?dry_run=1", document, format="json")
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    assert dry.json()["changes"] == [
        {"action": "update", "kind": "cluster", "key": "east", "fields": {"enabled": [True, False]}}
    ]
    assert Cluster.objects.get(name="east").enabled is True
    body = yaml.safe_dump(document)
    applied = staff.post("/api/v1/config/", body, content_type="application/yaml")
    assert applied.status_code == 200 and applied.json()["changes"]
    assert Cluster.objects.get(name="east").enabled is False
    again = staff.post("/api/v1/config/", body, content_type="application/yaml")
    assert again.json()["changes"] == [] and "No changes" in again.json()["summary"]


def test_config_unknown_format_is_a_json_400(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    for query in ("?format=xml", "?format="):
        response = staff.get(f"/api/v1/config/{query}")
        assert response.status_code == 400 and "format" in response.json()["errors"]
    assert staff.post("/api/v1/config/?dry_run=maybe", {}, format="json").status_code == 400


def test_config_import_errors_over_the_api_are_field_errors(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    document = {"quotas": [{"tenant": "team-a", "gpu_type": "A100-80GB", "nominal": -1}]}
    response = staff.post("/api/v1/config/", document, format="json")
    assert response.status_code == 400
    assert "quotas[0].nominal" in response.json()["errors"]
    assert Quota.objects.get(pk=fleet.quotas["a"].pk).nominal == 8


def test_a_config_round_trip_over_the_api_keeps_a_workloads_variants(
    fleet: Any, client_for: Any
) -> None:
    a40 = GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.30", node_label="NVIDIA-A40"
    )
    chat = fleet.workloads["a"]
    WorkloadVariant.objects.create(
        workload=chat, gpu_type=a40, deployment="chat-a40", min_replicas=1, max_replicas=6
    )
    staff = client_for(fleet.users["staff"])
    document = yaml.safe_load(staff.get("/api/v1/config/?format=yaml").content)
    entry = next(w for w in document["workloads"] if w["deployment"] == "chat")
    assert entry["variants"] == [
        {"gpu_type": "A40-48GB", "deployment": "chat-a40", "min_replicas": 1, "max_replicas": 6}
    ]
    assert all("variants" not in w for w in document["workloads"] if w["deployment"] != "chat")

    # Lost from the database, the variant comes back from the document as it was.
    WorkloadVariant.objects.all().delete()
    restored = staff.post(
        "/api/v1/config/", yaml.safe_dump(document), content_type="application/yaml"
    )
    assert restored.status_code == 200, restored.content
    assert [c["kind"] for c in restored.json()["changes"]] == ["variant"]
    assert restored.json()["changes"][0]["key"] == f"{chat} on A40-48GB"
    variant = WorkloadVariant.objects.get()
    assert (variant.workload, variant.gpu_type, variant.deployment) == (chat, a40, "chat-a40")
    assert (variant.min_replicas, variant.max_replicas) == (1, 6)
    assert staff.get("/api/v1/config/").json() == document

    entry["variants"][0]["max_replicas"] = 3
    changed = staff.post("/api/v1/config/", document, format="json").json()["changes"]
    assert changed == [
        {
            "action": "update",
            "kind": "variant",
            "key": f"{chat} on A40-48GB",
            "fields": {"max_replicas": [6, 3]},
        }
    ]
    assert staff.post("/api/v1/config/", document, format="json").json()["changes"] == []


def test_a_config_variant_is_validated_like_the_models(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    document = yaml.safe_load(staff.get("/api/v1/config/?format=yaml").content)
    entry = next(w for w in document["workloads"] if w["deployment"] == "chat")
    entry["variants"] = [{"gpu_type": "A100-80GB", "deployment": "chat-2"}, {"gpu_type": "B200"}]
    response = staff.post("/api/v1/config/", document, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    index = document["workloads"].index(entry)
    assert f"workloads[{index}].variants[0].gpu_type" in errors  # the primary's own type
    assert f"workloads[{index}].variants[1].gpu_type" in errors  # no such GPU type
    assert not WorkloadVariant.objects.exists()
