"""The trace generator: spec validation, arrival shapes, sizes, sessions, determinism."""

from __future__ import annotations

import json
import math
from itertools import pairwise
from statistics import fmean, median

import pytest

from simulator.tracefit import dispersion, fit_spec, per_second_counts
from simulator.tracegen import BLOCK_TOKENS, TraceRequest, generate, trace_lines, write_trace
from simulator.traces import load_trace
from simulator.tracespec import Piecewise, Poisson, SpecError, parse_spec, spec_to_dict

CHAT = {"kind": "lognormal", "median": 1000, "p90": 3000, "min": 1, "max": 20000}
SHORT = {"kind": "lognormal", "median": 100, "sigma": 0.5, "min": 1, "max": 1000}


def spec(arrival, duration=600.0, **extra):
    return parse_spec(
        {"duration_s": duration, "arrival": arrival, "input": CHAT, "output": SHORT} | extra
    )


def rate_between(requests: list[TraceRequest], start: float, end: float) -> float:
    return sum(1 for r in requests if start <= r.arrival_s < end) / (end - start)


def quantile(values, q):
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"arrival": {"kind": "poisson", "rate": 1}, "input": CHAT, "output": SHORT},
            "duration_s: required",
        ),
        (
            {
                "duration_s": 10,
                "arrival": {"kind": "poisson", "rate": -1},
                "input": CHAT,
                "output": SHORT,
            },
            "arrival.rate: must be a number >= 0, got -1",
        ),
        (
            {"duration_s": 10, "arrival": {"kind": "wave"}, "input": CHAT, "output": SHORT},
            "arrival.kind: must be one of",
        ),
        (
            {
                "duration_s": 10,
                "arrival": {
                    "kind": "piecewise",
                    "segments": [
                        {"duration_s": 5, "arrival": {"kind": "poisson", "rate": 1}},
                        {"duration_s": 0, "arrival": {"kind": "poisson", "rate": 1}},
                    ],
                },
                "input": CHAT,
                "output": SHORT,
            },
            "arrival.segments[1].duration_s: must be a number > 0",
        ),
        (
            {
                "duration_s": 10,
                "arrival": {"kind": "poisson", "rate": 1},
                "input": CHAT | {"max": 0},
                "output": SHORT,
            },
            "input.max: must be an integer >= 1",
        ),
        (
            {
                "duration_s": 10,
                "arrival": {"kind": "poisson", "rate": 1},
                "input": {"kind": "lognormal", "median": 5},
                "output": SHORT,
            },
            "input: give one of sigma or p90",
        ),
        (
            {
                "duration_s": 10,
                "arrival": {"kind": "poisson", "rate": 1, "burst": 2},
                "input": CHAT,
                "output": SHORT,
            },
            "arrival.burst: unknown field",
        ),
        (
            {
                "duration_s": 10,
                "arrival": {"kind": "poisson", "rate": 1},
                "input": CHAT,
                "output": SHORT,
                "sessions": {"share": 1.5, "mean_turns": 3, "think_s": 1, "message": SHORT},
            },
            "sessions.share: must be a share between 0 and 1",
        ),
        (
            {"duration_s": 10, "arrival": {"kind": "poisson", "rate": 1}, "output": SHORT},
            "input: required",
        ),
        ([1, 2], "spec: must be an object"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(data, message):
    with pytest.raises(SpecError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(data)


def test_same_spec_and_seed_give_the_same_bytes_and_another_seed_does_not(tmp_path):
    s = spec({"kind": "onoff", "rate_on": 6, "rate_off": 1, "mean_on_s": 20, "mean_off_s": 40})
    paths = [tmp_path / name for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    for path, seed in zip(paths, (5, 5, 6), strict=True):
        write_trace(generate(s, seed), path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_a_spec_round_trips_through_json():
    s = spec(
        {
            "kind": "sum",
            "processes": [
                {"kind": "poisson", "rate": 1},
                {"kind": "ramp", "from_rate": 0, "to_rate": 2},
            ],
        }
    )
    assert parse_spec(json.loads(json.dumps(spec_to_dict(s)))) == s


def test_poisson_arrivals_have_the_rate_and_dispersion_one():
    requests = generate(spec({"kind": "poisson", "rate": 5}, duration=2000), 1)
    assert len(requests) / 2000 == pytest.approx(5, rel=0.04)
    counts = per_second_counts([r.arrival_s for r in requests], 2000)
    assert dispersion(counts) == pytest.approx(1.0, abs=0.1)


def test_on_off_arrivals_are_bursty_with_the_stationary_mean_rate():
    s = spec(
        {"kind": "onoff", "rate_on": 10, "rate_off": 0, "mean_on_s": 10, "mean_off_s": 30},
        duration=20000,
    )
    requests = generate(s, 2)
    assert len(requests) / 20000 == pytest.approx(10 * 10 / 40, rel=0.1)
    assert dispersion(per_second_counts([r.arrival_s for r in requests], 20000)) > 5


def test_diurnal_peaks_half_a_period_after_its_trough():
    s = spec({"kind": "diurnal", "min_rate": 1, "max_rate": 9, "period_s": 1000}, duration=1000)
    requests = generate(s, 3)
    assert rate_between(requests, 0, 100) < 2.5
    assert rate_between(requests, 450, 550) > 7.5


def test_a_ramp_climbs_linearly_then_holds():
    s = spec({"kind": "ramp", "from_rate": 1, "to_rate": 9, "over_s": 800}, duration=1000)
    requests = generate(s, 4)
    assert rate_between(requests, 0, 100) == pytest.approx(1.5, rel=0.3)
    assert rate_between(requests, 350, 450) == pytest.approx(5, rel=0.2)
    assert rate_between(requests, 800, 1000) == pytest.approx(9, rel=0.1)


def test_a_flash_crowd_multiplies_the_rate_during_the_spike_then_decays():
    arrival = {
        "kind": "flash_crowd",
        "base_rate": 2,
        "factor": 5,
        "at_s": 300,
        "spike_s": 200,
        "rise_s": 20,
        "decay_s": 30,
    }
    requests = generate(spec(arrival, duration=1000), 5)
    assert rate_between(requests, 0, 300) == pytest.approx(2, rel=0.2)
    assert rate_between(requests, 320, 520) == pytest.approx(10, rel=0.15)
    assert rate_between(requests, 700, 1000) == pytest.approx(2, rel=0.2)


def test_idle_then_burst_repeats_its_cycle():
    arrival = {"kind": "idle_burst", "idle_rate": 0, "idle_s": 200, "burst_rate": 6, "burst_s": 100}
    requests = generate(spec(arrival, duration=600), 6)
    assert rate_between(requests, 0, 200) == 0 == rate_between(requests, 300, 500)
    assert rate_between(requests, 200, 300) == pytest.approx(6, rel=0.2)
    assert rate_between(requests, 500, 600) == pytest.approx(6, rel=0.2)


def test_piecewise_segments_run_in_turn_and_a_sum_adds_rates():
    arrival = {
        "kind": "piecewise",
        "segments": [
            {"duration_s": 300, "arrival": {"kind": "poisson", "rate": 1}},
            {
                "duration_s": 300,
                "arrival": {
                    "kind": "sum",
                    "processes": [{"kind": "poisson", "rate": 3}, {"kind": "poisson", "rate": 4}],
                },
            },
        ],
    }
    requests = generate(spec(arrival, duration=900), 7)
    assert rate_between(requests, 0, 300) == pytest.approx(1, rel=0.25)
    assert rate_between(requests, 300, 600) == pytest.approx(7, rel=0.1)
    assert rate_between(requests, 600, 900) == 0


def test_lengths_follow_their_lognormal_and_pareto_within_caps():
    pareto = {"kind": "pareto", "alpha": 1.5, "scale": 100, "min": 1, "max": 5000}
    s = spec({"kind": "poisson", "rate": 20}, duration=500, output=pareto)
    requests = generate(s, 8)
    inputs = [r.input_tokens for r in requests]
    outputs = [r.output_tokens for r in requests]
    assert median(inputs) == pytest.approx(1000, rel=0.05)
    assert quantile(inputs, 0.9) == pytest.approx(3000, rel=0.07)
    # Pareto: P(X > x) = (scale / x) ** alpha, so the median is scale * 2 ** (1 / alpha).
    assert median(outputs) == pytest.approx(100 * 2 ** (1 / 1.5), rel=0.05)
    assert min(outputs) >= 100 and max(outputs) == 5000  # the cap clips the tail


def test_a_mixture_draws_classes_by_weight():
    long_docs = {"kind": "lognormal", "median": 50000, "sigma": 0.1, "min": 1, "max": 131072}
    data = {
        "duration_s": 500,
        "arrival": {"kind": "poisson", "rate": 20},
        "classes": [
            {"weight": 0.8, "input": CHAT, "output": SHORT},
            {"weight": 0.2, "input": long_docs, "output": SHORT},
        ],
    }
    requests = generate(parse_spec(data), 9)
    long_share = fmean(r.input_tokens > 25000 for r in requests)
    assert long_share == pytest.approx(0.2, abs=0.02)


SESSIONS = {
    "share": 0.6,
    "mean_turns": 4,
    "think_s": 20,
    "message": {"kind": "lognormal", "median": 200, "sigma": 0.5, "min": 1, "max": 2000},
    "system_prompt_tokens": 1024,
}


def blocks(request: TraceRequest) -> tuple[int, ...]:
    assert request.hash_ids is not None
    return request.hash_ids


def test_session_turns_extend_the_previous_prompt_and_share_its_leading_blocks():
    requests = generate(spec({"kind": "poisson", "rate": 4}, sessions=SESSIONS), 10)
    system = (0, 1)  # 1,024 tokens: the first two blocks of every session
    in_sessions = [r for r in requests if blocks(r)[:2] == system]
    assert len(in_sessions) / len(requests) == pytest.approx(0.6, abs=0.05)
    by_first_block: dict[int | None, list[TraceRequest]] = {}
    for r in in_sessions:
        assert len(blocks(r)) == math.ceil(r.input_tokens / BLOCK_TOKENS)
        # A session's own first block (after the system prompt) identifies it.
        by_first_block.setdefault(blocks(r)[2] if len(blocks(r)) > 2 else None, []).append(r)
    followed = [
        turns for key, turns in by_first_block.items() if key is not None and len(turns) > 1
    ]
    assert len(followed) > 50
    for turns in followed:
        for before, after in pairwise(turns):
            assert after.input_tokens > before.input_tokens + before.output_tokens
            kept = before.input_tokens // BLOCK_TOKENS
            assert blocks(after)[:kept] == blocks(before)[:kept]
            # The block the previous prompt ended inside holds other tokens now: a new id.
            if before.input_tokens % BLOCK_TOKENS:
                assert blocks(after)[kept] != blocks(before)[kept]


def test_single_requests_share_no_blocks():
    requests = generate(
        spec({"kind": "poisson", "rate": 4}, sessions=SESSIONS | {"share": 0.0}), 11
    )
    ids = [i for r in requests for i in blocks(r)]
    assert len(ids) == len(set(ids))


def test_a_generated_file_loads_with_the_trace_reader(tmp_path):
    requests = generate(spec({"kind": "poisson", "rate": 4}, duration=120, sessions=SESSIONS), 12)
    path = tmp_path / "t.jsonl"
    write_trace(requests, path)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"timestamp", "input_length", "output_length", "hash_ids"}
    trace = load_trace(path)
    assert len(trace) == len(requests)
    assert list(trace.inputs) == [r.input_tokens for r in requests]
    assert trace.times[-1] == pytest.approx(
        requests[-1].arrival_s - requests[0].arrival_s, abs=1e-3
    )


def test_without_sessions_lines_carry_no_hash_ids():
    [line] = list(trace_lines([TraceRequest(1.2345, 10, 5)]))
    assert line == '{"timestamp":1234,"input_length":10,"output_length":5}\n'


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "t.jsonl"
    with pytest.raises(SpecError, match="no requests"):
        write_trace([], path)
    assert list(tmp_path.iterdir()) == []


def test_fit_keeps_a_steady_trace_poisson_and_a_bursty_one_piecewise(tmp_path):
    steady = tmp_path / "steady.jsonl"
    write_trace(generate(spec({"kind": "poisson", "rate": 3}, duration=1200), 13), steady)
    fitted = fit_spec(load_trace(steady))
    assert isinstance(fitted.arrival, Poisson)
    assert fitted.arrival.rate == pytest.approx(3, rel=0.05)
    bursty = tmp_path / "bursty.jsonl"
    arrival = {"kind": "onoff", "rate_on": 10, "rate_off": 0, "mean_on_s": 20, "mean_off_s": 40}
    write_trace(generate(spec(arrival, duration=1200), 14), bursty)
    fitted = fit_spec(load_trace(bursty))
    assert isinstance(fitted.arrival, Piecewise)
    # Bursts of ~20 s: 10 s windows, so the fitted rate reaches the bursts' height.
    rates = [s.arrival.rate for s in fitted.arrival.segments if isinstance(s.arrival, Poisson)]
    assert len(rates) == len(fitted.arrival.segments)
    assert max(rates) >= 8
