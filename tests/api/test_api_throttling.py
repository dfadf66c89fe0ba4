"""Throttling per user (per token), at the rate API_THROTTLE_RATE sets."""

from typing import Any

import pytest
from django.core.cache import cache

pytestmark = pytest.mark.django_db


def test_requests_over_the_rate_answer_429_per_user(
    fleet: Any, client_for: Any, settings: Any
) -> None:
    settings.API_THROTTLE_RATE = "3/min"
    cache.clear()
    viewer, operator = client_for(fleet.users["viewer"]), client_for(fleet.users["operator"])
    statuses = [viewer.get("/api/v1/workloads/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = viewer.get("/api/v1/workloads/")
    assert int(throttled["Retry-After"]) > 0 and "throttled" in throttled.json()["detail"]
    # Another user's budget is its own.
    assert operator.get("/api/v1/workloads/").status_code == 200


def test_rate_off_means_no_throttling(fleet: Any, client_for: Any, settings: Any) -> None:
    settings.API_THROTTLE_RATE = None
    viewer = client_for(fleet.users["viewer"])
    assert all(viewer.get("/api/v1/gpu-types/").status_code == 200 for _ in range(60))


@pytest.mark.parametrize(
    ("rate", "ok"),
    [("50/s", True), ("1000/min", True), ("fast", False), ("0/s", False), ("10/week", False)],
)
def test_a_bad_rate_is_reported_by_the_system_check(settings: Any, rate: str, ok: bool) -> None:
    from api.checks import check_throttle_rate

    settings.API_THROTTLE_RATE = rate
    assert (check_throttle_rate() == []) is ok
