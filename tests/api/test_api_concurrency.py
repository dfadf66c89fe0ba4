"""ETag / If-Match: a write based on a stale read answers 412 and changes nothing."""

from typing import Any

import pytest

from history.models import Change
from quotas.models import Quota
from scaling.models import ScalingPolicy

pytestmark = pytest.mark.django_db


def test_policy_etag_is_its_version_and_moves_on_every_change(fleet: Any, client_for: Any) -> None:
    operator = client_for(fleet.users["operator"])
    url = f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/"
    read = operator.get(url)
    assert read["ETag"] == '"v1"'
    versions = []
    for target in (9, 10, 11):
        response = operator.patch(
            url, {"target": target}, format="json", HTTP_IF_MATCH=read["ETag"]
        )
        assert response.status_code == 200
        versions.append(response.json()["version"])
        read = response
    assert versions == [2, 3, 4]
    assert operator.get(url)["ETag"] == '"v4"'


def test_stale_if_match_answers_412_and_writes_nothing(fleet: Any, client_for: Any) -> None:
    first, second = client_for(fleet.users["operator"]), client_for(fleet.users["org_operator"])
    url = f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/"
    etag = first.get(url)["ETag"]
    assert second.patch(url, {"target": 20}, format="json", HTTP_IF_MATCH=etag).status_code == 200
    stale = first.patch(url, {"target": 30}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412 and "ETag" in stale.json()["detail"]
    policy = ScalingPolicy.objects.get(pk=fleet.workloads["a"].policy.pk)
    assert policy.target == 20 and policy.version == 2
    assert Change.objects.filter(object_id=policy.pk).count() == 1


def test_put_and_delete_honour_if_match_too(fleet: Any, client_for: Any) -> None:
    staff = client_for(fleet.users["staff"])
    url = f"/api/v1/quotas/{fleet.quotas['a'].pk}/"
    body = staff.get(url).json()
    body["nominal"] = 10
    assert staff.put(url, body, format="json", HTTP_IF_MATCH='"nope"').status_code == 412
    assert staff.delete(url, HTTP_IF_MATCH='"nope"').status_code == 412
    assert Quota.objects.get(pk=fleet.quotas["a"].pk).nominal == 8
    etag = staff.get(url)["ETag"]
    assert staff.put(url, body, format="json", HTTP_IF_MATCH=etag).status_code == 200
    assert staff.get(url)["ETag"] != etag
    assert staff.delete(url, HTTP_IF_MATCH="*").status_code == 204


@pytest.mark.parametrize("name", ["tenants", "gpu-types", "clusters", "quotas", "workloads"])
def test_every_detail_carries_an_etag_that_changes_with_the_object(
    fleet: Any, client_for: Any, name: str
) -> None:
    staff = client_for(fleet.users["staff"])
    first = staff.get(f"/api/v1/{name}/").json()["results"][0]
    url = f"/api/v1/{name}/{first['id']}/"
    etag = staff.get(url)["ETag"]
    assert etag.startswith('"') and staff.get(url)["ETag"] == etag
    field = {
        "tenants": "name",
        "gpu-types": "node_label",
        "clusters": "kubeconfig_context",
        "quotas": "max_replicas_per_workload",
        "workloads": "model_name",
    }[name]
    value = 7 if field == "max_replicas_per_workload" else "changed-value"
    response = staff.patch(url, {field: value}, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.json()
    assert response["ETag"] != etag == etag
    assert staff.patch(url, {field: value}, format="json", HTTP_IF_MATCH=etag).status_code == 412


def test_weak_etags_never_match(fleet: Any, client_for: Any) -> None:
    operator = client_for(fleet.users["operator"])
    url = f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/"
    response = operator.patch(url, {"target": 3}, format="json", HTTP_IF_MATCH='W/"v1"')
    assert response.status_code == 412


def test_if_match_is_checked_after_scoping_and_role(fleet: Any, client_for: Any) -> None:
    # A stale tag on someone else's object still reads as "not found"; on a visible object
    # without the role as "forbidden": the 412 never tells an outsider anything.
    foreign = f"/api/v1/policies/{fleet.workloads['g'].policy.pk}/"
    viewer = client_for(fleet.users["viewer"])
    assert viewer.patch(foreign, {}, format="json", HTTP_IF_MATCH='"x"').status_code == 404
    own = f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/"
    assert viewer.patch(own, {}, format="json", HTTP_IF_MATCH='"x"').status_code == 403


def test_history_records_actor_before_and_after_for_quota_changes(
    fleet: Any, client_for: Any
) -> None:
    staff = client_for(fleet.users["staff"])
    staff.patch(f"/api/v1/quotas/{fleet.quotas['a'].pk}/", {"nominal": 12}, format="json")
    change = Change.objects.get(object_id=fleet.quotas["a"].pk, content_type__model="quota")
    assert change.actor == fleet.users["staff"] and change.action == "update"
    assert change.changed_fields == {"nominal": (8, 12)}
