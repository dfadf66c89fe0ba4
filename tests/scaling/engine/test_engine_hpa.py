"""hpa: examples and behaviour from the Kubernetes HPA docs and replica calculator."""

from __future__ import annotations

from dataclasses import replace

from scaling.engine import Memory, PodSample

NO_DOWN_WINDOW = {"scale_down_stabilization_s": 0.0}


def test_doubles_when_metric_is_twice_the_target(build):
    # kubernetes.io: current 200m, desired 100m -> replicas doubled.
    decision = build.run(build.policy(target=100.0), build.obs(1, 200.0))
    assert decision.desired == 2
    assert decision.raw_desired == 2
    assert decision.outcome == "scale_up"


def test_halves_when_metric_is_half_the_target_and_no_down_window(build):
    decision = build.run(build.policy(target=100.0, **NO_DOWN_WINDOW), build.obs(4, 50.0))
    assert decision.desired == 2
    assert decision.outcome == "scale_down"


def test_fresh_memory_starts_the_down_window_with_the_current_count(build):
    # The controller seeds its recommendations with the current count, so a restart
    # does not scale down at once.
    decision = build.run(build.policy(target=100.0), build.obs(4, 50.0))
    assert decision.desired == 4
    assert decision.raw_desired == 2
    assert "stabilisation" in decision.reason


def test_ratio_within_tolerance_changes_nothing(build):
    decision = build.run(build.policy(target=100.0), build.obs(10, 105.0))
    assert decision.desired == 10
    assert decision.outcome == "hold"


def test_ratio_beyond_tolerance_scales(build):
    assert build.run(build.policy(target=100.0), build.obs(10, 111.0)).desired == 12


def test_up_and_down_tolerance_are_separate(build):
    pol = build.policy(
        target=100.0, scale_up_tolerance=0.2, scale_down_tolerance=0.05, **NO_DOWN_WINDOW
    )
    assert build.run(pol, build.obs(10, 115.0)).desired == 10
    assert build.run(pol, build.obs(10, 92.0)).desired == 10 - 0  # ceil(9.2) = 10
    assert build.run(pol, build.obs(10, 80.0)).desired == 8


def test_scale_down_keeps_the_highest_recommendation_for_300_s(build):
    pol = build.policy(target=10.0)
    memory = Memory()
    current = 4
    history = []
    # High load for one tick, then idle: the down window holds the peak for 300 s.
    for i, value in enumerate([20.0] + [1.0] * 30):
        now = build.NOW + 15 * i
        decision = build.run(pol, build.obs(current, value, now=now), memory)
        memory, current = decision.memory, decision.desired
        history.append((now - build.NOW, current))
    assert history[0] == (0.0, 8)
    held = [replicas for t, replicas in history if 0 < t < 300]
    assert set(held) == {8}
    assert dict(history)[300.0] == 1


def test_scale_up_limited_to_max_of_4_pods_or_100_percent_per_15_s(build):
    pol = build.policy(target=1.0)
    first = build.run(pol, build.obs(2, 1000.0))
    assert first.desired == 6  # max(2 + 4, 2 x 2)
    assert "rate limit" in first.reason
    # 10 s later the same period still counts from 2 replicas.
    second = build.run(pol, build.obs(6, 1000.0, now=build.NOW + 10), first.memory)
    assert second.desired == 6
    # Once the period has passed, 6 may double.
    third = build.run(pol, build.obs(6, 1000.0, now=build.NOW + 16), second.memory)
    assert third.desired == 12


def test_percent_policy_wins_for_large_pools(build):
    assert build.run(build.policy(target=1.0), build.obs(10, 1000.0)).desired == 20


def test_scale_down_rate_limit_by_percent(build):
    pol = build.policy(target=10.0, scale_down_max_percent=50.0, **NO_DOWN_WINDOW)
    assert build.run(pol, build.obs(10, 1.0)).desired == 5


def test_missing_pods_count_as_zero_when_scaling_up(build):
    states, samples = build.pods({"a": 10.0, "b": 10.0, "c": None})
    decision = build.run(build.policy(target=4.0), build.obs(3, pods=states, samples=samples))
    # mean (10 + 10 + 0) / 3 = 6.67 -> ratio 1.67 -> ceil(1.67 x 3) = 5
    assert decision.desired == 5


def test_missing_pods_count_as_target_when_scaling_down(build):
    states, samples = build.pods({"a": 1.0, "b": 1.0, "c": None})
    decision = build.run(
        build.policy(target=4.0, **NO_DOWN_WINDOW), build.obs(3, pods=states, samples=samples)
    )
    # mean (1 + 1 + 4) / 3 = 2 -> ratio 0.5 -> ceil(0.5 x 3) = 2
    assert decision.desired == 2


def test_missing_pods_cancel_a_scale_up_that_would_flip_direction(build):
    states, samples = build.pods({"a": 5.0, "b": None})
    decision = build.run(build.policy(target=4.0), build.obs(2, pods=states, samples=samples))
    assert decision.desired == 2
    assert decision.outcome == "hold"


def test_not_ready_pods_count_as_zero_when_scaling_up(build):
    states, samples = build.pods({"a": 4.6, "b": None, "c": None}, unready=("b", "c"))
    # Alone, a is 15 % over target; with two warming pods at 0 % it is far under: no change.
    decision = build.run(
        build.policy(target=4.0), build.obs(3, ready=1, pods=states, samples=samples)
    )
    assert decision.desired == 3


def test_stale_pod_sample_counts_as_missing(build):
    states, _ = build.pods({"a": 1.0, "b": 1.0})
    samples = (PodSample("a", build.NOW - 1, 12.0), PodSample("b", build.NOW - 600, 12.0))
    decision = build.run(build.policy(target=4.0), build.obs(2, pods=states, samples=samples))
    # a says 3x target; b is stale so counts as 0: mean 6 -> ceil(1.5 x 2) = 3.
    assert decision.desired == 3


def test_total_metric_divides_by_target(build):
    decision = build.run(build.policy(target=4.0, aggregation="total"), build.obs(5, 30.0))
    assert decision.desired == 8


def test_total_metric_within_tolerance_of_current_pool(build):
    assert build.run(build.policy(target=4.0, aggregation="total"), build.obs(5, 21.0)).desired == 5


def test_current_below_min_goes_to_min_without_metrics(build):
    decision = build.run(build.policy(min_replicas=2), build.obs(0, 0.0))
    assert decision.desired == 2
    assert decision.outcome == "scale_up"


def test_current_above_max_goes_to_max(build):
    assert build.run(build.policy(max_replicas=5), build.obs(9, 4.0)).desired == 5


def test_reason_says_one_replica_in_the_singular(build):
    decision = build.run(build.policy(target=4.0), build.obs(1, 4.0))
    assert decision.reason.endswith("at target 4 → 1 replica (within tolerance)")
    held = build.run(build.policy(), build.obs(1))  # no metric at all
    assert held.reason.endswith("holding at 1 replica")


def test_reason_lists_the_calculation_and_each_constraint_that_bit(build):
    decision = build.run(build.policy(target=4.0), build.obs(1, 9.2 * 5))
    # The rate limit decided 5, so it leads; the calculation's 12 follows as the wish.
    assert decision.reason == (
        "rate limit: scale-up policy allows max(4 pods, 100 %) per 15 s → 5 replicas "
        "(wanted 12 replicas: average vllm:num_requests_running 46 per replica over target 4 "
        "→ 12 replicas)"
    )
    assert [s.name for s in decision.steps] == [
        "replica calculation",
        "stabilisation",
        "rate limit",
        "min/max",
    ]
    assert decision.effective["scale_down_stabilization_s"] == 300.0
    assert decision.effective["scale_up_max_pods"] == 4.0


def test_a_total_with_a_stale_or_silent_ready_pod_is_unknown_not_smaller(build):
    pol = build.policy(target=4.0, aggregation="total", max_metric_age_s=60.0)
    states, samples = build.pods({"a": 10.0, "b": 10.0, "c": 10.0, "d": None})
    silent = build.run(pol, build.obs(8, pods=states, samples=samples))
    assert silent.desired == 8 and silent.outcome == "hold"
    assert "incomplete: no fresh sample from 1 ready pod (d)" in silent.reason
    old = tuple(replace(s, timestamp=build.NOW - 120.0) if s.pod == "c" else s for s in samples)
    stale = build.run(pol, build.obs(8, pods=states[:3], samples=old))
    assert stale.desired == 8 and "incomplete: no fresh sample from 1 ready pod (c)" in stale.reason
    # A pod still warming exports nothing yet: the ready pods' sum is the total (30 / 4 -> 8).
    states, samples = build.pods({"a": 10.0, "b": 10.0, "c": 10.0, "d": None}, unready=("d",))
    assert build.run(pol, build.obs(5, ready=3, pods=states, samples=samples)).desired == 8
