"""The quota's grant as an input of decide (a cut or a reclaim, with its explanation), and
scale events recorded from the observed replica count rather than from the decision."""

from __future__ import annotations

from scaling.engine import Memory, QuotaHeadroom, Step

CUT = "team-a uses 14 A100-80GB GPUs of its nominal 12 plus borrowing limit 2: at its limit"
RECLAIMED = "team-b needs its own nominal back: team-c borrowed beyond its nominal 4 and returns 2"


def test_a_quota_cut_is_the_last_step_and_the_reason_says_why(build):
    # 4 replicas at 8 per replica against a target of 4: the algorithm wants 8.
    wish = build.run(build.policy(), build.obs(4, 8.0))
    assert wish.desired == 8

    decision = build.run(build.policy(), build.obs(4, 8.0), quota=QuotaHeadroom(2, CUT))

    assert decision.desired == 6
    assert decision.raw_desired == 8
    assert decision.outcome == "blocked_by_quota"
    assert decision.steps[-1] == Step("quota", 6, f"{CUT}; room for 2 more replicas")
    # What decided comes first; what the algorithm wanted follows.
    assert decision.reason == (
        f"quota: {CUT}; room for 2 more replicas → 6 replicas (wanted 8 replicas: {wish.reason})"
    )


def test_a_reclaim_shrinks_below_the_current_count_and_the_reason_says_why(build):
    # On target at 6 replicas: the algorithm would hold; the quota takes two back.
    wish = build.run(build.policy(), build.obs(6, 4.0))
    assert wish.desired == 6 and wish.outcome == "hold"

    decision = build.run(
        build.policy(), build.obs(6, 4.0), quota=QuotaHeadroom(0, RECLAIMED, reclaim_to=4)
    )

    assert decision.desired == 4
    assert decision.outcome == "scale_down"  # a reclaim is not growth blocked by quota
    assert decision.steps[:-1] == wish.steps
    assert decision.steps[-1] == Step("reclaim", 4, RECLAIMED)
    assert (
        decision.reason == f"reclaim: {RECLAIMED} → 4 replicas (wanted 6 replicas: {wish.reason})"
    )


def test_a_reclaim_applies_to_a_hold_on_bad_data_too(build):
    stale = build.obs(6, series=((build.NOW - 3600.0, 4.0),))

    decision = build.run(build.policy(), stale, quota=QuotaHeadroom(0, RECLAIMED, reclaim_to=4))

    assert decision.desired == 4
    assert decision.outcome == "scale_down"
    assert [s.name for s in decision.steps] == ["guard", "reclaim"]
    assert "is stale" in decision.reason
    assert "holding at 6 replicas" in decision.reason
    assert decision.reason.startswith(f"reclaim: {RECLAIMED} → 4 replicas (wanted 6 replicas: ")


def test_a_reclaim_does_not_bind_when_the_algorithm_wants_fewer(build):
    decision = build.run(
        build.policy(scale_down_stabilization_s=0),
        build.obs(6, 1.0),
        quota=QuotaHeadroom(0, RECLAIMED, reclaim_to=4),
    )

    assert decision.desired == 2
    assert decision.steps[-1] == Step("reclaim", 2, "within what the quota leaves (4)")
    assert "reclaim" not in decision.reason


# One replica more per minute: a rate limit a single scale event consumes.
ONE_PER_MINUTE = {"scale_up_max_pods": 1, "scale_up_max_percent": 0, "scale_up_period_s": 60}


def _second_tick(build, observed_then: int):
    """Tick 1 at 2 replicas wants 3 (rate-limited from 10); tick 2, 15 s later, observes
    ``observed_then`` replicas under the same load."""
    pol = build.policy(**ONE_PER_MINUTE)
    first = build.run(pol, build.obs(2, 20.0))
    assert first.desired == 3 and first.outcome == "scale_up"
    assert first.memory.scale_events == ()  # deciding is not scaling
    later = build.NOW + 15.0
    return build.run(pol, build.obs(observed_then, 20.0, now=later), first.memory)


def test_a_decision_that_did_not_take_effect_consumes_no_rate_limit(build):
    # The apply failed, or ran dry: the count is still 2.
    second = _second_tick(build, observed_then=2)

    assert second.memory.scale_events == ()
    assert second.desired == 3 and second.outcome == "scale_up"


def test_an_applied_decision_is_a_scale_event_dated_when_it_was_asked_for(build):
    second = _second_tick(build, observed_then=3)

    assert second.memory.scale_events == ((build.NOW, 1),)
    # The period that began at 2 replicas has had its one replica.
    assert second.desired == 3 and second.outcome == "hold"
    assert Memory.from_dict(second.memory.to_dict()) == second.memory


def test_a_change_made_by_someone_else_counts_too(build):
    # kubectl scale (or a quota reclaim) took it to 5: the period started at 2 has had more
    # than its one replica, so no further growth this minute.
    second = _second_tick(build, observed_then=5)

    assert second.memory.scale_events == ((build.NOW, 3),)
    assert second.desired == 5
