"""A workload for a Deployment that does not exist is refused (issue 15, part 3): the API
and the admin ask the cluster (a simulator here) when the Deployment is set or changed."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.models import Cluster
from scaling.models import Workload

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 4, "name_prefix": "a100"}
            ],
            "namespaces": ["team-a"],
            "workloads": [
                {
                    "namespace": "team-a",
                    "name": "summarise",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_type": "A100-80GB",
                    "replicas": 1,
                    "cold_start_s": 0.5,
                    "load": {"kind": "constant", "rate_rps": 1.0},
                }
            ],
        }
    ]
}
MISSING = "Deployment nope not found in namespace team-a on cluster east"


@pytest.fixture(scope="module")
def simulator_url(start_module_simulator: Any) -> str:
    url: str = start_module_simulator(FLEET, speed=4.0)
    return url


@pytest.fixture
def cluster(simulator_url: str) -> Cluster:
    """Overrides the shared fixture: east is the simulator's, so the check gets answers."""
    return Cluster.objects.create(name="east", api_url=f"{simulator_url}/east")


def body(deployment: str) -> dict[str, Any]:
    return {
        "tenant": "team-a",
        "cluster": "east",
        "namespace": "team-a",
        "deployment": deployment,
        "model_name": "Qwen/Qwen2.5-7B-Instruct",
        "gpu_type": "A100-80GB",
        "gpus_per_replica": 1,
    }


def test_an_existing_deployment_is_accepted(fleet: Any, client_for: Any) -> None:
    created = client_for(fleet.users["operator"]).post(
        "/api/v1/workloads/", body("summarise"), format="json"
    )
    assert created.status_code == 201, created.json()


def test_a_missing_deployment_is_a_400_on_deployment(fleet: Any, client_for: Any) -> None:
    refused = client_for(fleet.users["operator"]).post(
        "/api/v1/workloads/", body("nope"), format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["errors"]["deployment"] == [MISSING]
    assert not Workload.objects.filter(deployment="nope").exists()


def test_renaming_to_a_missing_deployment_is_refused(fleet: Any, client_for: Any) -> None:
    operator = client_for(fleet.users["operator"])
    created = operator.post("/api/v1/workloads/", body("summarise"), format="json").json()
    url = f"/api/v1/workloads/{created['id']}/"
    renamed = operator.patch(url, {"deployment": "nope"}, format="json")
    assert renamed.status_code == 400
    assert renamed.json()["errors"]["deployment"] == [MISSING]
    # A change that does not touch the target asks nothing and saves.
    assert operator.patch(url, {"gpus_per_replica": 2}, format="json").status_code == 200


def test_an_unreachable_cluster_saves_the_workload(fleet: Any, client_for: Any) -> None:
    Cluster.objects.filter(name="east").update(api_url="http://127.0.0.1:9/east")
    created = client_for(fleet.users["operator"]).post(
        "/api/v1/workloads/", body("nope"), format="json"
    )
    assert created.status_code == 201, created.json()


def test_the_admin_says_the_deployment_is_missing_beside_the_field(
    fleet: Any, client: Any, change_form: Any
) -> None:
    client.force_login(fleet.users["staff"])
    workload = fleet.workloads["a"]
    url = f"/admin/scaling/workload/{workload.pk}/change/"
    page = client.post(url, change_form(client, url, deployment="nope")).content.decode()
    # Django renders a field's errors in that field's row, just before its input.
    row = page.split('name="deployment"')[0].rsplit('class="form-row', 1)[1]
    assert MISSING in row
    workload.refresh_from_db()
    assert workload.deployment == "chat"


def test_the_admin_saves_when_the_cluster_cannot_answer_and_says_so(
    fleet: Any, client: Any, change_form: Any
) -> None:
    Cluster.objects.filter(name="east").update(api_url="http://127.0.0.1:9/east")
    client.force_login(fleet.users["staff"])
    workload = fleet.workloads["a"]
    url = f"/admin/scaling/workload/{workload.pk}/change/"
    page = client.post(url, change_form(client, url, deployment="nope"), follow=True)
    text = page.content.decode()
    assert "Deployment nope in namespace team-a could not be checked: cluster east&#x27;s API " in (
        text
    )
    assert "refused the connection" in text
    workload.refresh_from_db()
    assert workload.deployment == "nope"
