"""Reconcile a workload now: operators queue a tick of its cluster; nobody else can."""

from typing import Any

import pytest

from scaling import tasks

pytestmark = pytest.mark.django_db
NOT_FOUND = b'{"detail":"Not found."}'


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Workload ids handed to the broker (the outermost adapter: Celery's ``delay``)."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.reconcile_workload, "delay", sent.append)
    return sent


@pytest.mark.parametrize("role", ["operator", "admin", "org_operator", "staff"])
def test_operators_queue_a_reconcile_after_commit(
    fleet: Any,
    client_for: Any,
    queued: list[int],
    role: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    workload = fleet.workloads["a"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(fleet.users[role]).post(f"/api/v1/workloads/{workload.pk}/reconcile/")
    assert response.status_code == 202, response.content
    assert response.json() == {"workload": workload.pk, "status": "queued"}
    assert queued == [workload.pk]


def test_a_viewer_may_not_reconcile(
    fleet: Any, client_for: Any, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    workload = fleet.workloads["a"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(fleet.users["viewer"]).post(
            f"/api/v1/workloads/{workload.pk}/reconcile/"
        )
    assert response.status_code == 403
    assert queued == []


def test_another_tenants_workload_answers_like_a_missing_one(
    fleet: Any, client_for: Any, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    operator = client_for(fleet.users["operator"])
    with django_capture_on_commit_callbacks(execute=True):
        foreign = operator.post(f"/api/v1/workloads/{fleet.workloads['g'].pk}/reconcile/")
        sibling = operator.post(f"/api/v1/workloads/{fleet.workloads['b'].pk}/reconcile/")
        missing = operator.post("/api/v1/workloads/999999/reconcile/")
    assert foreign.status_code == sibling.status_code == missing.status_code == 404
    assert foreign.content == sibling.content == missing.content == NOT_FOUND
    assert queued == []


def test_reconcile_needs_credentials(fleet: Any, client_for: Any, queued: list[int]) -> None:
    response = client_for(None).post(f"/api/v1/workloads/{fleet.workloads['a'].pk}/reconcile/")
    assert response.status_code == 401
    assert queued == []


def test_the_reconcile_task_ticks_the_workloads_cluster(
    fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticked: list[int] = []
    monkeypatch.setattr(tasks, "tick_cluster", ticked.append)
    tasks.reconcile_workload(fleet.workloads["a"].pk)
    tasks.reconcile_workload(999999)  # deleted since it was queued: nothing to do
    assert ticked == [fleet.cluster.pk]
