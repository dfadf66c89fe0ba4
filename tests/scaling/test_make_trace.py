"""`python manage.py make_trace`: regimes, specs, --fit on the Azure traces, errors; and every
regime, shortened, through the back-test."""

from __future__ import annotations

import json
from dataclasses import replace
from io import StringIO
from statistics import median

import pytest
from django.core.management import CommandError, call_command

from scaling.backtest import run_backtest
from scaling.engine import PolicyParams
from simulator.tracegen import REGIMES, generate, load_spec, regime
from simulator.traces import load_trace

POLICY = PolicyParams("hpa", "vllm:num_requests_running", 32.0, 1, 50, slo_ttft_p95_s=2.0)
SHORT_S = 120


def make_trace(*args: str) -> str:
    out = StringIO()
    call_command("make_trace", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def quantile(values, q):
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_the_suite_has_the_regimes_the_issue_names():
    wanted = {
        "long-context-steady",
        "long-context-bursty",
        "short-chat-diurnal",
        "code-bursts",
        "slow-ramp",
        "flash-crowd",
        "idle-then-burst",
        "mixed-lengths",
        "multi-turn-sessions",
    }
    assert wanted <= set(REGIMES)
    for name in REGIMES:
        spec = regime(name)
        assert spec.name == name and spec.description
        assert 600 <= spec.duration_s <= 1800  # 10-30 min: a bench can run them all


def test_long_context_regimes_have_the_published_shape():
    """Issue 14: 3-4 req/s, prompts median 7k-12k, p90 27k-39k, p99 66k-85k, some past 128k,
    outputs median 70-350."""
    for name in ("long-context-steady", "long-context-bursty"):
        spec = regime(name)
        requests = generate(spec, 1)
        inputs = [r.input_tokens for r in requests]
        outputs = [r.output_tokens for r in requests]
        assert 3 <= len(requests) / spec.duration_s <= 4
        assert 7000 <= median(inputs) <= 12000
        assert 27000 <= quantile(inputs, 0.9) <= 39000
        assert 66000 <= quantile(inputs, 0.99) <= 85000
        assert max(inputs) > 128_000
        assert 70 <= median(outputs) <= 350


@pytest.mark.parametrize("name", REGIMES)
def test_each_regime_is_deterministic_loads_and_back_tests(name, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        make_trace("--regime", name, "--seed", "3", "--duration", str(SHORT_S), "--out", str(path))
    assert a.read_bytes() == b.read_bytes()
    trace = load_trace(a)
    assert len(trace) == len(a.read_text().splitlines())
    assert trace.duration_s < SHORT_S
    for algorithm in ("hpa", "predictive"):
        result = run_backtest(replace(POLICY, algorithm=algorithm), a)
        assert result.requests == len(trace)
        assert result.slo_attainment is not None and 0 <= result.slo_attainment <= 1
        assert result.gpu_hours > 0 and result.oracle is not None


def test_a_spec_file_makes_the_trace_its_json_says(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": "flat",
                "duration_s": 100,
                "arrival": {"kind": "poisson", "rate": 2},
                "input": {"kind": "lognormal", "median": 50, "sigma": 0, "min": 1, "max": 100},
                "output": {"kind": "pareto", "alpha": 2, "scale": 10, "min": 1, "max": 10},
            }
        )
    )
    out = tmp_path / "t.jsonl"
    said = make_trace("--spec", str(spec), "--seed", "1", "--out", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"wrote {len(lines)} requests" in said
    assert {(r["input_length"], r["output_length"]) for r in lines} == {(50, 10)}
    assert all("hash_ids" not in r for r in lines)
    assert 150 <= len(lines) <= 250


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('{"duration_s": 10}', "bad spec: arrival: required"),
        ("not json", "is not JSON"),
        (
            '{"duration_s": 10, "arrival": {"kind": "poisson", "rate": 0},'
            ' "input": {"kind": "pareto", "alpha": 1, "scale": 1},'
            ' "output": {"kind": "pareto", "alpha": 1, "scale": 1}}',
            "produced no requests",
        ),
    ],
)
def test_a_bad_spec_is_a_command_error_and_writes_nothing(tmp_path, spec, message):
    path = tmp_path / "spec.json"
    path.write_text(spec)
    out = tmp_path / "t.jsonl"
    with pytest.raises(CommandError, match=message):
        make_trace("--spec", str(path), "--out", str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"]


def test_bad_arguments_are_command_errors(tmp_path):
    with pytest.raises(CommandError, match="unknown regime 'nope'"):
        make_trace("--regime", "nope", "--out", str(tmp_path / "t.jsonl"))
    with pytest.raises(CommandError, match="--duration must be a positive"):
        make_trace("--regime", REGIMES[0], "--duration", "-5", "--out", str(tmp_path / "t.jsonl"))
    with pytest.raises(CommandError, match="--out FILE is required"):
        make_trace("--regime", REGIMES[0])
    with pytest.raises(CommandError, match="cannot read trace"):
        make_trace("--fit", str(tmp_path / "missing.csv"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["conv", "code"])
def test_a_trace_from_the_fitted_spec_matches_the_original(name, tmp_path):
    """Tolerance: mean rate within 5 %, median and p90 of input and output within 10 %."""
    spec_path = tmp_path / "fit.json"
    make_trace("--fit", name, "--out", str(spec_path))
    spec = load_spec(spec_path)
    original = load_trace(name)
    copy_path = tmp_path / "copy.jsonl"
    make_trace("--spec", str(spec_path), "--seed", "2", "--out", str(copy_path))
    copy = load_trace(copy_path)
    assert len(copy) / spec.duration_s == pytest.approx(len(original) / spec.duration_s, rel=0.05)
    for ours, theirs in ((copy.inputs, original.inputs), (copy.outputs, original.outputs)):
        for q in (0.5, 0.9):
            assert quantile(ours, q) == pytest.approx(quantile(theirs, q), rel=0.1)
    assert max(copy.inputs) <= max(original.inputs)


def test_fit_prints_the_spec_when_no_out_is_given():
    printed = json.loads(make_trace("--fit", "conv"))
    assert printed["name"] == "AzureLLMInferenceTrace_conv-fit"
    assert "index of dispersion" in printed["description"]
    assert printed["classes"][0]["input"]["max"] == 14050


def test_list_names_every_regime():
    listed = make_trace("--list")
    assert [line.split(":")[0] for line in listed.splitlines()] == list(REGIMES)
