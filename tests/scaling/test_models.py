import math

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scaling.models import Decision, ScalingPolicy, Workload


@pytest.fixture
def workload(team_a, cluster, gpu_type, make_workload):
    return make_workload(team_a, cluster, gpu_type, "chat")


def test_min_above_max_is_rejected_and_nothing_written(workload):
    policy = workload.policy
    policy.min_replicas, policy.max_replicas = 5, 2
    with pytest.raises(ValidationError, match="Min replicas cannot be above max"):
        policy.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        policy.save()
    policy.refresh_from_db()
    assert (policy.min_replicas, policy.max_replicas, policy.version) == (1, 10, 1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(workload, value):
    policy = workload.policy
    policy.target = value
    with pytest.raises(ValidationError) as err:
        policy.full_clean()
    assert "target" in err.value.message_dict


@pytest.mark.parametrize("field", ["target", "scale_up_stabilization_s", "cooldown_s"])
def test_negative_or_zero_values_are_rejected(workload, field):
    policy = workload.policy
    setattr(policy, field, -1.0)
    with pytest.raises(ValidationError):
        policy.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        policy.save()


def test_slo_algorithm_needs_a_ttft_target(workload):
    policy = workload.policy
    policy.algorithm = ScalingPolicy.Algorithm.SLO
    with pytest.raises(ValidationError, match="TTFT p95 target"):
        policy.full_clean()


def test_version_increments_on_every_change(workload):
    policy = workload.policy
    assert policy.version == 1
    policy.target = 10
    policy.save()
    assert policy.version == 2
    stale = ScalingPolicy.objects.get(pk=policy.pk)
    policy.target = 11
    policy.save()
    policy.save()  # nothing changed since: no new version
    assert policy.version == 3
    stale.target = 12
    stale.save()  # a concurrent save of an old copy still gets a fresh version
    assert stale.version == 4
    assert ScalingPolicy.objects.get(pk=policy.pk).version == 4


def test_a_save_that_changes_nothing_writes_nothing(workload):
    policy = ScalingPolicy.objects.get(pk=workload.policy.pk)
    updated_at = policy.updated_at
    assert policy.target is not None
    policy.target = float(policy.target)  # the same value
    policy.save()
    stored = ScalingPolicy.objects.get(pk=policy.pk)
    assert (stored.version, stored.updated_at) == (1, updated_at)


def test_one_workload_per_deployment(workload, team_a, cluster, gpu_type):
    duplicate = Workload(
        tenant=team_a,
        cluster=cluster,
        namespace=workload.namespace,
        deployment=workload.deployment,
        model_name="m",
        gpu_type=gpu_type,
    )
    with pytest.raises(ValidationError, match="already has a workload"):
        duplicate.full_clean()


def test_decisions_are_append_only(workload):
    decision = Decision.objects.create(
        workload=workload,
        policy=workload.policy,
        policy_version=1,
        at=timezone.now(),
        algorithm="hpa",
        current_replicas=1,
        raw_desired_replicas=3,
        final_replicas=3,
        steps=[{"name": "raw", "value": 3}],
        outcome=Decision.Outcome.APPLIED,
        reason="average 12 over target 4",
    )
    decision.reason = "rewritten"
    with pytest.raises(ValidationError, match="append-only"):
        decision.save()
    assert Decision.objects.get().reason == "average 12 over target 4"


def test_workload_for_user_is_scoped_by_tenant(
    workload, team_b, cluster, gpu_type, make_user, make_workload
):
    other = make_workload(team_b, cluster, gpu_type, "other")
    user = make_user("u", workload.tenant)
    assert list(Workload.objects.for_user(user)) == [workload]
    assert other not in Workload.objects.for_user(user)


def test_policy_or_none_is_the_policy_or_none_when_it_has_none(workload):
    assert Workload.objects.get(pk=workload.pk).policy_or_none == workload.policy
    ScalingPolicy.objects.filter(workload=workload).delete()
    assert Workload.objects.get(pk=workload.pk).policy_or_none is None
