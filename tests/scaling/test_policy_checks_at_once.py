"""A policy's check constraints validated in one query, with Django's errors word for word."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.test.utils import CaptureQueriesContext

from scaling.models import ScalingPolicy

pytestmark = pytest.mark.django_db


def djangos_errors(policy: ScalingPolicy, exclude: set[str] | None = None) -> dict[str, list]:
    """Django's own ``validate_constraints``: one query per constraint."""
    try:
        models.Model.validate_constraints(policy, exclude)
    except ValidationError as error:
        return error.message_dict
    return {}


def batched_errors(policy: ScalingPolicy, exclude: set[str] | None = None) -> dict[str, list]:
    try:
        policy.validate_constraints(exclude)
    except ValidationError as error:
        return error.message_dict
    return {}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"target": -1.0},
        {"min_replicas": 9, "max_replicas": 2},
        {"metric": "not a metric!"},
        {"target": -1.0, "cooldown_s": -5.0, "min_replicas": 9, "max_replicas": 2},
        {"slo_ttft_p95_s": None, "scale_up_tolerance": None},  # NULL meets a check
    ],
)
def test_the_batch_says_what_djangos_checks_say(setup_policy, changes):
    for name, value in changes.items():
        setattr(setup_policy, name, value)
    assert batched_errors(setup_policy) == djangos_errors(setup_policy)
    # A constraint on an excluded field is skipped, as Django skips it.
    exclude = {"target", "max_replicas"}
    assert batched_errors(setup_policy, exclude) == djangos_errors(setup_policy, exclude)


def test_every_check_constraint_in_one_query(setup_policy):
    setup_policy.target, setup_policy.min_replicas, setup_policy.max_replicas = -1.0, 9, 2
    checks = sum(isinstance(c, models.CheckConstraint) for c in ScalingPolicy._meta.constraints)
    assert checks > 20
    with CaptureQueriesContext(connection) as queries:
        errors = batched_errors(setup_policy)
    # Raised without a field, as Django raises them (the form moves them beside theirs).
    assert len(errors["__all__"]) == 2
    selects = [q for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(selects) == 1


@pytest.fixture
def setup_policy(team_a, cluster, gpu_type, make_workload) -> ScalingPolicy:
    return make_workload(team_a, cluster, gpu_type, "chat").policy
