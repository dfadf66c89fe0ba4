"""Quota usage and the preview of a quota change, over the API."""

from typing import Any

from quotas.models import Quota


def demand(workload: int, name: str, tenant: str, current: int, wanted: int) -> dict[str, Any]:
    return {
        "workload": workload,
        "name": name,
        "tenant": tenant,
        "gpus_per_replica": 1,
        "current": current,
        "wanted": wanted,
        "minimum": 0,
        "grown_at": 0.0,
        "waiting_since": 0.0,
    }


def observe(fleet: Any) -> None:
    """What the control loop would have written: team-b borrows 5 of team-a's idle GPUs."""
    Quota.objects.filter(pk=fleet.quotas["a"].pk).update(
        nominal=1, used_gpus=1, demands=[demand(1, "east/team-a/chat", "team-a", 1, 6)]
    )
    Quota.objects.filter(pk=fleet.quotas["b"].pk).update(
        nominal=2,
        used_gpus=5,
        warming_gpus=1,
        demands=[demand(2, "east/team-b/embed", "team-b", 5, 7)],
    )


def test_usage_is_readable_by_members(fleet: Any, client_for: Any) -> None:
    observe(fleet)
    response = client_for(fleet.users["viewer"]).get(
        f"/api/v1/quotas/{fleet.quotas['a'].pk}/usage/"
    )
    assert response.status_code == 200, response.json()
    assert response.json() | {"observed_at": None} == {
        "used": 1,
        "borrowed": 0,
        "lent": 0,
        "warming": 0,
        "available": 0,
        "observed_at": None,
    }
    other = client_for(fleet.users["viewer"]).get(f"/api/v1/quotas/{fleet.quotas['g'].pk}/usage/")
    assert other.status_code == 404


def test_preview_shows_effects_without_saving(fleet: Any, client_for: Any) -> None:
    observe(fleet)
    quota = fleet.quotas["a"]
    response = client_for(fleet.users["staff"]).post(
        f"/api/v1/quotas/{quota.pk}/preview/", {"nominal": 6}, format="json"
    )
    assert response.status_code == 200, response.json()
    effects = {e["name"]: (e["before"], e["after"], e["effect"]) for e in response.json()}
    assert effects == {
        "east/team-a/chat": (1, 3, "allowed to grow"),
        "east/team-b/embed": (5, 2, "reclaimed"),
    }
    quota.refresh_from_db()
    assert quota.nominal == 1


def test_preview_rejects_invalid_values_and_non_staff(fleet: Any, client_for: Any) -> None:
    quota = fleet.quotas["a"]
    url = f"/api/v1/quotas/{quota.pk}/preview/"
    bad = client_for(fleet.users["staff"]).post(url, {"lending_limit": 99}, format="json")
    assert bad.status_code == 400 and "lending_limit" in bad.json()["errors"]
    denied = client_for(fleet.users["admin"]).post(url, {"nominal": 2}, format="json")
    assert denied.status_code == 403
    hidden = client_for(fleet.users["outsider"]).post(url, {"nominal": 2}, format="json")
    assert hidden.status_code == 404
