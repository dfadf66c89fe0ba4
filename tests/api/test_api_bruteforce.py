"""Guessing through the API: bad tokens are throttled per client IP, and the membership
endpoint does not tell someone who may not add members which usernames exist."""

import time
from typing import Any

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from tenants.models import Membership

pytestmark = pytest.mark.django_db

ATTACKER, OTHER = "10.1.0.1", "10.1.0.2"


def bad_token(client: APIClient, n: int) -> Any:
    return client.get(
        "/api/v1/workloads/", HTTP_AUTHORIZATION=f"Token {n:040x}", REMOTE_ADDR=ATTACKER
    )


def test_a_flood_of_bad_tokens_from_one_ip_answers_429(fleet: Any, client_for: Any) -> None:
    limit = django_settings.API_AUTH_FAILURE_LIMIT
    anonymous = APIClient()
    assert [bad_token(anonymous, n).status_code for n in range(limit)] == [401] * limit
    refused = bad_token(anonymous, limit)
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert 0 < retry_after <= django_settings.API_AUTH_FAILURE_WINDOW_S
    assert "failed token authentications" in refused.json()["detail"]

    # From that IP even a valid token is refused: a guess that hit must not be told so.
    viewer = client_for(fleet.users["viewer"])
    assert viewer.get("/api/v1/workloads/", REMOTE_ADDR=ATTACKER).status_code == 429
    # Another IP's valid token, and a browser session from the attacker's IP, are unaffected.
    assert viewer.get("/api/v1/workloads/", REMOTE_ADDR=OTHER).status_code == 200
    session = APIClient()
    session.force_login(fleet.users["viewer"])
    assert session.get("/api/v1/workloads/", REMOTE_ADDR=ATTACKER).status_code == 200
    # A client-set X-Forwarded-For does not make the attacker someone else.
    spoofed = viewer.get(
        "/api/v1/workloads/", REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.7"
    )
    assert spoofed.status_code == 429


def test_failures_under_the_limit_do_not_block(fleet: Any, client_for: Any) -> None:
    anonymous = APIClient()
    for n in range(django_settings.API_AUTH_FAILURE_LIMIT - 1):
        assert bad_token(anonymous, n).status_code == 401
    viewer = client_for(fleet.users["viewer"])
    assert viewer.get("/api/v1/workloads/", REMOTE_ADDR=ATTACKER).status_code == 200


def test_the_block_ends_after_the_window(fleet: Any, client_for: Any, settings: Any) -> None:
    settings.API_AUTH_FAILURE_LIMIT = 3
    settings.API_AUTH_FAILURE_WINDOW_S = 1
    anonymous = APIClient()
    assert [bad_token(anonymous, n).status_code for n in range(4)] == [401, 401, 401, 429]
    time.sleep(1.2)
    viewer = client_for(fleet.users["viewer"])
    assert viewer.get("/api/v1/workloads/", REMOTE_ADDR=ATTACKER).status_code == 200


# --- Membership: no username oracle -----------------------------------------------------------


def add_member(client: APIClient, **body: Any) -> tuple[int, Any]:
    response = client.post("/api/v1/memberships/", {"role": "viewer", **body}, format="json")
    return response.status_code, response.json()


@pytest.mark.parametrize("who", ["viewer", "operator", "outsider", "nobody"])
@pytest.mark.parametrize(
    "tenant",
    [{"tenant": "team-a"}, {"tenant": "globex-ml"}, {"tenant": "no-such-tenant"}, {}],
    ids=["team-a", "other-org", "unknown-tenant", "no-tenant"],
)
def test_a_non_admin_cannot_tell_an_unknown_username_from_a_known_one(
    fleet: Any, client_for: Any, who: str, tenant: dict[str, str]
) -> None:
    client = client_for(fleet.users[who])
    before = Membership.objects.count()
    unknown = add_member(client, user="no-such-user", **tenant)
    known = add_member(client, user="gina", **tenant)  # exists, member of globex
    assert unknown == known
    assert unknown[0] in (400, 403)
    assert "user" not in (unknown[1].get("errors") or {})
    assert Membership.objects.count() == before


def test_a_viewer_gets_403_for_any_username_on_its_own_tenant(fleet: Any, client_for: Any) -> None:
    viewer = client_for(fleet.users["viewer"])
    for username in ("no-such-user", "gina", "adam"):
        status, body = add_member(viewer, user=username, tenant="team-a")
        assert status == 403, body
        assert body == {"detail": "Your role on this tenant does not allow this change."}


def test_a_tenant_admin_still_adds_members_and_hears_about_typos(
    fleet: Any, client_for: Any
) -> None:
    admin = client_for(fleet.users["admin"])
    status, body = add_member(admin, user="no-such-user", tenant="team-a")
    assert status == 400 and "user" in body["errors"], body
    status, body = add_member(admin, user="gina", tenant="team-a")
    assert status == 201, body
    assert Membership.objects.filter(user__username="gina", tenant__slug="team-a").exists()
