"""The live what-if through the API: ``POST /api/v1/policies/<id>/whatif/``."""

from dataclasses import replace
from typing import Any

import pytest

from history.models import Change
from scaling.backtest import replay_signals
from scaling.models import ScalingPolicy
from tests.dashboard.test_whatif import form_data, store_load

pytestmark = pytest.mark.django_db


def url(policy: ScalingPolicy) -> str:
    return f"/api/v1/policies/{policy.pk}/whatif/"


def test_an_operator_gets_the_dashboards_body_and_nothing_is_saved(
    fleet: Any, client_for: Any, client: Any
) -> None:
    workload = fleet.workloads["a"]
    policy = workload.policy
    stored = store_load(workload, 1800)
    response = client_for(fleet.users["operator"]).post(
        url(policy), {"target": 5, "window": 3600}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    expected = replay_signals(replace(policy.engine_params(), target=5.0), stored)
    assert body["whatif"] == [d.desired for d in expected]
    assert body["observed"] == [2] * len(stored)
    # The dashboard's endpoint answers the same replay.
    client.force_login(fleet.users["operator"])
    page = client.post(
        f"/workloads/{workload.pk}/whatif/", {**form_data(policy, target=5), "window": "3600"}
    ).json()
    keys = ("t", "observed", "whatif", "reasons", "summary", "slo", "slo_note")
    for key in (*keys, "price_per_gpu_hour", "price_source", "cost_note"):
        assert body[key] == page[key], key
    policy.refresh_from_db()
    assert policy.version == 1 and policy.target != 5
    assert not Change.objects.filter(object_id=policy.pk, reason="api").exists()


def test_the_window_picks_the_tail(fleet: Any, client_for: Any) -> None:
    workload = fleet.workloads["a"]
    store_load(workload, 1800)
    operator = client_for(fleet.users["operator"])
    hour = operator.post(url(workload.policy), {}, format="json").json()
    short = operator.post(url(workload.policy), {"window": 900}, format="json").json()
    assert hour["window_s"] == 3600 and short["window_s"] == 900
    assert 0 < len(short["t"]) < len(hour["t"]) and short["t"][-1] == hour["t"][-1]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": -1}, "target"),
        ({"min_replicas": 9, "max_replicas": 2}, "max_replicas"),
        ({"window": 60}, "window"),
        ({"version": 7}, "version"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"metric": "vllm:num_requests_waiting"}, "metric"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(
    fleet: Any, client_for: Any, body: dict[str, Any], field: str
) -> None:
    policy = fleet.workloads["a"].policy
    response = client_for(fleet.users["operator"]).post(url(policy), body, format="json")
    assert response.status_code == 400, response.content
    assert field in str(response.json()), response.json()


def test_a_viewer_is_refused_and_another_tenants_policy_is_not_found(
    fleet: Any, client_for: Any
) -> None:
    mine, theirs = fleet.workloads["a"].policy, fleet.workloads["g"].policy
    assert client_for(fleet.users["viewer"]).post(url(mine), {}, format="json").status_code == 403
    operator = client_for(fleet.users["operator"])
    foreign = operator.post(url(theirs), {}, format="json")
    missing = operator.post("/api/v1/policies/999999/whatif/", {}, format="json")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content


def test_the_action_is_in_the_schema(fleet: Any, client_for: Any) -> None:
    schema = client_for(fleet.users["operator"]).get("/api/v1/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/policies/{id}/whatif/"]["post"]
    assert "200" in operation["responses"] and "requestBody" in operation
