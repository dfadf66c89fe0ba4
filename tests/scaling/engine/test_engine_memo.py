"""The per-observation memo (engine/memo.py) changes no answer: edits in a row replayed on the
same observations (as the what-if does while the operator types) give, decision for decision,
the full ``to_dict`` of the engine on fresh observations, whichever policy field an edit
changes; an edit of a field the memoised work reads recomputes it, and one of any other field
reuses it."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from scaling.engine import Memory, Observation, PolicyParams, decide
from scaling.engine.guards import resolve_params
from scaling.engine.predictive import (
    DEFAULTS,
    OUTLOOK_PARAMS,
    forecast_outlook,
    outlook,
)
from scaling.signals import SignalHistory
from tests.scaling.engine.test_engine_replay_identity import history, policy

HOURS = 0.25
# Another valid value for every PolicyParams field (the algorithm is predictive's).
EDITS: dict[str, Any] = {
    "metric": "vllm:num_requests_waiting",
    "target": 7.0,
    "min_replicas": 2,
    "max_replicas": 12,
    "aggregation": "total",
    "scale_up_tolerance": 0.2,
    "scale_down_tolerance": 0.2,
    "scale_up_stabilization_s": 30.0,
    "scale_down_stabilization_s": 120.0,
    "scale_up_max_percent": 100.0,
    "scale_up_max_pods": 2,
    "scale_up_period_s": 30.0,
    "scale_down_max_percent": 20.0,
    "scale_down_max_pods": 1,
    "scale_down_period_s": 30.0,
    "stable_window_s": 30.0,  # within the base history: the observations hold 60 s
    "panic_window_s": 12.0,
    "panic_threshold_percent": 150.0,
    "max_scale_up_rate": 5.0,
    "max_scale_down_rate": 3.0,
    "cooldown_s": 30.0,
    "scale_to_zero_grace_s": 60.0,
    "cold_start_s": 25.0,
    "max_metric_age_s": 20.0,
    "slo_ttft_p95_s": 0.8,
}


def observations(
    base: PolicyParams, offered: bool, seed: int, hours: float = HOURS
) -> list[Observation]:
    signals = SignalHistory(base)
    out = []
    for tick in history(seed, hours, offered):
        signals.record(tick)
        out.append(signals.observation(tick))
    return out


def replayed(params: PolicyParams, observed: list[Observation]) -> list[dict[str, Any]]:
    memory, out = Memory(), []
    for obs in observed:
        decision = decide(params, obs, memory)
        out.append(decision.to_dict())
        memory = decision.memory
    return out


def fresh(observed: list[Observation]) -> list[Observation]:
    """The same observations as new objects: no memo."""
    return [replace(obs) for obs in observed]


def test_every_field_is_edited_in_the_sweep() -> None:
    assert set(EDITS) == {f.name for f in fields(PolicyParams)} - {"algorithm"}


@pytest.mark.parametrize(
    ("offered", "base_fields"),
    [
        (True, {}),
        (False, {"target": 100.0}),
        (False, {"aggregation": "total", "target": 8.0}),
        (False, {"algorithm": "kpa"}),
        # A panic window of its own: else it follows the stable one, hiding the stable
        # window's own place in the key.
        (False, {"algorithm": "kpa", "panic_window_s": 6.0}),
        (False, {"algorithm": "kpa", "aggregation": "total", "target": 8.0}),
        (False, {"algorithm": "hpa"}),
        (False, {"algorithm": "apa"}),
    ],
)
def test_edits_in_a_row_answer_as_the_engine_on_fresh_observations(
    offered: bool, base_fields: dict[str, Any]
) -> None:
    base = policy({"algorithm": "predictive", **base_fields})
    shared = observations(base, offered, seed=1)  # exporters fall silent: stale series
    edited = base
    for name, value in EDITS.items():
        # Each edit once on its own, then kept (edits accumulate as while typing), and the
        # base again: the memo then holds answers under several keys at once.
        for params in (replace(base, **{name: value}), edited := replace(edited, **{name: value})):
            assert replayed(params, shared) == replayed(params, fresh(shared)), name
    assert replayed(base, shared) == replayed(base, fresh(shared))


def _entries(observed: list[Observation], name: str = "predictive.outlook") -> int:
    return sum(len(obs.__dict__.get("_memo", {}).get(name, {})) for obs in observed)


@pytest.mark.parametrize("name", ["cold_start_s", "slo_ttft_p95_s"])
def test_an_edit_of_a_field_the_forecast_reads_recomputes_it(name: str) -> None:
    base = policy({"algorithm": "predictive"})
    shared = observations(base, True, seed=8)
    replayed(base, shared)
    before = _entries(shared)
    assert before > 0
    params = replace(base, **{name: EDITS[name]})
    assert replayed(params, shared) == replayed(params, fresh(shared))
    assert _entries(shared) > before


@pytest.mark.parametrize("name", ["metric", "aggregation", "target"])
def test_the_metric_fallback_recomputes_on_the_fields_it_reads(name: str) -> None:
    base = policy({"algorithm": "predictive", "target": 100.0})
    shared = observations(base, False, seed=9)
    replayed(base, shared)
    before = _entries(shared)
    params = replace(base, **{name: EDITS[name]})
    assert replayed(params, shared) == replayed(params, fresh(shared))
    assert _entries(shared) > before


@pytest.mark.parametrize(
    "name", ["target", "min_replicas", "max_replicas", "scale_down_stabilization_s"]
)
def test_an_edit_of_another_field_reuses_the_forecast_on_offered_work(name: str) -> None:
    base = policy({"algorithm": "predictive"})
    shared = observations(base, True, seed=10)
    replayed(base, shared)
    before = _entries(shared)
    params = replace(base, **{name: EDITS[name]})
    assert replayed(params, shared) == replayed(params, fresh(shared))
    assert _entries(shared) == before


@pytest.mark.parametrize("name", OUTLOOK_PARAMS)
def test_each_forecast_constant_is_in_the_key(name: str) -> None:
    """The forecaster's constants are no policy fields (always the defaults through
    ``decide``): changed in the resolved params, the memo recomputes as well."""
    base = policy({"algorithm": "predictive", "target": 100.0})
    p = resolve_params(base, DEFAULTS)
    changed = {**p, name: p[name] * 0.5}
    differs = False
    # Histories where every constant counts somewhere (seed 13: a late burst after idle).
    for offered, seed, hours in ((True, 13, 0.5), (False, 11, 1.0)):
        for obs in observations(base, offered, seed, hours):
            assert outlook(base, p, obs) == forecast_outlook(base, p, replace(obs))
            again = outlook(base, changed, obs)
            assert again == forecast_outlook(base, changed, replace(obs))
            differs = differs or again != outlook(base, p, obs)
    assert differs, f"{name} changes no outlook here: the test would not see it missing"


def test_the_memo_is_no_part_of_the_observation() -> None:
    base = policy({"algorithm": "predictive"})
    shared = observations(base, True, seed=12)[-5:]
    plain = [repr(obs) for obs in shared]
    replayed(base, shared)
    assert all("_memo" in obs.__dict__ for obs in shared)
    assert [repr(obs) for obs in shared] == plain
    assert shared == fresh(shared)
    assert all("_memo" not in obs.__dict__ for obs in fresh(shared))


@pytest.mark.parametrize(
    ("name", "recomputes"),
    [
        ("metric", True),
        ("aggregation", True),
        ("max_metric_age_s", True),
        ("stable_window_s", True),
        ("panic_window_s", True),
        ("target", False),
        ("panic_threshold_percent", False),
        ("max_scale_up_rate", False),
        ("scale_to_zero_grace_s", False),
    ],
)
def test_kpa_windows_recompute_on_the_fields_they_read_only(name: str, recomputes: bool) -> None:
    base = policy({"algorithm": "kpa"})
    shared = observations(base, False, seed=14)
    replayed(base, shared)
    before = _entries(shared, "kpa.windows")
    assert before > 0
    params = replace(base, **{name: EDITS[name]})
    assert replayed(params, shared) == replayed(params, fresh(shared))
    assert (_entries(shared, "kpa.windows") > before) == recomputes


@pytest.mark.parametrize("algorithm", ["hpa", "kpa", "predictive"])
def test_the_guards_verdict_recomputes_on_the_metric_age(algorithm: str) -> None:
    base = policy({"algorithm": algorithm})
    shared = observations(base, algorithm == "predictive", seed=1)
    replayed(base, shared)
    strict = replace(base, max_metric_age_s=EDITS["max_metric_age_s"])
    answers = replayed(strict, shared)
    assert answers == replayed(strict, fresh(shared))
    stale = sum("stale" in a["reason"] for a in answers)
    assert stale > sum("stale" in a["reason"] for a in replayed(base, shared))
