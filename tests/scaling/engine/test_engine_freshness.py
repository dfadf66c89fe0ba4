"""Clocks that run only on fresh observations, and no scale-down in the window after an
outage (scaling/engine/freshness.py)."""

from __future__ import annotations

from scaling.engine import Memory, note_outage

TICK = 5.0


def _zeros(until: float, since: float) -> tuple[tuple[float, float], ...]:
    """A pool-total series of 0 (no traffic), one point per tick from `since` to `until`."""
    points, t = [], since
    while t <= until:
        points.append((t, 0.0))
        t += TICK
    return tuple(points)


def _ticks(build, pol, start, end, series_at, current, memory):
    """Tick every 5 s in (start, end]; series_at(t) is what the loop has seen by t."""
    decisions, t = [], start
    while t < end:
        t += TICK
        decision = build.run(pol, build.obs(current, now=t, series=series_at(t)), memory)
        memory, current = decision.memory, decision.desired
        decisions.append(decision)
    return decisions, memory, current


def test_kpa_grace_does_not_run_during_a_metrics_outage_and_waits_a_window_after(build):
    pol = build.policy("kpa", target=10.0, aggregation="total", min_replicas=0)
    t0 = build.NOW
    # 10 s of fresh "no traffic": the 30 s grace starts.
    _, memory, current = _ticks(build, pol, t0, t0 + 10, lambda t: _zeros(t, t0), 1, Memory())
    assert current == 1
    # The metrics source goes silent for 120 s (longer than max_metric_age_s 60): the loop
    # keeps its remembered points, which stop advancing.
    frozen = _zeros(t0 + 10, t0)
    during, memory, current = _ticks(
        build, pol, t0 + 10, t0 + 130, lambda t: frozen, current, memory
    )
    assert [d.desired for d in during] == [1] * len(during)
    # Back: fresh zeros again. The first 60 s (kpa's stable window) scale nothing down.
    after, memory, current = _ticks(
        build,
        pol,
        t0 + 130,
        t0 + 250,
        lambda t: frozen + _zeros(t, t0 + 135),
        current,
        memory,
    )
    first_window = after[: int(55 // TICK)]
    assert all(d.desired == 1 for d in first_window)
    # The grace resumed where it stopped (5 s) and ended inside the window, which held.
    assert "no traffic for 5 s" in first_window[0].reason
    assert any("after an outage" in d.reason for d in first_window)
    assert after[-1].desired == 0  # afterwards the grace ends on fresh evidence only


def test_grace_clock_stands_still_while_no_new_sample_arrives(build):
    pol = build.policy("kpa", target=10.0, aggregation="total", min_replicas=0)
    t0 = build.NOW
    _, memory, current = _ticks(build, pol, t0, t0 + 15, lambda t: _zeros(t, t0), 1, Memory())
    # 40 s without a new sample (within max_metric_age_s: no outage, but no new evidence).
    frozen = _zeros(t0 + 15, t0)
    stalled, memory, current = _ticks(
        build, pol, t0 + 15, t0 + 55, lambda t: frozen, current, memory
    )
    assert {d.desired for d in stalled} == {1}
    assert all("no traffic for 10 s of the 30 s" in d.reason for d in stalled)
    # A new sample covers the time since the last one (a gap within max_metric_age_s is
    # ordinary scrape spacing): 10 + 45 s, the grace is over.
    fresh = build.run(pol, build.obs(1, now=t0 + 60, series=(*frozen, (t0 + 60, 0.0))), memory)
    assert fresh.desired == 0


def test_no_scale_down_on_a_tick_without_a_new_sample(build):
    pol = build.policy("apa", target=10.0, cooldown_s=0.0)
    series = ((build.NOW - 1, 2.0),)
    first = build.run(pol, build.obs(8, now=build.NOW, series=series))
    again = build.run(pol, build.obs(8, now=build.NOW + 5, series=series), first.memory)
    assert first.desired < 8  # fresh data: apa scales down
    assert again.desired == 8
    assert "no new sample" in again.reason


def test_a_scale_up_is_taken_on_remembered_data(build):
    pol = build.policy("hpa", target=4.0)
    series = ((build.NOW - 1, 8.0),)
    first = build.run(pol, build.obs(2, now=build.NOW, series=series))
    again = build.run(pol, build.obs(2, now=build.NOW + 5, series=series), first.memory)
    assert again.desired == 4


def test_after_an_unobservable_tick_hpa_waits_a_window_before_scaling_down(build):
    # The cluster API did not answer (the loop notes an outage); when it answers again with
    # fresh data that asks for less, nothing is scaled down for the recovery window (hpa
    # with no stabilisation: max_metric_age_s, 60 s), then it is.
    pol = build.policy("hpa", target=4.0, scale_down_stabilization_s=0.0)
    t0 = build.NOW
    first = build.run(pol, build.obs(2, now=t0, series=((t0 - 1, 4.0),)))
    memory = note_outage(first.memory, t0 + 5)
    memory = note_outage(memory, t0 + 10)  # the earliest outage time is kept
    assert memory.outage_since == t0 + 5
    decisions = []
    for k in range(15):
        t = t0 + 15 + k * TICK
        decision = build.run(pol, build.obs(2, now=t, series=((t - 1, 1.0),)), memory)
        memory = decision.memory
        decisions.append((t - (t0 + 15), decision.desired))
    assert all(desired == 2 for elapsed, desired in decisions if elapsed < 60)
    assert all(desired == 1 for elapsed, desired in decisions if elapsed >= 60)


def test_memory_round_trips_the_freshness_fields_and_drops_junk():
    memory = Memory(ticked_at=10.0, seen_at=9.0, outage_since=5.0, recovered_at=8.0, fresh=False)
    assert Memory.from_dict(memory.to_dict()) == memory
    junk = Memory.from_dict({"ticked_at": "x", "seen_at": float("nan"), "recovered_at": [1]})
    assert (junk.ticked_at, junk.seen_at, junk.recovered_at, junk.fresh) == (None, None, None, True)


def test_kpa_window_totals_carry_the_time_of_their_newest_sample(build):
    pol = build.policy("kpa", target=10.0, aggregation="total")
    series = ((build.NOW - 40, 7.0), (build.NOW - 30, 7.0))
    decision = build.run(pol, build.obs(1, series=series))
    stamps = {m.label: m.timestamp for m in decision.metric_values}
    assert stamps["stable window total"] == build.NOW - 30
    assert stamps["panic window total"] == build.NOW - 30
