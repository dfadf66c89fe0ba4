"""`python manage.py backtest`: policies by id or file, bad inputs, --json, --compare."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

SHORT = ["--trace", "conv", "--duration", "300"]


def run(*args: str) -> str:
    out = StringIO()
    call_command("backtest", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def policy_file(tmp_path):
    def write(data) -> str:
        path = tmp_path / "policy.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    return write


def test_a_stored_policy_replays_on_its_workloads_gpu_and_model(
    team_a, cluster, gpu_type, make_workload
):
    workload = make_workload(team_a, cluster, gpu_type, "chat")
    data = json.loads(run("--policy", str(workload.policy.pk), *SHORT, "--json"))
    [result] = data["results"]
    assert result["algorithm"] == "hpa"
    assert result["gpu_type"] == "A100-80GB"
    assert result["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert result["requests"] > 0 and 0 <= result["slo_attainment"] <= 1
    assert data["oracle"]["gpu_hours"] > 0
    assert "CC BY 4.0" in data["attribution"]


def test_a_policy_file_takes_defaults_for_omitted_fields(db, policy_file):
    path = policy_file({"algorithm": "predictive", "target": 1, "max_replicas": 8})
    data = json.loads(run("--policy", path, *SHORT, "--json", "--slo-ttft", "1.5"))
    [result] = data["results"]
    assert result["algorithm"] == "predictive"
    assert result["slo"] == {"ttft_s": 1.5, "tpot_s": 0.1}
    assert result["peak_replicas"] <= 8
    assert result["cold_start_s"] == 60.0


def test_the_table_shows_every_compared_algorithm_and_the_oracle(db, policy_file):
    path = policy_file({"algorithm": "predictive", "target": 32})
    text = run("--policy", path, *SHORT, "--compare", "hpa,kpa,oracle")
    rows = [line.split()[0] for line in text.splitlines() if line.strip()]
    for name in ("predictive", "hpa", "kpa", "oracle"):
        assert name in rows
    assert "SLO att." in text and "x oracle" in text
    assert "Azure LLM inference trace 2023" in text


def test_compare_as_json_shares_one_oracle(db, policy_file):
    path = policy_file({"algorithm": "hpa", "target": 32})
    data = json.loads(run("--policy", path, *SHORT, "--compare", "kpa,hpa", "--json"))
    assert [r["algorithm"] for r in data["results"]] == ["hpa", "kpa"]
    oracle_hours = data["oracle"]["gpu_hours"]
    schedule_hours = data["oracle"]["replay_gpu_hours"]
    assert 0 < oracle_hours <= schedule_hours
    for r in data["results"]:
        assert r["gpu_hours_vs_oracle"] == pytest.approx(r["gpu_hours"] / oracle_hours, rel=1e-3)
        assert r["gpu_hours_vs_oracle_schedule"] == pytest.approx(
            r["gpu_hours"] / schedule_hours, rel=1e-3
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"algorithm": "hpa"}, "target: required"),
        ({"target": -1}, "target"),
        ({"target": 4, "min_replicas": 5, "max_replicas": 2}, "Min replicas cannot be above"),
        ({"target": 4, "algorithm": "magic"}, "algorithm"),
        ({"target": 4, "colour": "blue"}, "unknown field(s) colour"),
        ({"target": "four"}, "target"),
        ({"target": 4, "algorithm": "slo"}, "slo_ttft_p95_s"),
        ({"target": 4, "metric": "my_metric"}, "cannot be back-tested"),
        ([1, 2], "expected a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_policy_file_names_the_problem(db, policy_file, data, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("--policy", policy_file(data), *SHORT)


def test_an_unknown_policy_id_is_an_error(db):
    with pytest.raises(CommandError, match="no scaling policy with that id"):
        run("--policy", "999999", *SHORT)


def test_a_bad_trace_line_is_reported_with_its_number(db, policy_file, tmp_path):
    trace = tmp_path / "bad.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,100,10\n"
        "2023-11-16 18:15:47.6805900,lots,10\n"
    )
    path = policy_file({"target": 4})
    with pytest.raises(CommandError, match="line 3"):
        run("--policy", path, "--trace", str(trace))
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"timestamp": 0, "input_length": 5, "output_length": 3}\n{"timestamp": 1}\n')
    with pytest.raises(CommandError, match="line 2"):
        run("--policy", path, "--trace", str(lines))
    with pytest.raises(CommandError, match="cannot read trace"):
        run("--policy", path, "--trace", str(tmp_path / "missing.csv"))


def test_a_jsonl_trace_replays(db, policy_file, tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"timestamp": i * 500, "input_length": 300, "output_length": 20})
            for i in range(120)
        )
    )
    data = json.loads(run("--policy", policy_file({"target": 8}), "--trace", str(trace), "--json"))
    assert data["results"][0]["requests"] == 120
    assert data["results"][0]["slo_attainment"] == 1.0
    assert data["attribution"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "hpa,foo"], "unknown foo"),
        (["--gpu-type", "Z80"], "unknown GPU type"),
        (["--slo-ttft", "0"], "--slo-ttft must be a positive"),
        (["--start", "-1"], "start must be a number of seconds >= 0"),
        (["--duration", "-5"], "duration must be a positive"),
        (["--start", "99999"], r"the start, 99999 s, is past the trace's last request \(3"),
    ],
)
def test_bad_options_are_errors(db, policy_file, args, message):
    with pytest.raises(CommandError, match=message):
        run("--policy", policy_file({"target": 4}), *SHORT, *args)


def long_prompt_trace(tmp_path) -> str:
    """A JSON-lines trace where every fifth prompt is too long for a 2 s TTFT on an A100."""
    lines = [
        json.dumps(
            {
                "timestamp": 250 * i,
                "input_length": 40_000 if i % 5 == 0 else 600,
                "output_length": 20,
            }
        )
        for i in range(400)
    ]
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_the_infeasible_requests_and_the_cap_are_shown_in_the_table_and_the_json(
    db, policy_file, tmp_path
):
    trace = long_prompt_trace(tmp_path)
    path = policy_file({"algorithm": "hpa", "target": 1, "max_replicas": 2})
    data = json.loads(run("--policy", path, "--trace", trace, "--json"))
    sentence = "80 requests (20 %) were too long to meet a 2 s TTFT on A100-80GB"
    assert data["infeasible"] == sentence
    [result] = data["results"]
    assert result["infeasible"] == 80 and result["infeasible_text"] == sentence
    assert result["max_replicas"] == 2 and result["at_max_share"] > 0
    assert any(w.startswith("hpa: at max_replicas (2)") for w in data["warnings"])
    assert data["oracle"]["ceiling"] is None  # not the policy's max
    assert data["oracle"]["slo_attainment"] is not None
    text = run("--policy", path, "--trace", trace)
    assert f"Infeasible: {sentence}" in text
    assert "Warnings:" in text and "! hpa: at max_replicas (2)" in text
    assert "oracle bound" in text and "oracle sched." in text


def test_the_oracle_is_capped_only_when_asked_and_then_says_so(db, policy_file):
    path = policy_file({"algorithm": "hpa", "target": 32, "max_replicas": 10})
    data = json.loads(run("--policy", path, *SHORT, "--json", "--oracle-max-replicas", "1"))
    oracle = data["oracle"]
    assert oracle["ceiling"] == 1 and oracle["capped_share"] > 0
    assert any(w.startswith("oracle: at its cap of 1 replicas") for w in data["warnings"])
    with pytest.raises(CommandError, match="--oracle-max-replicas must be at least 1"):
        run("--policy", path, *SHORT, "--oracle-max-replicas", "0")


def test_progress_is_drawn_on_stderr_when_asked_and_not_otherwise(db, policy_file):
    path = policy_file({"algorithm": "hpa", "target": 32})
    for flags, drawn in (([], False), (["--progress"], True)):
        out, err = StringIO(), StringIO()
        call_command("backtest", "--policy", path, *SHORT, "--json", *flags, stdout=out, stderr=err)
        assert ("100 %" in err.getvalue()) is drawn
        assert ("[" in err.getvalue()) is drawn
        json.loads(out.getvalue())  # stdout stays pure JSON


def test_a_predictive_policy_file_needs_no_target_unless_compared_with_one_that_reads_it(
    db, policy_file
):
    path = policy_file({"algorithm": "predictive", "max_replicas": 8})
    data = json.loads(run("--policy", path, *SHORT, "--json"))
    [result] = data["results"]
    assert result["algorithm"] == "predictive" and result["slo_attainment"] is not None
    with pytest.raises(CommandError, match="the hpa algorithm needs a target"):
        run("--policy", path, *SHORT, "--compare", "hpa")


def test_costs_are_gpu_hours_times_the_gpu_types_hourly_cost(
    team_a, cluster, gpu_type, make_workload
):
    gpu_type.hourly_cost = "3.10"
    gpu_type.save()
    workload = make_workload(team_a, cluster, gpu_type, "chat")
    data = json.loads(run("--policy", str(workload.policy.pk), *SHORT, "--json"))
    [result] = data["results"]
    assert result["price_per_gpu_hour"] == 3.10 and result["price_source"] == "given"
    cost = result["gpu_hours"] * 3.10
    assert result["cost_usd"] == pytest.approx(cost, rel=1e-5)
    assert result["cost_per_hour"] == pytest.approx(cost / (300 / 3600), rel=1e-5)
    assert result["cost_per_1k_requests"] == pytest.approx(
        cost / result["requests"] * 1000, rel=1e-5
    )
    oracle = data["oracle"]
    assert oracle["cost_usd"] == pytest.approx(oracle["gpu_hours"] * 3.10, rel=1e-5)
    assert oracle["replay_cost_usd"] == pytest.approx(oracle["replay_gpu_hours"] * 3.10, rel=1e-5)


def test_price_option_wins_and_without_any_price_an_assumed_one_is_labelled(db, policy_file):
    path = policy_file({"algorithm": "predictive", "target": 32})
    given = json.loads(run("--policy", path, *SHORT, "--json", "--price", "5"))["results"][0]
    assert given["price_per_gpu_hour"] == 5.0 and given["price_source"] == "given"
    assert given["cost_usd"] == pytest.approx(given["gpu_hours"] * 5.0, rel=1e-5)
    a40 = [*SHORT, "--gpu-type", "A40-48GB"]
    assumed = json.loads(run("--policy", path, *a40, "--json"))["results"][0]
    assert assumed["price_per_gpu_hour"] == 0.90 and assumed["price_source"] == "assumed"
    text = run("--policy", path, *a40)
    assert "Price: $0.90 per GPU-hour (an assumed price" in text
    header = next(line for line in text.splitlines() if line.startswith("policy"))
    row = next(line for line in text.splitlines() if line.startswith("predictive"))
    assert "$/h" in header and "$/1k req" in header
    money = f"{assumed['cost_per_hour']:.2f} {assumed['cost_per_1k_requests']:.3f}"
    assert f"{assumed['gpu_hours']:.2f}" in row.split() and money in " ".join(row.split())
    with pytest.raises(CommandError, match="--price"):
        run("--policy", path, *SHORT, "--price", "-1")
