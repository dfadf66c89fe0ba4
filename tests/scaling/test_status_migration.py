"""Migration 0008 moves the loop's private keys out of Workload.status into loop_state."""

import importlib

import pytest
from django.apps import apps

from scaling.models import Workload

pytestmark = pytest.mark.django_db

migration = importlib.import_module("scaling.migrations.0008_workload_loop_state")

LEGACY = {
    "at": "2026-12-01T10:00:00+00:00",
    "outcome": "held",
    "reason": "within tolerance",
    "desired": 2,
    "steps": [{"name": "tolerance", "value": 2, "note": ""}],
    "key": ["held", 2, "held", ["tolerance"]],
    "memory": {"recommendations": [[1.0, 2]], "outage_since": None},
    "history": {"metric": [[1.0, 3.5]], "counters": {"prompt": {"pod-a": [1.0, 10.0]}}},
    "wanted": 2,
    "grown_at": 0.0,
    "waiting_since": 5.0,
}


def legacy_workload(cluster, gpu_type, team_a, name="chat", status=None):
    return Workload.objects.create(
        tenant=team_a,
        cluster=cluster,
        namespace="team-a",
        deployment=name,
        model_name="m",
        gpu_type=gpu_type,
        status=LEGACY if status is None else status,
    )


def test_the_private_keys_move_to_loop_state_and_back(cluster, gpu_type, team_a):
    moved = legacy_workload(cluster, gpu_type, team_a)
    untouched = legacy_workload(cluster, gpu_type, team_a, "off", {"at": "x", "outcome": "off"})
    migration.move_to_loop_state(apps, None)
    moved.refresh_from_db()
    assert moved.status == {k: LEGACY[k] for k in ("at", "outcome", "reason", "desired", "steps")}
    assert moved.loop_state == {
        "key": LEGACY["key"],
        "memory": LEGACY["memory"],
        "history": {"metric": [[1.0, 3.5]]},
        "counters": {"prompt": {"pod-a": [1.0, 10.0]}},
        "wanted": 2,
        "grown_at": 0.0,
        "waiting_since": 5.0,
    }
    untouched.refresh_from_db()
    assert (untouched.status, untouched.loop_state) == ({"at": "x", "outcome": "off"}, {})

    migration.move_back_to_status(apps, None)
    moved.refresh_from_db()
    assert moved.status == LEGACY


def test_the_frozen_key_list_is_the_loops():
    from scaling.status import LOOP_STATE_KEYS

    # A key the loop adds later needs a migration of its own, not an edit of this one.
    # "signals" (0009, the signal history's open chunk) was never in a status: nothing to move.
    assert set(migration.PRIVATE_KEYS) | {"signals"} == set(LOOP_STATE_KEYS)
