"""kpa (Knative stable/panic windows) and apa (AIBrix fluctuation tolerance)."""

from __future__ import annotations

from scaling.engine import Memory


def _flat(now, value, seconds=60, every=2):
    return tuple((now - k, value) for k in range(0, seconds, every))


def _kpa(build, **fields):
    # target 10 at 70 % utilisation -> 7 per replica
    return build.policy("kpa", target=10.0, aggregation="total", **fields)


def test_kpa_stable_mode_sizes_from_the_stable_window(build):
    decision = build.run(_kpa(build), build.obs(5, series=_flat(build.NOW, 35.0)))
    assert decision.desired == 5
    assert decision.memory.panic_since is None


def test_kpa_target_utilisation_is_70_percent(build):
    decision = build.run(_kpa(build), build.obs(5, series=_flat(build.NOW, 70.0)))
    assert decision.desired == 10
    assert decision.effective["target_utilization"] == 0.7


def _burst(now):
    # 60 s at 35, the last 6 s (panic window) at 140
    return tuple((t, 140.0 if now - t < 6 else v) for t, v in _flat(now, 35.0))


def test_kpa_enters_panic_at_twice_the_ready_pods(build):
    decision = build.run(_kpa(build), build.obs(5, series=_burst(build.NOW)))
    # panic window: ceil(140 / 7) = 20 pods for 5 ready = 4x >= 2x threshold
    assert decision.memory.panic_since == build.NOW
    assert decision.desired == 20
    assert "panic mode" in decision.reason


def test_kpa_does_not_scale_down_while_panicking(build):
    first = build.run(_kpa(build), build.obs(5, series=_burst(build.NOW)))
    later = build.NOW + 30
    second = build.run(
        _kpa(build), build.obs(20, series=_flat(later, 35.0), now=later), first.memory
    )
    assert second.memory.panic_since == build.NOW
    assert second.desired == 20


def test_kpa_leaves_panic_a_stable_window_after_the_last_crossing(build):
    first = build.run(_kpa(build), build.obs(5, series=_burst(build.NOW)))
    # The loop ticks in between (a gap longer than max_metric_age_s would be an outage).
    between = build.NOW + 30
    held = build.run(
        _kpa(build), build.obs(20, series=_flat(between, 35.0), now=between), first.memory
    )
    later = build.NOW + 61
    second = build.run(
        _kpa(build), build.obs(20, series=_flat(later, 35.0), now=later), held.memory
    )
    assert second.memory.panic_since is None
    assert second.memory.max_panic_pods == 0
    # stable says 5; max scale-down rate 2 allows at most halving 20 ready pods
    assert second.desired == 10


def test_kpa_totals_each_per_replica_point_over_the_pods_it_averaged(build):
    # 70 requests in flight throughout: 14 per pod on 5 pods, then 7 per pod on 10 once the
    # scale-up is ready. The pool total stays 70, so 70 / 7 = 10 pods: a steady state.
    now = build.NOW
    series = tuple((t, 14.0 if t < now - 20 else 7.0) for t, _ in _flat(now, 0.0))
    pods = ((now - 60, 5.0), (now - 20, 10.0))
    pol = build.policy("kpa", target=10.0, aggregation="average")
    decision = build.run(pol, build.obs(10, series=series, series_pods=pods))
    assert decision.desired == 10
    assert "stable 70" in decision.steps[0].note
    # Multiplying the window's mean per-pod value (11.4) by the 10 ready now would read 114
    # and ask for 17: the overshoot after every scale-up.
    assert build.run(pol, build.obs(10, series=series)).desired == 17


def test_kpa_max_scale_down_rate_halves_at_most(build):
    decision = build.run(_kpa(build), build.obs(10, series=_flat(build.NOW, 0.5)))
    assert decision.desired == 5


def test_kpa_panic_window_defaults_to_10_percent_of_stable(build):
    decision = build.run(_kpa(build, stable_window_s=120.0), build.obs(5, 35.0))
    assert decision.effective["panic_window_s"] == 12.0


def test_kpa_scales_to_zero_only_after_the_grace_period(build):
    pol = _kpa(build, min_replicas=0)
    first = build.run(pol, build.obs(1, series=_flat(build.NOW, 0.0)))
    assert first.desired == 1
    assert "grace" in first.reason
    later = build.NOW + 31
    second = build.run(pol, build.obs(1, series=_flat(later, 0.0), now=later), first.memory)
    assert second.desired == 0
    assert second.outcome == "scale_down"


def test_kpa_stays_at_zero_without_traffic(build):
    pol = _kpa(build, min_replicas=0)
    decision = build.run(pol, build.obs(0, series=_flat(build.NOW, 0.0)))
    assert decision.desired == 0


def test_kpa_wakes_from_zero_on_traffic(build):
    pol = _kpa(build, min_replicas=0)
    decision = build.run(pol, build.obs(0, series=_flat(build.NOW, 14.0)))
    assert decision.desired == 2


def test_kpa_keeps_min_replicas_with_no_traffic(build):
    decision = build.run(_kpa(build), build.obs(1, series=_flat(build.NOW, 0.0)))
    assert decision.desired == 1


def _apa(build, **fields):
    return build.policy("apa", target=30.0, **fields)


def test_apa_scales_up_above_the_band(build):
    # AIBrix basic_scale_up: 2 pods at 45 against 30 -> ceil(3) = 3
    assert build.run(_apa(build), build.obs(2, 45.0)).desired == 3


def test_apa_scale_up_rate_doubles_at_most(build):
    decision = build.run(_apa(build), build.obs(2, 90.0))
    assert decision.raw_desired == 6
    assert decision.desired == 4


def test_apa_holds_inside_the_tolerance_band(build):
    assert build.run(_apa(build), build.obs(3, 32.9)).desired == 3
    assert build.run(_apa(build), build.obs(3, 27.1)).desired == 3


def test_apa_scales_down_below_the_band(build):
    assert build.run(_apa(build), build.obs(4, 15.0)).desired == 2


def test_apa_scale_down_rate_halves_at_most(build):
    decision = build.run(_apa(build), build.obs(8, 3.0))
    assert decision.desired == 4


def test_apa_scale_down_waits_for_the_cooldown(build):
    memory = Memory(scale_events=((build.NOW - 100, 2),))
    decision = build.run(_apa(build), build.obs(4, 15.0), memory)
    assert decision.desired == 4
    assert "cooldown" in decision.reason
    # scale-ups have no cooldown
    assert build.run(_apa(build), build.obs(4, 45.0), memory).desired == 6


def test_apa_cooldown_is_configurable(build):
    memory = Memory(scale_events=((build.NOW - 100, 2),))
    assert build.run(_apa(build, cooldown_s=60.0), build.obs(4, 15.0), memory).desired == 2
