"""slo's latency controller when the queueing delay is missing or stale.

vLLM records a request's TTFT at its first token but its queueing delay only when it
finishes, so a live tick can hold a TTFT point and no queueing-delay point. slo then must
not read the late TTFT as "the pool is short".
"""

from __future__ import annotations


def _late(now: float) -> tuple[tuple[float, float], ...]:
    # Long prompts: TTFT p95 4 s against a 1 s objective.
    return ((now - 1, 4.0),)


def test_a_late_ttft_with_no_queueing_delay_yet_holds(build):
    pol = build.policy("slo", slo_ttft_p95_s=1.0)
    decision = build.run(pol, build.obs(1, ttft_p95_s=_late(build.NOW)))
    assert decision.desired == 1
    assert decision.outcome == "hold"
    assert "no queueing delay measured" in decision.steps[0].note


def test_a_queueing_delay_past_its_age_limit_is_unknown(build):
    # The last wait (late, 3 s) is 5 minutes old: it says nothing about today's late TTFT.
    pol = build.policy("slo", slo_ttft_p95_s=1.0, max_metric_age_s=60.0)
    now = build.NOW
    old = ((now - 300, 3.0),)
    decision = build.run(pol, build.obs(2, ttft_p95_s=_late(now), queue_p95_s=old))
    assert decision.desired == 2
    assert "no queueing delay measured" in decision.steps[0].note


def test_the_last_known_wait_within_its_age_limit_still_decides(build):
    # No wait in the 60 s window, one 61 s old (within a 120 s age limit): it is used.
    pol = build.policy("slo", slo_ttft_p95_s=1.0, max_metric_age_s=120.0)
    now = build.NOW
    prompt = build.obs(2, ttft_p95_s=_late(now), queue_p95_s=((now - 61, 0.05),))
    held = build.run(pol, prompt)
    assert held.desired == 2
    assert "requests wait only 0.05 s" in held.steps[0].note
    queued = build.obs(2, ttft_p95_s=_late(now), queue_p95_s=((now - 61, 2.0),))
    assert build.run(pol, queued).desired > 2


def test_a_missing_wait_never_blocks_scaling_down(build):
    pol = build.policy("slo", slo_ttft_p95_s=1.0, scale_down_stabilization_s=0.0)
    decision = build.run(pol, build.obs(4, ttft_p95_s=((build.NOW - 1, 0.2),)))
    assert decision.desired == 3
