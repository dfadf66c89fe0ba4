"""Quota and policy editing through the Django admin's HTTP views."""

import re

import pytest

from history.models import Change
from quotas.models import Quota


def errors(response):
    return re.findall(
        r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S
    )


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("root", staff=True))
    return client


def quota_form(quota, **changes):
    data = {
        "tenant": quota.tenant_id,
        "gpu_type": quota.gpu_type_id,
        "nominal": quota.nominal,
        "borrowing_limit": "" if quota.borrowing_limit is None else quota.borrowing_limit,
        "lending_limit": "" if quota.lending_limit is None else quota.lending_limit,
        "max_replicas_per_workload": "",
        "change_reason": "",
    }
    data.update(changes)
    return data


@pytest.fixture
def quota(team_a, gpu_type):
    return Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=8)


def test_lending_limit_above_nominal_shows_a_plain_error_and_writes_nothing(
    admin_client, quota, change_form
):
    url = f"/admin/quotas/quota/{quota.pk}/change/"
    response = admin_client.post(url, change_form(admin_client, url, lending_limit=9))
    assert response.status_code == 200
    assert "The lending limit must be between 0 and nominal GPUs." in response.content.decode()
    quota.refresh_from_db()
    assert quota.lending_limit is None
    assert not Change.objects.exists()


def test_negative_quota_is_refused(admin_client, quota, change_form):
    response = admin_client.post(
        f"/admin/quotas/quota/{quota.pk}/change/", quota_form(quota, nominal=-2)
    )
    assert response.status_code == 200
    assert "errornote" in response.content.decode()
    quota.refresh_from_db()
    assert quota.nominal == 8


def test_quota_edit_is_kept_in_history_with_reason(admin_client, quota, change_form):
    url = f"/admin/quotas/quota/{quota.pk}/change/"
    data = change_form(
        admin_client, url, nominal=12, borrowing_limit=2, change_reason="Q4 capacity"
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, errors(response)
    change = Change.objects.get()
    assert change.reason == "Q4 capacity"
    assert change.actor is not None and change.actor.username == "root"
    assert change.changed_fields == {"nominal": (8, 12), "borrowing_limit": (None, 2)}
    page = admin_client.get(f"/admin/quotas/quota/{quota.pk}/change/").content.decode()
    assert "Q4 capacity" in page and "nominal: 8 → 12" in page


def test_quotas_are_edited_inline_on_the_tenant_page(admin_client, team_a, gpu_type, change_form):
    url = f"/admin/tenants/tenant/{team_a.pk}/change/"
    data = change_form(admin_client, url, change_reason="new A100s")
    data.update(
        {
            "quotas-TOTAL_FORMS": "1",
            "quotas-0-gpu_type": gpu_type.pk,
            "quotas-0-nominal": 6,
            "quotas-0-lending_limit": 2,
        }
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, errors(response)
    quota = Quota.objects.get(tenant=team_a)
    assert (quota.nominal, quota.lending_limit) == (6, 2)
    assert Change.objects.filter(object_id=quota.pk, reason="new A100s").exists()


def test_quota_list_filters_by_organisation_and_gpu_type(admin_client, quota, other_org, gpu_type):
    Quota.objects.create(tenant=other_org, gpu_type=gpu_type, nominal=3)
    page = admin_client.get(f"/admin/quotas/quota/?organisation={quota.tenant.parent_id}")
    results = page.content.decode().split('id="result_list"')[1].split("</table>")[0]
    assert "team-a" in results and "globex" not in results
    page = admin_client.get(f"/admin/quotas/quota/?gpu_type__id__exact={gpu_type.pk}")
    assert page.status_code == 200


def test_policy_min_above_max_shows_a_plain_error(
    admin_client, team_a, cluster, gpu_type, make_workload, change_form
):
    policy = make_workload(team_a, cluster, gpu_type, "chat").policy
    url = f"/admin/scaling/scalingpolicy/{policy.pk}/change/"
    data = change_form(admin_client, url, min_replicas=6, max_replicas=3)
    response = admin_client.post(url, data)
    assert "Min replicas cannot be above max replicas." in response.content.decode()
    policy.refresh_from_db()
    assert (policy.min_replicas, policy.max_replicas, policy.version) == (1, 10, 1)


def test_the_admin_takes_a_predictive_policy_without_a_target_but_not_an_hpa_one(
    admin_client, team_a, cluster, gpu_type, make_workload, change_form
):
    policy = make_workload(team_a, cluster, gpu_type, "chat").policy
    url = f"/admin/scaling/scalingpolicy/{policy.pk}/change/"
    refused = admin_client.post(url, change_form(admin_client, url, target=""))
    assert "required by the hpa algorithm" in refused.content.decode()
    policy.refresh_from_db()
    assert policy.target is not None and policy.version == 1
    data = change_form(admin_client, url, algorithm="predictive", target="")
    assert admin_client.post(url, data).status_code == 302
    policy.refresh_from_db()
    assert (policy.algorithm, policy.target, policy.version) == ("predictive", None, 2)
