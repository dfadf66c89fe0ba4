"""The signal history both the live loop and the back-test keep, and how long the engine
says each algorithm needs it."""

import json
from dataclasses import replace
from typing import Any

import pytest

from scaling.backtest import replay_signals
from scaling.backtest.signals import check_metric, reads_metric
from scaling.engine import METRIC, OFFERED_WORK, TTFT, PolicyParams, history_s, reads
from scaling.signals import MAX_HISTORY_POINTS, SignalHistory, SignalTick


def policy(algorithm: str, **fields: Any) -> PolicyParams:
    return replace(PolicyParams(algorithm, "vllm:num_requests_running", 8.0, 1, 10), **fields)


@pytest.mark.parametrize(
    ("algorithm", "fields", "seconds"),
    [
        ("hpa", {}, 60.0),  # the latest point only, for as long as it is not stale
        ("hpa", {"max_metric_age_s": 20.0}, 20.0),
        ("kpa", {}, 60.0),
        ("kpa", {"stable_window_s": 300.0}, 300.0),
        ("kpa", {"stable_window_s": 30.0, "panic_window_s": 90.0}, 90.0),
        ("apa", {"stable_window_s": 300.0}, 300.0),
        ("predictive", {}, 600.0),
        ("slo", {"stable_window_s": 900.0}, 900.0),
        ("nonsense", {}, 60.0),
    ],
)
def test_the_history_an_algorithm_reads_follows_its_resolved_windows(algorithm, fields, seconds):
    assert history_s(policy(algorithm, **fields)) == seconds


def test_which_signals_each_algorithm_reads_comes_from_the_registry():
    for name in ("hpa", "kpa", "apa"):
        assert reads(policy(name)) == {METRIC}
    for name in ("predictive", "slo"):
        assert reads(policy(name)) == {METRIC, OFFERED_WORK, TTFT}
    # The back-test produces what they read: offered work always, the metric when it can.
    odd = "DCGM_FI_DEV_POWER_USAGE"
    check_metric(policy("predictive", metric=odd))
    assert not reads_metric(policy("predictive", metric=odd))
    with pytest.raises(ValueError, match="cannot be back-tested"):
        check_metric(policy("kpa", metric=odd))


def ticks(seconds: float, every: float, value: float = 1.0) -> list[SignalTick]:
    return [
        SignalTick(now=k * every, current=1, ready=1, metric=(k * every, value), metric_pods=1.0)
        for k in range(int(seconds / every) + 1)
    ]


def test_a_300_s_kpa_window_keeps_300_s_of_signal():
    history = SignalHistory(policy("kpa", stable_window_s=300.0))
    for tick in ticks(1000, 5):
        history.record(tick)
    times = [t for t, _ in history.series("metric")]
    assert times[0] == 1000 - 300 and times[-1] == 1000
    assert [t for t, _ in history.series("pods")] == times


def test_a_fast_loop_does_not_grow_the_history_past_its_bound():
    history = SignalHistory(policy("kpa", stable_window_s=3600.0))
    for tick in ticks(3600, 1):
        history.record(tick)
    assert len(history.series("metric")) == MAX_HISTORY_POINTS
    assert len(history.to_json()["metric"]) == MAX_HISTORY_POINTS


def test_history_stored_in_the_old_format_is_read_and_written_back_the_same_way():
    stored = {
        "metric": [[100.0, 3.0], [105.0, 4.0], ["junk"], [110.0, "NaN"]],
        "pods": [[100.0, 2.0], [105.0, 2.0]],
        "prompt": [[105.0, 900.0]],
        "generation": [[105.0, 80.0]],
        "ttft": [[105.0, 0.4]],
    }
    history = SignalHistory(policy("predictive"), stored)
    assert history.series("metric") == ((100.0, 3.0), (105.0, 4.0))
    history.record(SignalTick(now=110.0, current=1, ready=1, ttft_p95_s=0.5))
    assert json.loads(json.dumps(history.to_json())) == {
        "metric": [[100.0, 3.0], [105.0, 4.0]],
        "pods": [[100.0, 2.0], [105.0, 2.0]],
        "prompt": [[105.0, 900.0]],
        "generation": [[105.0, 80.0]],
        "ttft": [[105.0, 0.4], [110.0, 0.5]],
        "queue": [],  # a row stored before the queueing delay: none until it is observed
    }


def test_unknown_nonfinite_and_repeated_points_are_not_recorded():
    history = SignalHistory(policy("slo", slo_ttft_p95_s=1.0))
    history.record(SignalTick(now=10.0, current=1, ready=1, metric=(10.0, 2.0), ttft_p95_s=None))
    history.record(SignalTick(now=15.0, current=1, ready=1, metric=(10.0, 9.0)))  # same sample
    history.record(SignalTick(now=20.0, current=1, ready=1, metric=(20.0, float("nan"))))
    assert history.series("metric") == ((10.0, 2.0),)
    assert history.series("ttft") == ()  # unknown is no point, never zero


def test_an_algorithm_that_does_not_read_offered_work_keeps_none():
    history = SignalHistory(policy("hpa"))
    history.record(SignalTick(now=5.0, current=1, ready=1, prompt_tokens_per_s=100.0))
    obs = history.observation(SignalTick(now=5.0, current=1, ready=1))
    assert obs.prompt_tokens_per_s == ()


def test_a_replay_remembers_only_the_scale_changes_that_happened():
    busy = policy("hpa", max_replicas=10)
    load = [(k * 5.0, 40.0) for k in range(4)]  # 5x the target on one replica

    # Never followed (dry-run): no scale event is remembered, so none limits the next one.
    flat = [SignalTick(now=t, current=1, ready=1, metric=(t, v)) for t, v in load]
    decisions = replay_signals(busy, flat)
    assert all(d.desired > 1 for d in decisions)
    assert decisions[-1].memory.scale_events == ()
    # Followed (enforce): the change shows in the next tick's current and is remembered at
    # the time it was asked for, so the rate limit (4 pods per 15 s) holds 5 until t = 15.
    followed, wanted, current = [], [], 1
    for t, v in load:
        followed.append(SignalTick(now=t, current=current, ready=current, metric=(t, v)))
        current = replay_signals(busy, followed)[-1].desired
        wanted.append(current)
    assert wanted == [5, 5, 5, 10]
    assert replay_signals(busy, followed)[-1].memory.scale_events == ((0.0, 4),)
