"""Back-test benchmark: hpa, kpa, apa, predictive and slo against the oracle on both traces
and on every regime of the synthetic suite (simulator/regimes/, docs/traces.md).

Run: ``.venv/bin/python bench/bench_backtest.py [--only traces|regimes] [--regimes a,b]
[--duration S] [--no-sweep]`` (writes bench/results/backtest.json for the Azure traces and
bench/results/backtest_regimes.json for the regimes; each regime's trace is written, with
seed ``REGIME_SEED``, to bench/results/traces/<regime>.jsonl so a row can be replayed with
``manage.py backtest --trace``). ``--duration`` cuts each regime short, ``--no-sweep`` skips
hpa's and kpa's target sweep.

Traces: "Azure LLM inference trace 2023" by Microsoft Azure (Azure Public Dataset), CC BY 4.0,
simulator/traces/README.md — the conversation trace (58 min) and the bursty code trace
(57 min), replayed whole on Llama-3.1-8B-Instruct / one A100-80GB per replica, 60 s cold
start, 5 s ticks, SLO TTFT <= 2 s and mean inter-token latency <= 100 ms.

Policy settings (documented in docs/backtest.md):
- hpa: vllm:num_requests_running, average per replica, target 32 (Little's law on the
  conversation trace: ~4 requests/s per replica x ~8 s in flight), Kubernetes defaults.
- kpa: the same metric and target (per replica; each point is turned into a pool total with
  the pods it averaged over, as Knative's scraper does), Knative defaults.
- apa: the same metric and target as hpa, per replica, AIBrix defaults.
- predictive: offered work, defaults, slo_ttft_p95_s 2.0.
- slo: the same, TTFT p95 objective 2.0 s (the SLO-aware variant of predictive).
All with min 1, max 50 replicas; the same predictive defaults on both traces.

"x oracle" divides by the oracle's lower bound, "x sched" by its schedule replayed through
the pool. Targets for predictive (issue 14's Goal): attainment >= 99 % of feasible requests
on every row; GPU-hours <= 1.2x the bound (2x where bursts are shorter than a cold start,
SHORT_BURSTS); better than hpa and kpa at their matched targets; fewer scale events than hpa.
Last full run and its reading: bench/README.md, docs/backtest.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaling.backtest import BacktestResult, OracleResult, run_backtest  # noqa: E402
from scaling.engine import PolicyParams  # noqa: E402
from simulator.tracegen import REGIMES, generate, regime, write_trace  # noqa: E402

BASE = PolicyParams("hpa", "vllm:num_requests_running", 32.0, 1, 50, slo_ttft_p95_s=2.0)
POLICIES = {
    "hpa": BASE,
    "kpa": replace(BASE, algorithm="kpa"),
    "apa": replace(BASE, algorithm="apa"),
    "predictive": replace(BASE, algorithm="predictive"),
    "slo": replace(BASE, algorithm="slo"),
}
TRACES = ("conv", "code")
REGIME_SEED = 1
# Bursts shorter than a cold start (60 s): the goal allows 2x the oracle there.
SHORT_BURSTS = {"code", "code-bursts", "long-context-bursty"}
# hpa and kpa tuned the way an operator would, by lowering the target until the SLO holds:
# the comparison at equal attainment (the defaults above spend less on code by missing most
# of it).
SWEEP_TARGETS = (32.0, 16.0, 8.0, 4.0, 2.0, 1.0)
ATTRIBUTION = (
    '"Azure LLM inference trace 2023" by Microsoft Azure (Azure Public Dataset), CC BY 4.0, '
    "https://creativecommons.org/licenses/by/4.0/"
)


def row(result: BacktestResult, wall_s: float) -> dict[str, Any]:
    replayed = result.oracle.replay_gpu_hours if result.oracle else 0.0
    return {
        "slo_attainment": result.slo_attainment,
        "infeasible_share": result.infeasible_share,
        "gpu_hours": round(result.gpu_hours, 3),
        "vs_oracle": round(result.gpu_hours_vs_oracle or 0.0, 3),
        # Against the oracle's schedule replayed: what a clairvoyant count schedule costs in
        # fact (the bound above is below any schedule).
        "vs_schedule": round(result.gpu_hours / replayed, 3) if replayed else None,
        "scale_events": result.scale_events,
        "mean_replicas": round(result.mean_replicas, 2),
        "peak_replicas": result.peak_replicas,
        "ttft_p99_s": result.ttft_p99_s,
        "wall_s": round(wall_s, 2),
    }


def oracle_row(oracle: OracleResult) -> dict[str, Any]:
    return {
        "slo_attainment": oracle.slo_attainment,
        "gpu_hours": round(oracle.gpu_hours, 3),
        "vs_oracle": 1.0,
        "vs_schedule": round(oracle.gpu_hours / oracle.replay_gpu_hours, 3)
        if oracle.replay_gpu_hours
        else None,
        "scale_events": oracle.scale_events,
        "mean_replicas": round(oracle.mean_replicas, 2),
        "peak_replicas": oracle.peak_replicas,
        "replay_gpu_hours": round(oracle.replay_gpu_hours, 3),
    }


def targets(rows: dict[str, dict[str, Any]], trace: str) -> dict[str, bool]:
    p, h, k = rows["predictive"], rows["hpa"], rows["kpa"]
    limit = 2.0 if trace in SHORT_BURSTS else 1.2
    return {
        "attainment >= 99 %": p["slo_attainment"] >= 0.99,
        f"GPU-hours <= {limit}x oracle": p["vs_oracle"] <= limit,
        "better attainment than hpa and kpa": p["slo_attainment"]
        > max(h["slo_attainment"], k["slo_attainment"]),
        "fewer GPU-hours than hpa and kpa": p["gpu_hours"] < min(h["gpu_hours"], k["gpu_hours"]),
        "fewer scale events than hpa": p["scale_events"] < h["scale_events"],
    }


def sweep(trace: str | Path, oracle: OracleResult) -> dict[str, list[dict[str, Any]]]:
    """hpa and kpa at every target of SWEEP_TARGETS: what each buys at which attainment."""
    runs: dict[str, list[dict[str, Any]]] = {"hpa": [], "kpa": []}
    for name, measured in runs.items():
        for target in SWEEP_TARGETS:
            started = time.perf_counter()
            result = run_backtest(replace(POLICIES[name], target=target), trace, oracle=oracle)
            measured.append({"target": target} | row(result, time.perf_counter() - started))
    return runs


def matched(runs: list[dict[str, Any]], attainment: float) -> dict[str, Any]:
    """The cheapest run reaching `attainment`, else the run with the best attainment."""
    reaching = [r for r in runs if r["slo_attainment"] >= attainment]
    if reaching:
        return min(reaching, key=lambda r: r["gpu_hours"])
    return max(runs, key=lambda r: (r["slo_attainment"], -r["gpu_hours"]))


def bench_trace(trace: str | Path, name: str, sweep_targets: bool = True) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    oracle: bool | OracleResult = True
    for algorithm, policy in POLICIES.items():
        started = time.perf_counter()
        result = run_backtest(policy, trace, oracle=oracle)
        rows[algorithm] = row(result, time.perf_counter() - started)
        oracle = result.oracle or False
        infeasible = result.infeasible_share
    assert isinstance(oracle, OracleResult)
    rows["oracle"] = oracle_row(oracle) | {"infeasible_share": infeasible}
    if not sweep_targets:
        return {"results": rows, "targets": targets(rows, name)}
    tuned = sweep(trace, oracle)
    p = rows["predictive"]
    best = {algo: matched(runs, p["slo_attainment"]) for algo, runs in tuned.items()}
    checks = targets(rows, name) | {
        "fewer GPU-hours than hpa and kpa tuned to its attainment": all(
            b["slo_attainment"] < p["slo_attainment"] or b["gpu_hours"] > p["gpu_hours"]
            for b in best.values()
        )
    }
    return {"results": rows, "targets": checks, "sweep": tuned, "matched": best}


def regime_trace(name: str, duration_s: float | None) -> Path:
    path = ROOT / "bench" / "results" / "traces" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_trace(generate(regime(name), REGIME_SEED, duration_s), path)
    return path


def print_table(name: str, data: dict[str, Any]) -> None:
    for policy, r in data["results"].items():
        att = f"{r['slo_attainment'] * 100:.2f} %"
        mean_peak = f"{r['mean_replicas']:.1f}/{r['peak_replicas']}"
        print(
            f"{name:<20} {policy:<11} {att:>9} {r['infeasible_share'] * 100:>6.2f} % "
            f"{r['gpu_hours']:>7.2f} {r['vs_oracle']:>8.2f} {r['vs_schedule'] or 0:>7.2f} "
            f"{r['scale_events']:>7} "
            f"{mean_peak:>10}",
            flush=True,
        )
    for policy, runs in data.get("sweep", {}).items():
        at = ", ".join(
            f"{r['target']:g}: {r['slo_attainment'] * 100:.2f} % {r['gpu_hours']:.2f} GPU-h"
            for r in runs
        )
        print(f"      {policy} by target: {at}")
    for what, met in data["targets"].items():
        print(f"      predictive {what}: {'met' if met else 'NOT met'}")


def write(out: dict[str, Any], filename: str) -> None:
    path = ROOT / "bench" / "results" / filename
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("traces", "regimes"), help="run only these")
    parser.add_argument("--regimes", default=",".join(REGIMES), help="comma-separated names")
    parser.add_argument("--duration", type=float, help="seconds of each regime (default all)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the hpa/kpa target sweep")
    args = parser.parse_args()
    header = f"{'trace':<20} {'policy':<11} {'SLO att.':>9} {'infeas.':>8} {'GPU-h':>7} "
    header += f"{'x oracle':>8} {'x sched':>7} {'events':>7} {'mean/peak':>10}"
    print(header)
    if args.only != "regimes":
        out: dict[str, Any] = {"attribution": ATTRIBUTION, "traces": {}}
        for trace in TRACES:
            out["traces"][trace] = data = bench_trace(trace, trace, not args.no_sweep)
            print_table(trace, data)
        print(f"traces: {ATTRIBUTION}")
        write(out, "backtest.json")
    if args.only != "traces":
        suite: dict[str, Any] = {"seed": REGIME_SEED, "duration_s": args.duration, "regimes": {}}
        for name in args.regimes.split(","):
            path = regime_trace(name, args.duration)
            suite["regimes"][name] = data = bench_trace(path, name, not args.no_sweep)
            print_table(name, data)
        write(suite, "backtest_regimes.json")


if __name__ == "__main__":
    main()
