"""Making the engine cheaper per tick changed no answer: long randomised signal histories
(hours of 5 s ticks with gaps, loop restarts, idle stretches ending in bursts, stale and
negative readings, late TTFT, queueing) replayed through the engine give, tick for tick,
the decisions the engine gave before the change (``decide`` for predictive's series and
window maths, and the guards' and freshness's scans every algorithm shares).

The recorded answers (``replay_identity.json``) were produced by the code before the change
(main at ad27a77, the tree this change merged into) with
``python tests/scaling/engine/test_engine_replay_identity.py --record``: for each scenario
the desired counts and a digest of every decision's full ``to_dict`` (steps, reason, metric
values, memory) per block of ticks, so a difference in the last bit of a float anywhere is
caught and located to its block.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from bisect import bisect_right
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from scaling.capacity import replica_capacity
from scaling.engine import Decision, Memory, Observation, PolicyParams, decide
from scaling.engine.guards import signal_problem
from scaling.engine.series import busy_steps, values_at
from scaling.engine.types import Signal
from scaling.signals import SignalHistory, SignalTick

FIXTURE = Path(__file__).with_name("replay_identity.json")
TICK_S = 5.0
BLOCK = 120  # ticks per digest: a mismatch is located to 10 minutes of history
MODEL = "meta-llama/Llama-3.1-8B-Instruct"

# name: (policy fields, seed, hours, offered work, observations shuffled)
SCENARIOS: dict[str, tuple[dict[str, Any], int, float, bool, bool]] = {
    "predictive offered work": ({"algorithm": "predictive"}, 1, 3.0, True, False),
    "predictive offered work, slo 1 s": (
        {"algorithm": "predictive", "slo_ttft_p95_s": 1.0, "cold_start_s": 30.0},
        2,
        2.0,
        True,
        False,
    ),
    "predictive metric average": (
        {"algorithm": "predictive", "target": 100.0},
        3,
        2.0,
        False,
        False,
    ),
    "predictive metric total": (
        {"algorithm": "predictive", "aggregation": "total", "target": 8.0},
        4,
        2.0,
        False,
        False,
    ),
    # The engine takes any Observation, not only SignalHistory's ordered series.
    "predictive offered work, unordered series": ({"algorithm": "predictive"}, 5, 1.0, True, True),
    "hpa": ({"algorithm": "hpa"}, 6, 2.0, False, False),
    "kpa": ({"algorithm": "kpa"}, 7, 2.0, False, False),
}


def capacity() -> Any:
    from performance import gpu_profile

    return replica_capacity(gpu_profile("NVIDIA-A100", "A100-80GB"), MODEL, 1, None)


def history(seed: int, hours: float, offered: bool) -> list[SignalTick]:
    """Ticks of a workload whose load wanders between steady spells, idle gaps ending in
    bursts of 10 s to 3 min, and ramps; exporters fall silent for a while; the loop skips
    ticks (short gaps, outages longer than the metric's max age, restarts that leave a gap
    and reset the pool to 1)."""
    rng = random.Random(seed)
    cap = capacity() if offered else None
    ticks: list[SignalTick] = []
    now, level, replicas, regime, regime_left, silent = 1_000_000.0, 4.0, 2, "steady", 0, 0
    for _ in range(int(hours * 3600 / TICK_S)):
        now += TICK_S
        if rng.random() < 0.01:  # a short gap (missed ticks) or an outage past max age
            now += rng.choice([10.0, 30.0, 90.0, 400.0])
        if rng.random() < 0.002:  # a restart of the loop: a long gap, the pool at 1
            now += rng.uniform(600, 1800)
            replicas = 1
        if regime_left <= 0:
            regime = rng.choice(["steady", "idle", "burst", "ramp"])
            regime_left = rng.randint(2, 60)
        regime_left -= 1
        if regime == "idle":
            level = 0.0
        elif regime == "burst":
            level = rng.uniform(5, 40)
        elif regime == "ramp":
            level = max(0.0, level + rng.uniform(-1, 3))
        else:
            level = max(0.0, level + rng.gauss(0, 1))
        value = level * rng.uniform(0.7, 1.3)
        if rng.random() < 0.003:
            value = -1.0  # a bogus reading: the guards hold
        replicas = max(1, min(30, replicas + rng.choice([-1, 0, 0, 0, 1])))
        warming = rng.choice([0, 0, 0, 1])
        if rng.random() < 0.003:  # the exporters fall silent: the series go stale
            silent = rng.randint(5, 40)
        silent -= 1
        if silent > 0:
            ticks.append(SignalTick(now=now, current=replicas, ready=replicas, capacity=cap))
            continue
        ticks.append(
            SignalTick(
                now=now,
                current=replicas,
                ready=max(replicas - warming, 0),
                warming=warming,
                metric=(now - 1.0, value),
                metric_pods=None if rng.random() < 0.05 else float(replicas),
                prompt_tokens_per_s=None if rng.random() < 0.02 else 900.0 * value,
                generation_tokens_per_s=None if rng.random() < 0.02 else 80.0 * value,
                ttft_p95_s=None if value <= 0 else 0.1 + value / rng.uniform(5, 30),
                queue_p95_s=None if value <= 0 else value / rng.uniform(10, 100),
                capacity=cap,
            )
        )
    return ticks


def shuffled(obs: Observation, rng: random.Random) -> Observation:
    def mix(series: Any) -> tuple[Any, ...]:
        points = list(series)
        rng.shuffle(points)
        return tuple(points)

    return replace(
        obs,
        series=mix(obs.series),
        series_pods=mix(obs.series_pods),
        prompt_tokens_per_s=mix(obs.prompt_tokens_per_s),
        generation_tokens_per_s=mix(obs.generation_tokens_per_s),
        ttft_p95_s=mix(obs.ttft_p95_s),
        queue_p95_s=mix(obs.queue_p95_s),
    )


def policy(fields: dict[str, Any]) -> PolicyParams:
    base = {"metric": "vllm:num_requests_running", "target": 5.0, "min_replicas": 1}
    return PolicyParams(**{**base, "max_replicas": 40, **fields})


def replay(name: str) -> list[Decision]:
    """``replay_signals``'s two steps (the SignalHistory at each tick, then ``decide`` with
    memory carried), written out so an observation can be shuffled in between."""
    fields, seed, hours, offered, mix = SCENARIOS[name]
    params = policy(fields)
    signals = SignalHistory(params)
    rng = random.Random(seed + 1000)
    memory, decisions = Memory(), []
    for tick in history(seed, hours, offered):
        signals.record(tick)
        obs = signals.observation(tick)
        decision = decide(params, shuffled(obs, rng) if mix else obs, memory)
        decisions.append(decision)
        memory = decision.memory
    return decisions


def digest(decisions: list[Decision]) -> str:
    text = json.dumps([d.to_dict() for d in decisions], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def answers(decisions: list[Decision]) -> dict[str, Any]:
    return {
        "desired": [d.desired for d in decisions],
        "outcomes": sorted({d.outcome for d in decisions}),
        "blocks": [digest(decisions[i : i + BLOCK]) for i in range(0, len(decisions), BLOCK)],
    }


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_replay_gives_the_recorded_answers(name: str) -> None:
    recorded = json.loads(FIXTURE.read_text())[name]
    got = answers(replay(name))
    assert got["desired"] == recorded["desired"]
    for index, (mine, theirs) in enumerate(zip(got["blocks"], recorded["blocks"], strict=True)):
        assert mine == theirs, f"{name}: ticks {index * BLOCK}..{(index + 1) * BLOCK - 1} differ"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_histories_reach_the_paths_that_matter(name: str) -> None:
    """The histories are worth replaying: each scales both ways and holds (bad data,
    outages, no new sample), so a changed guard or window is on the path of some tick."""
    decisions = replay(name)
    outcomes = {d.outcome for d in decisions}
    assert {"scale_up", "scale_down", "hold"} <= outcomes
    reasons = " ".join(d.reason for d in decisions)
    assert "negative" in reasons
    assert "stale" in reasons or "no data for" in reasons  # a short window empties


def odd_series(rng: random.Random) -> list[tuple[float, float]]:
    """Series the fast paths must not be fooled by: ints, repeated and unordered times,
    zero, negative and NaN values, a NaN time now and then."""
    points: list[tuple[float, float]] = []
    t = 100.0
    for _ in range(rng.randint(0, 12)):
        t += rng.choice([0, 0.5, 5, 5, 5, 60])
        value = rng.choice([0, 0.0, 3, 2.5, -1.0, 7.25, math.nan, math.inf, 12.0])
        stamp = rng.choice([t, t, t, int(t), math.nan if rng.random() < 0.05 else t])
        points.append((stamp, value))
    if rng.random() < 0.3:
        rng.shuffle(points)
    return points


def same(a: object, b: object) -> bool:
    return repr(a) == repr(b)  # NaN equals NaN here, and int vs float counts


def old_value_at(ordered: Any, t: float) -> float:
    index = bisect_right(ordered, (t, math.inf))
    return ordered[index - 1][1] if index else ordered[0][1]


def old_signal_problem(signal: Signal, now: float, max_age_s: float) -> str | None:
    if not signal.points:
        return f"no data for {signal.label}"
    newest = max(t for t, _ in signal.points)
    if not math.isfinite(newest) or now - newest > max_age_s:
        age = now - newest if math.isfinite(newest) else math.inf
        return f"{signal.label} is stale ({age:.0f} s old, max {max_age_s:.0f} s)"
    horizon = now - max(signal.lookback_s, 0.0)
    for t, v in signal.points:
        if t < horizon and t != newest:
            continue
        if math.isnan(v):
            return f"{signal.label} is NaN"
        if math.isinf(v):
            return f"{signal.label} is infinite"
        if v < 0:
            return f"{signal.label} is negative ({v:g})"
    return None


def old_busy_steps(points: Any) -> Any:
    pairs = [
        (t1 - t0, v1 - v0)
        for (t0, v0), (t1, v1) in pairwise(points)
        if t1 > t0 and v0 > 0 and v1 > 0
    ]
    return [dt for dt, _ in pairs], [dv for _, dv in pairs], [v for _, v in points if v > 0]


def outcome(call: Any) -> object:
    try:
        return call()
    except (ValueError, IndexError, OverflowError) as error:
        return type(error)


@pytest.mark.parametrize("seed", range(400))
def test_window_helpers_equal_the_per_point_code_they_replace(seed: int) -> None:
    """Each fast path against the per-point expression it replaced, on odd series: the
    same result to the bit (or the same exception)."""
    rng = random.Random(seed)
    points, other = tuple(odd_series(rng)), odd_series(rng)
    now = max((t for t, _ in points if t == t), default=100.0) + rng.choice([0, 3, 30.0])
    times = [t for t, _ in sorted(points)]
    # Another series, then the same ticks (the aligned case), then a window of them.
    for ordered in (tuple(sorted(other)), tuple(sorted(points)), tuple(sorted(points))[2:]):
        assert same(
            outcome(lambda o=ordered: values_at(o, times)),
            outcome(lambda o=ordered: [old_value_at(o, t) for t in times]),
        )
    assert same(busy_steps(list(points)), old_busy_steps(points))
    signal = Signal("x", points, rng.choice([0, 10.0, 60, 600]))
    assert same(
        outcome(lambda: signal_problem(signal, now, 60.0)),
        outcome(lambda: old_signal_problem(signal, now, 60.0)),
    )


if __name__ == "__main__" and "--record" in sys.argv:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    django.setup()
    FIXTURE.write_text(
        json.dumps({name: answers(replay(name)) for name in SCENARIOS}, separators=(",", ":"))
        + "\n"
    )
