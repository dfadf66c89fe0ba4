"""Guards that hold for every algorithm, checked with hypothesis and a few fixed cases."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling.engine import (
    ALGORITHMS,
    Memory,
    Observation,
    PodSample,
    PolicyParams,
    QuotaHeadroom,
    ReplicaCapacity,
    decide,
)
from scaling.engine.guards import MAX_MEMORY_ENTRIES

NOW = 50_000.0
NAMES = sorted(ALGORITHMS)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAPACITY = ReplicaCapacity(
    prefill_tokens_per_s=5_000.0, decode_tokens_per_s=800.0, max_concurrency=32
)

values = st.one_of(
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
    st.sampled_from([0.0, 1.8e19, 1e20]),
)


@st.composite
def policies(draw, algorithm=None):
    name = algorithm or draw(st.sampled_from(NAMES))
    low = draw(st.integers(0, 4))
    high = draw(st.integers(max(low, 1), 40))
    return PolicyParams(
        algorithm=name,
        metric="vllm:num_requests_running",
        target=draw(st.floats(min_value=0.5, max_value=50.0)),
        min_replicas=low,
        max_replicas=high,
        aggregation=draw(st.sampled_from(["average", "total"])),
        slo_ttft_p95_s=1.0,
    )


def observation(now, current, value, *, offered=False):
    series = tuple((now - k, value) for k in range(0, 60, 10))
    fields: dict[str, Any] = {}
    if offered:
        fields = {
            "prompt_tokens_per_s": tuple((t, v * 100) for t, v in series),
            "generation_tokens_per_s": tuple((t, v * 10) for t, v in series),
            "capacity": CAPACITY,
        }
    return Observation(
        now=now,
        current=current,
        ready=current,
        series=series,
        ttft_p95_s=tuple((t, v / 10) for t, v in series),
        **fields,
    )


def bounded(policy, current):
    return min(max(current, policy.min_replicas), policy.max_replicas)


@FAST
@given(policies(), st.integers(0, 60), values, st.booleans())
def test_desired_stays_within_min_and_max(policy, current, value, offered):
    decision = decide(policy, observation(NOW, current, value, offered=offered))
    assert policy.min_replicas <= decision.desired <= policy.max_replicas


@FAST
@given(policies(), st.integers(0, 60), values, st.integers(-3, 5))
def test_quota_caps_scale_ups_last(policy, current, value, headroom):
    quota = QuotaHeadroom(headroom, "team-a A100-80GB used 14, nominal 12, borrowing limit 2")
    unlimited = decide(policy, observation(NOW, current, value))
    decision = decide(policy, observation(NOW, current, value), quota=quota)
    assert decision.desired <= policy.max_replicas
    if decision.desired > current:
        assert decision.desired <= current + max(headroom, 0)
    if decision.desired < unlimited.desired:
        assert decision.outcome == "blocked_by_quota"
        assert decision.steps[-1].name == "quota"
        assert "borrowing limit" in decision.reason


def _bad_points(kind):
    if kind == "empty":
        return ()
    if kind == "stale":
        return ((NOW - 3600.0, 5.0),)
    bad = {"nan": math.nan, "inf": math.inf, "negative": -1.0}[kind]
    return ((NOW - 20.0, 5.0), (NOW - 1.0, bad))


BAD = ["empty", "stale", "nan", "inf", "negative"]


@FAST
@given(policies(), st.integers(0, 60), st.sampled_from(BAD), st.booleans())
def test_invalid_metrics_hold_at_the_current_count(policy, current, kind, offered):
    points = _bad_points(kind)
    fields = {"series": points, "ttft_p95_s": points}
    if offered and policy.algorithm == "predictive":
        fields = {
            "prompt_tokens_per_s": points,
            "generation_tokens_per_s": points,
            "capacity": CAPACITY,
        }
    decision = decide(policy, Observation(now=NOW, current=current, ready=current, **fields))
    assert decision.desired == bounded(policy, current)
    assert decision.raw_desired is None
    assert decision.steps[0].name == "guard"
    if policy.min_replicas <= current <= policy.max_replicas:
        assert decision.outcome == "hold"


@pytest.mark.parametrize("kind", BAD)
def test_invalid_per_pod_samples_hold(kind):
    points = _bad_points(kind)
    samples = tuple(PodSample(f"p{i}", t, v) for i, (t, v) in enumerate(points))
    policy = PolicyParams("hpa", "m", 4.0, 1, 10)
    decision = decide(policy, Observation(now=NOW, current=3, ready=3, samples=samples))
    assert (decision.desired, decision.outcome) == (3, "hold")


@FAST
@given(policies(), st.integers(0, 60), values, st.booleans())
def test_same_inputs_same_decision(policy, current, value, offered):
    ob = observation(NOW, current, value, offered=offered)
    memory = Memory(recommendations=((NOW - 30, 3),), scale_events=((NOW - 10, 1),))
    first, second = decide(policy, ob, memory), decide(policy, ob, memory)
    assert first == second
    assert json.dumps(first.to_dict(), allow_nan=False) == json.dumps(second.to_dict())


ticks = st.lists(
    st.tuples(st.floats(min_value=1.0, max_value=20.0), values), min_size=1, max_size=20
)


def _run(policy, start, sequence, offered=False):
    """Simulate the loop: each decision is applied before the next tick."""
    now, current, memory = NOW, start, Memory()
    history = [(now - 1e6, start)]
    for gap, value in sequence:
        now += gap
        decision = decide(policy, observation(now, current, value, offered=offered), memory)
        yield now, current, decision
        memory, current = Memory.from_dict(decision.memory.to_dict()), decision.desired
        history.append((now, current))


def _count_at(history, t):
    return [c for when, c in history if when <= t][-1]


@FAST
@given(
    st.sampled_from(["hpa", "predictive", "slo"]),
    policies(),
    st.integers(1, 30),
    ticks,
    st.booleans(),
)
def test_period_rate_limits_hold_across_ticks(name, policy, start, sequence, offered):
    policy = replace(policy, algorithm=name)
    up_period, up_pods, up_pct = 15.0, 4, (100.0 if name == "hpa" else 200.0)
    down_period, down_pct = (15.0, 100.0) if name == "hpa" else (60.0, 50.0)
    history = [(NOW - 1e6, start)]
    for now, current, decision in _run(policy, start, sequence, offered):
        up_start = _count_at(history, now - up_period)
        ceiling = max(
            up_start + up_pods,
            math.ceil(up_start * (1 + up_pct / 100)),
            current,
            policy.min_replicas,
        )
        down_start = _count_at(history, now - down_period)
        floor = min(math.floor(down_start * (1 - down_pct / 100)), current, policy.max_replicas)
        assert floor <= decision.desired <= ceiling
        history.append((now, decision.desired))


@FAST
@given(policies("kpa"), st.integers(1, 30), ticks, st.floats(min_value=1.5, max_value=4.0))
def test_kpa_per_tick_rates_hold(policy, start, sequence, up_rate):
    policy = replace(policy, max_scale_up_rate=up_rate)
    for _, current, decision in _run(policy, start, sequence):
        ready = max(current, 1)
        ceiling = max(math.ceil(up_rate * ready), current, policy.min_replicas)
        floor = min(math.floor(ready / 2), policy.max_replicas)
        assert floor <= decision.desired <= ceiling


@FAST
@given(policies("apa"), st.integers(0, 30), ticks)
def test_apa_doubles_or_halves_at_most(policy, start, sequence):
    for _, current, decision in _run(policy, start, sequence):
        ceiling = max(math.ceil(2 * max(current, 1)), policy.min_replicas)
        floor = min(math.floor(current / 2), policy.max_replicas)
        assert floor <= decision.desired <= ceiling


@FAST
@given(
    policies(),
    st.integers(0, 30),
    st.lists(st.tuples(st.floats(1.0, 400.0), values), min_size=1, max_size=40),
)
def test_memory_stays_bounded_and_round_trips(policy, start, sequence):
    for now, _, decision in _run(policy, start, sequence):
        memory = decision.memory
        assert len(memory.recommendations) <= MAX_MEMORY_ENTRIES
        assert len(memory.scale_events) <= MAX_MEMORY_ENTRIES
        assert len(memory.bursts) <= MAX_MEMORY_ENTRIES
        assert all(now - t <= 3600 for t, _ in memory.recommendations + memory.scale_events)
        assert all(now - t <= 3600 for t, _ in memory.bursts)
        assert Memory.from_dict(json.loads(json.dumps(memory.to_dict()))) == memory


@pytest.mark.parametrize(
    ("name", "limit"),
    [("hpa", 7), ("predictive", 9), ("slo", 9), ("apa", 6), ("kpa", 1000)],
)
def test_a_bogus_huge_metric_cannot_pass_the_rate_limit(name, limit):
    # 3 replicas: hpa up max(3 + 4, 3 x 2) = 7; predictive and slo max(3 + 4, 3 x 3) = 9;
    # apa x2 = 6; kpa x1000, capped by max 1000.
    policy = PolicyParams(name, "m", 4.0, 1, 1000, slo_ttft_p95_s=1.0)
    decision = decide(policy, observation(NOW, 3, 1.8e19, offered=True))
    assert decision.desired == limit
    assert json.dumps(decision.to_dict(), allow_nan=False)


def test_unknown_algorithm_holds():
    decision = decide(PolicyParams("magic", "m", 4.0, 1, 10), observation(NOW, 3, 5.0))
    assert (decision.desired, decision.outcome) == (3, "hold")
    assert "unknown algorithm" in decision.reason


def test_memory_from_junk_is_fresh():
    assert Memory.from_dict({"recommendations": "nope", "max_panic_pods": "x"}) == Memory()
    assert Memory.from_dict(None) == Memory()
