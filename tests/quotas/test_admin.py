"""The quota admin shows usage and previews a change before it is saved."""

from datetime import UTC, datetime

import pytest

from quotas.models import Quota


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("root", staff=True))
    return client


def demand(workload, name, tenant, current, wanted, gpus=1, minimum=0, grown_at=0.0):
    return {
        "workload": workload,
        "name": name,
        "tenant": tenant,
        "gpus_per_replica": gpus,
        "current": current,
        "wanted": wanted,
        "minimum": minimum,
        "grown_at": grown_at,
        "waiting_since": 0.0,
    }


@pytest.fixture
def cohort(team_a, team_b, gpu_type):
    """team-a lends its idle A100s; team-b borrows 3 of them (as the loop last observed)."""
    lender = Quota.objects.create(
        tenant=team_a,
        gpu_type=gpu_type,
        nominal=6,
        used_gpus=1,
        demands=[demand(1, "east/team-a/chat", "team-a", current=1, wanted=1)],
    )
    borrower = Quota.objects.create(
        tenant=team_b,
        gpu_type=gpu_type,
        nominal=2,
        used_gpus=5,
        warming_gpus=1,
        demands=[demand(2, "east/team-b/batch", "team-b", current=5, wanted=7, minimum=1)],
    )
    return lender, borrower


def test_quota_list_shows_used_borrowed_lent_warming_and_available(admin_client, cohort):
    page = admin_client.get("/admin/quotas/quota/").content.decode()
    rows = page.split('id="result_list"')[1].split("</table>")[0]
    lender_row = next(r for r in rows.split("<tr") if "team-a" in r)
    borrower_row = next(r for r in rows.split("<tr") if "team-b" in r)
    cells = lambda row: [c.split(">", 1)[1].split("<")[0] for c in row.split("<td")[1:]]  # noqa: E731
    # nominal, borrowing, lending, used, borrowed, lent, warming, available, max replicas
    assert cells(lender_row)[2:10] == ["6", "-", "-", "1", "0", "3", "0", "2"]
    assert cells(borrower_row)[2:10] == ["2", "-", "-", "5", "3", "0", "1", "2"]


def test_preview_shows_who_would_grow_or_be_reclaimed_without_saving(admin_client, cohort):
    lender, _ = cohort
    # team-a's own workload now wants 6 of its A100s, but its nominal is only 1.
    lender.nominal = 1
    lender.demands = [demand(1, "east/team-a/chat", "team-a", current=1, wanted=6)]
    lender.save()
    url = f"/admin/quotas/quota/{lender.pk}/preview/"
    query = {"tenant": lender.tenant_id, "gpu_type": lender.gpu_type_id, "nominal": 6}
    page = admin_client.post(url, query).content.decode()
    table = page.split("<tbody>")[1].split("</tbody>")[0]
    rows = [r for r in table.split("<tr>") if "<td>" in r]
    cells = [
        [
            c.split("</td>")[0].replace("<strong>", "").replace("</strong>", "")
            for c in r.split("<td>")[1:]
        ]
        for r in rows
    ]
    # workload, tenant, holding, wants, granted now, granted with the change, effect
    assert cells == [
        ["east/team-a/chat", "team-a", "1", "6", "1", "3", "allowed to grow"],
        ["east/team-b/batch", "team-b", "5", "7", "5", "2", "reclaimed"],
    ]
    assert "Nothing has been saved" in page
    lender.refresh_from_db()
    assert lender.nominal == 1


def test_preview_shows_a_lowered_quota_reclaiming_at_once_with_a_zero_grace(admin_client, cohort):
    _, borrower = cohort  # holds 5 of its nominal 2 + whatever it borrows
    url = f"/admin/quotas/quota/{borrower.pk}/preview/"
    query = {"tenant": borrower.tenant_id, "gpu_type": borrower.gpu_type_id, "nominal": 2}
    lowered = query | {"borrowing_limit": 1}

    def effect(values):
        page = admin_client.post(url, values).content.decode()
        row = next(r for r in page.split("<tbody>")[1].split("<tr>") if "team-b/batch" in r)
        return (
            row.split("<td>")[-1].split("</td>")[0].replace("<strong>", "").replace("</strong>", "")
        )

    # No grace period: nothing shrinks, but team-b (5 GPUs) is over its new 2 + 1 and stuck.
    assert effect(lowered) == "over its new limit of 3 GPUs (uses 5): can no longer grow"
    assert effect(lowered | {"reclaim_grace_s": 0}) == "reclaimed"  # 5 -> 3 at once


def test_preview_of_invalid_values_says_so(admin_client, cohort):
    lender, _ = cohort
    page = admin_client.post(
        f"/admin/quotas/quota/{lender.pk}/preview/",
        {
            "tenant": lender.tenant_id,
            "gpu_type": lender.gpu_type_id,
            "nominal": 2,
            "lending_limit": 5,
        },
    ).content.decode()
    assert "not valid" in page
    assert "The lending limit must be between 0 and nominal GPUs." in page


def test_change_form_has_the_preview_button(admin_client, cohort):
    lender, _ = cohort
    page = admin_client.get(f"/admin/quotas/quota/{lender.pk}/change/").content.decode()
    assert f"/admin/quotas/quota/{lender.pk}/preview/" in page
    assert 'formmethod="post"' in page


def test_preview_says_a_tenant_over_its_lowered_nominal_can_no_longer_grow(admin_client, cohort):
    # The case: nominal 8 -> 2 with no reclaim grace; 8 used, limit then 2 + 4.
    lender, _ = cohort
    lender.nominal, lender.used_gpus = 8, 8
    lender.demands = [demand(1, "east/team-a/chat", "team-a", current=8, wanted=8)]
    lender.save()
    values = {"tenant": lender.tenant_id, "gpu_type": lender.gpu_type_id, "nominal": 2}
    page = admin_client.post(
        f"/admin/quotas/quota/{lender.pk}/preview/", values | {"borrowing_limit": 4}
    ).content.decode()
    row = next(r for r in page.split("<tbody>")[1].split("<tr>") if "team-a/chat" in r)
    assert "over its new limit of 6 GPUs (uses 8): can no longer grow" in row
    assert "unchanged" not in row


def test_preview_is_a_post_with_one_heading_and_a_plain_time(admin_client, cohort):
    lender, _ = cohort
    url = f"/admin/quotas/quota/{lender.pk}/preview/"
    values = {"tenant": lender.tenant_id, "gpu_type": lender.gpu_type_id, "nominal": 6}
    # A GET would put the change form's CSRF token in the URL (and in logs): refused.
    assert admin_client.get(url, values).status_code == 405
    lender.usage_at = datetime(2026, 12, 3, 7, 31, 5, tzinfo=UTC)
    lender.save()
    page = admin_client.post(url, values).content.decode()
    assert page.count("<h1>") == 1
    assert "2026-12-03 07:31:05 UTC</time>. Nothing has been saved" in page
    assert "a.m." not in page


def test_preview_checks_the_csrf_token(client, make_user, cohort):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("root2", staff=True))
    lender, _ = cohort
    response = strict.post(f"/admin/quotas/quota/{lender.pk}/preview/", {"nominal": 6})
    assert response.status_code == 403
