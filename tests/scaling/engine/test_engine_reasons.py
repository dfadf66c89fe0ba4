"""The one-line reason names what decided, in an operator's words (issue 15, part 2)."""

from __future__ import annotations

from dataclasses import replace

from tests.scaling.engine.test_engine_predictive import _offered


def test_a_scale_up_says_the_calculation(build):
    decision = build.run(build.policy(target=4.0), build.obs(4, 8.0))
    assert decision.outcome == "scale_up"
    assert decision.reason == (
        "average vllm:num_requests_running 8 per replica over target 4 → 8 replicas"
    )


def test_a_scale_down_held_by_stabilisation_leads_with_the_window(build):
    pol = build.policy(target=4.0)
    first = build.run(pol, build.obs(8, 4.0))
    held = build.run(pol, build.obs(8, 1.0, now=build.NOW + 15), first.memory)
    assert held.outcome == "hold"
    assert held.reason.startswith(
        "stabilisation: highest recommendation in the last 300 s is 8 → 8 replicas "
        "(wanted 2 replicas: average vllm:num_requests_running 1 per replica"
    )


def test_bounds_lead_when_they_decide(build):
    pol = build.policy(target=4.0, min_replicas=3, scale_down_stabilization_s=0)
    decision = build.run(pol, build.obs(4, 1.0))
    assert decision.reason.startswith("min/max: raised to min_replicas 3 → 3 replicas (wanted 1")


def test_a_count_outside_the_bounds_says_it_moves_into_them(build):
    decision = build.run(build.policy(target=4.0, min_replicas=3), build.obs(1, 1.0))
    assert decision.reason == "min/max: 1 replica is outside [3, 100] → 3 replicas"


def test_a_guard_hold_says_what_is_wrong_with_the_data(build):
    decision = build.run(build.policy(), build.obs(4))
    assert decision.reason == "no data for vllm:num_requests_running; holding at 4 replicas"


def test_predictive_holding_for_a_remembered_burst_says_burst_hold(build):
    pol = build.policy("predictive", scale_down_stabilization_s=0.0)
    now = build.NOW
    spike = _offered(now, lambda t: 20.0 if now - 300 <= t < now - 285 else 1.0)
    first = build.run(pol, build.obs(2, **spike))
    t = now + 1200  # the spike has left the 10-minute history, not the 30-minute hold
    memory = replace(first.memory, ticked_at=t - 5.0, seen_at=t - 5.0)
    later = build.run(pol, build.obs(10, now=t, **_offered(t, lambda _: 1.0)), memory)
    assert later.desired == 10
    assert later.reason.startswith(
        "burst hold: the largest burst in the last 41 min calls for 10 replicas → 10 replicas"
    )
    assert "forecast" not in later.reason


def test_predictive_doubling_a_late_burst_says_why(build):
    pol = build.policy("predictive", slo_ttft_p95_s=2.0)
    now = build.NOW
    spike = _offered(now, lambda t: 5.0 if now - 300 <= t < now - 285 else 0.0)
    late = ((now - 280, 6.0), (now - 5, 0.3))
    decision = build.run(pol, build.obs(2, ttft_p95_s=late, queue_p95_s=late, **spike))
    assert decision.outcome == "scale_up"
    # The rate limit decided this tick's 6; the burst hold is what it wanted.
    assert decision.reason.startswith(
        "rate limit: scale-up policy allows max(4 pods, 200 %) per 15 s → 6 replicas (wanted "
        "10 replicas: burst hold: peak demand 5 replicas in the last 10 min x2 (bursts end idle "
        "gaps and TTFT p95 broke 2 s with requests queued) → 10 replicas"
    )
    assert "demand now 0" not in decision.reason


def test_predictive_following_the_forecast_names_the_largest_term(build):
    pol = build.policy("predictive")
    decision = build.run(pol, build.obs(8, **_offered(build.NOW, lambda t: 9.0)))
    assert decision.outcome == "scale_up"
    assert decision.reason.startswith(
        "forecast: demand now 9 replicas + error margin 0, 10 replicas to keep queueing within "
        "the objective, headroom x1 → 10 replicas (demand from offered work"
    )


def test_predictive_keeping_a_replica_through_an_idle_gap_says_which_burst(build):
    pol = build.policy("predictive", min_replicas=0)
    now = build.NOW
    decision = build.run(
        pol, build.obs(1, **_offered(now, lambda t: 0.5 if t < now - 400 else 0.0))
    )
    assert decision.reason.startswith(
        "burst hold: the largest burst in the last 41 min calls for 0.5 replicas → 1 replica"
    )


def test_slo_raised_by_offered_work_leads_with_the_offered_work(build):
    pol = build.policy("slo", slo_ttft_p95_s=1.0, scale_down_stabilization_s=0.0)
    ob = build.obs(12, ttft_p95_s=((build.NOW - 1, 0.1),), **_offered(build.NOW, lambda t: 9.0))
    decision = build.run(pol, ob)
    assert decision.reason.startswith("offered work: raised to forecast: demand now 9 replicas")
    assert "(TTFT p95 0.1 s is 0.10 of the 1 s objective, well under the objective" in (
        decision.reason
    )


def test_slo_alone_says_the_latency_against_the_objective(build):
    pol = build.policy("slo", slo_ttft_p95_s=1.0)
    late = ((build.NOW - 1, 2.0),)
    decision = build.run(pol, build.obs(4, ttft_p95_s=late, queue_p95_s=late))
    assert decision.reason == (
        "TTFT p95 2 s is 2.00 of the 1 s objective, over the objective, gain 0.5 → 6 replicas"
    )
