"""The live decision feed shows every decision once, in commit order or not."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.poller import DecisionFeed
from scaling.models import Decision

pytestmark = pytest.mark.django_db


def record(workload, pk, seconds_ago=0.0):
    return Decision.objects.create(
        pk=pk,
        workload=workload,
        policy=workload.policy,
        policy_version=1,
        at=timezone.now() - timedelta(seconds=seconds_ago),
        algorithm="hpa",
        current_replicas=1,
        final_replicas=2,
        outcome="applied",
        reason="scaled 1 to 2",
    )


def test_a_decision_with_a_lower_id_that_commits_later_is_still_shown_once(
    team_a, cluster, gpu_type, make_workload
):
    workload = make_workload(team_a, cluster, gpu_type, "chat")
    record(workload, pk=100, seconds_ago=5)
    feed = DecisionFeed()
    assert feed.take() == []  # the feed starts from now: older ones are on the pages
    record(workload, pk=300)
    assert [d.pk for d in feed.take()] == [300]
    # Another cluster's tick took ids 200-201 before 300 but commits only now.
    record(workload, pk=201, seconds_ago=1)
    record(workload, pk=200, seconds_ago=2)
    assert [d.pk for d in feed.take()] == [200, 201]
    assert feed.take() == []
    record(workload, pk=400)
    assert [d.pk for d in feed.take()] == [400]


def test_a_burst_larger_than_a_batch_comes_over_several_ticks_in_order(
    team_a, cluster, gpu_type, make_workload
):
    workload = make_workload(team_a, cluster, gpu_type, "chat")
    feed = DecisionFeed()
    feed.take()
    n = DecisionFeed.BATCH + 50
    for i in range(n):
        record(workload, pk=1000 + i, seconds_ago=(n - i) / 1000)
    first, second = feed.take(), feed.take()
    assert len(first) == DecisionFeed.BATCH
    assert [d.pk for d in first + second] == list(range(1000, 1000 + n))
    assert feed.take() == []
