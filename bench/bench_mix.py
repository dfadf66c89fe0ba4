"""GPU-mix benchmark (issue 17's Goal): the predictive policy on each single GPU type and on
the mix (scaling/backtest/mix.py), side by side in one run, on both Azure traces and every
regime of the synthetic suite; and, on small cases, the mix program's answer beside an
exhaustive search over every replica count.

Run: ``.venv/bin/python bench/bench_mix.py [--only traces|regimes] [--regimes a,b]
[--duration S] [--types A100-80GB,A40-48GB,L4-24GB] [--no-router-guard] [--out F]`` (writes
bench/results/mix.json).

Traces: "Azure LLM inference trace 2023" by Microsoft Azure (Azure Public Dataset), CC BY 4.0,
simulator/traces/README.md; regimes: simulator/regimes/, seed 1 (as bench_backtest.py).
Llama-3.1-8B-Instruct, one GPU per replica, 60 s cold start, 5 s ticks, SLO TTFT <= 2 s and
mean inter-token latency <= 100 ms; predictive with min 1, max 50 replicas (per type for the
mix). Prices: the assumed catalogue (scaling/backtest/deployment.py
ASSUMED_PRICE_USD_PER_GPU_HOUR: A100-80GB $2.20, A40-48GB $0.90, L4-24GB $0.60 per GPU-hour).

The Goal per row: the mix meets the SLO goal of the single-type default (A100-80GB): its
attainment over feasible requests at least min(99 %, the default's), and costs no more than
the cheapest single type meeting that goal (a single type meets it with that attainment and
no larger infeasible share than the default's: a type whose KV cache or prefill cannot serve
a request does not serve it more cheaply).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from performance import ModelDoesNotFit  # noqa: E402
from scaling.backtest import BacktestResult, Deployment, Slo, run_backtest  # noqa: E402
from scaling.backtest.deployment import TraceInput, trace_requests  # noqa: E402
from scaling.backtest.jobs import priced  # noqa: E402
from scaling.backtest.mix import (  # noqa: E402
    MIX_GPU_TYPES,
    MixBacktest,
    MixSettings,
    MixSizer,
    run_mix_backtest,
)
from scaling.engine import PolicyParams  # noqa: E402
from scaling.engine.mix import DEFAULT_UTILIZATION, GpuOption, RequestClass, plan  # noqa: E402
from simulator.replica import Request  # noqa: E402
from simulator.tracegen import REGIMES, generate, regime, write_trace  # noqa: E402

POLICY = PolicyParams("predictive", "vllm:num_requests_running", 32.0, 1, 50, slo_ttft_p95_s=2.0)
DEFAULT_TYPE = "A100-80GB"
TRACES = ("conv", "code")
REGIME_SEED = 1
SMALL_CASE_MAX = 7  # replicas per type the exhaustive search tries (0..7)
SMALL_CASE_DEMANDS = (1, 2, 4, 6)  # reference replicas of each trace's first 10 minutes


def row(result: BacktestResult, wall_s: float, cost_usd: float | None = None) -> dict[str, Any]:
    cost = result.cost_usd if cost_usd is None else cost_usd
    hours = result.duration_s / 3600.0
    return {
        "slo_attainment": result.slo_attainment,
        "infeasible_share": result.infeasible_share,
        "gpu_hours": round(result.gpu_hours, 3),
        "cost_usd": round(cost or 0.0, 3),
        "cost_per_hour": round((cost or 0.0) / hours, 3) if hours else None,
        "cost_per_1k_requests": round((cost or 0.0) / result.requests * 1000, 4)
        if result.requests
        else None,
        "scale_events": result.scale_events,
        "wall_s": round(wall_s, 2),
    }


def mix_row(mixed: MixBacktest, wall_s: float) -> dict[str, Any]:
    served = mixed.requests_by_type
    total = sum(served.values()) or 1
    return row(mixed.result, wall_s, mixed.cost_usd) | {
        "gpu_hours_by_type": {k: round(v, 3) for k, v in mixed.gpu_hours_by_type.items() if v},
        "request_share_by_type": {k: round(v / total, 4) for k, v in served.items()},
        "requests_by_class": mixed.requests_by_class,
        "type_changes": mixed.type_changes,
        "top_mixes": dict(sorted(mixed.mixes.items(), key=lambda kv: -kv[1])[:3]),
    }


def goal(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Goal for one trace (module docstring)."""
    default = rows[DEFAULT_TYPE]
    target = min(0.99, default["slo_attainment"] or 0.0)
    meeting = {
        name: r["cost_usd"]
        for name, r in rows.items()
        if name != "mix"
        and (r["slo_attainment"] or 0.0) >= target - 1e-9
        and r["infeasible_share"] <= default["infeasible_share"] + 1e-9
    }
    cheapest = min(meeting, key=lambda name: meeting[name])
    mix = rows["mix"]
    meets = (mix["slo_attainment"] or 0.0) >= target - 1e-9
    return {
        "target_attainment": target,
        "cheapest_single_meeting": cheapest,
        "mix_meets_slo_goal": meets,
        "mix_costs_no_more": mix["cost_usd"] <= meeting[cheapest] * (1 + 1e-9),
        "mix_saving_vs_cheapest": round(1 - mix["cost_usd"] / meeting[cheapest], 4)
        if meeting[cheapest]
        else None,
    }


def bench_trace(
    trace: TraceInput,
    types: Sequence[str],
    duration_s: float | None,
    guard: bool = True,
    prices: dict[str, float] | None = None,
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for gpu_type in types:
        started = time.perf_counter()
        try:
            result = run_backtest(
                POLICY, trace, gpu_type=gpu_type, duration_s=duration_s, oracle=False
            )
        except ModelDoesNotFit:
            continue
        price = (prices or {}).get(gpu_type)
        rows[gpu_type] = row(priced(result, price), time.perf_counter() - started)
    started = time.perf_counter()
    mixed = run_mix_backtest(
        POLICY,
        trace,
        settings=MixSettings(tuple(types), prices or {}, router_guard=guard),
        duration_s=duration_s,
    )
    rows["mix"] = mix_row(mixed, time.perf_counter() - started)
    return {"results": rows, "goal": goal(rows)}


def prefill_only(seconds: float = 900.0) -> list[Request]:
    """Where a cheaper type can carry load: prefill-only traffic (one output token, as in
    scoring or classification), 30 requests/s of 2,000-token prompts and 1 in 12 of 8,000
    (beyond 75 % of the TTFT on an A40, within it on an A100); seed 7."""
    rng = random.Random(7)
    requests, t = [], 0.0
    while t < seconds:
        t += rng.expovariate(30.0)
        requests.append(Request(t, 8000 if rng.random() < 1 / 12 else 2000, 1))
    return requests


def small_cases(trace: str | Path, types: Sequence[str]) -> list[dict[str, Any]]:
    """The mix program against an exhaustive search: the classes of the trace's first 10
    minutes (as the replay builds them) at a few demands, each type within 0..SMALL_CASE_MAX."""
    sizer = MixSizer(POLICY, Deployment(), Slo(), MixSettings(tuple(types)))
    _, requests = trace_requests(trace, 0.0, 600.0)
    for r in requests:
        sizer.seen.append((r.arrival_s, r.input_tokens))
    sizer.output_tokens = sum(r.output_tokens for r in requests) / max(1, len(requests))
    options = [
        GpuOption(o.name, o.price_per_hour, o.capacity, o.longest_prompt_tokens, 0, SMALL_CASE_MAX)
        for o in sizer.options
    ]
    cases = []
    for demand in SMALL_CASE_DEMANDS:
        classes = sizer.classes(demand)
        started = time.perf_counter()
        milp = plan(options, classes)
        milp_s = time.perf_counter() - started
        started = time.perf_counter()
        best = exhaustive(options, classes)
        cases.append(
            {
                "demand_replicas": demand,
                "types": [o.name for o in options],
                "classes": len(classes),
                "milp": milp.text(),
                "milp_cost": round(milp.cost_per_hour, 4),
                "exhaustive_cost": None if best is None else round(best, 4),
                "equal": best is not None and abs(best - milp.cost_per_hour) < 1e-6,
                "milp_ms": round(milp_s * 1000, 2),
                "exhaustive_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        )
    return cases


def exhaustive(options: Sequence[GpuOption], classes: Sequence[RequestClass]) -> float | None:
    """The least cost per hour over every replica count that serves all classes (each
    count's best assignment of classes to types is a linear program); None: none does."""
    import numpy as np
    from scipy.optimize import linprog

    meets = [[c.longest_prompt_tokens <= o.longest_prompt_tokens for o in options] for c in classes]
    pairs = [
        (t, k)
        for k in range(len(classes))
        for t in range(len(options))
        if meets[k][t] or not any(meets[k])
    ]
    serve = np.zeros((len(classes), len(pairs)))
    busy = np.zeros((len(options), len(pairs)))
    for j, (t, k) in enumerate(pairs):
        serve[k, j] = 1.0
        busy[t, j] = classes[k].work_s(options[t].capacity)
    rates = [c.rate_per_s for c in classes]
    best: float | None = None
    for counts in itertools.product(range(SMALL_CASE_MAX + 1), repeat=len(options)):
        cost = sum(o.price_per_hour * n for o, n in zip(options, counts, strict=True))
        if best is not None and cost >= best:
            continue
        if not classes:
            best = cost
            continue
        limit = [DEFAULT_UTILIZATION * n for n in counts]
        fit = linprog(
            np.zeros(len(pairs)), A_ub=busy, b_ub=limit, A_eq=serve, b_eq=rates, bounds=(0, None)
        )
        if fit.status == 0:
            best = cost
    return best


def regime_trace(name: str, duration_s: float | None) -> Path:
    path = ROOT / "bench" / "results" / "traces" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_trace(generate(regime(name), REGIME_SEED, duration_s), path)
    return path


def print_table(name: str, data: dict[str, Any]) -> None:
    for policy, r in data["results"].items():
        att = f"{(r['slo_attainment'] or 0) * 100:.2f} %"
        share = ", ".join(
            f"{t.split('-')[0]} {s * 100:.0f} %"
            for t, s in r.get("request_share_by_type", {}).items()
        )
        print(
            f"{name:<20} {policy:<10} {att:>9} {r['infeasible_share'] * 100:>6.2f} % "
            f"{r['gpu_hours']:>7.2f} {r['cost_per_hour'] or 0:>8.2f} "
            f"{r['cost_per_1k_requests'] or 0:>8.3f}  {share}",
            flush=True,
        )
    g = data["goal"]
    print(
        f"      goal: attainment >= {g['target_attainment'] * 100:.2f} %: "
        f"{'met' if g['mix_meets_slo_goal'] else 'NOT met'}; cheapest single type meeting it "
        f"{g['cheapest_single_meeting']}; mix costs no more: "
        f"{'yes' if g['mix_costs_no_more'] else 'NO'} (saving {g['mix_saving_vs_cheapest']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("traces", "regimes"), help="run only these")
    parser.add_argument("--regimes", default=",".join(REGIMES), help="comma-separated names")
    parser.add_argument("--duration", type=float, help="seconds of each trace (default all)")
    parser.add_argument("--types", default=",".join(MIX_GPU_TYPES), help="GPU types offered")
    parser.add_argument(
        "--no-router-guard",
        action="store_true",
        help="offer every type to the program (MixSizer.routed off), to measure the guard",
    )
    parser.add_argument("--out", default="mix.json", help="file name under bench/results/")
    args = parser.parse_args()
    types = tuple(args.types.split(","))
    print(
        f"{'trace':<20} {'policy':<10} {'SLO att.':>9} {'infeas.':>8} {'GPU-h':>7} "
        f"{'$/h':>8} {'$/1k req':>8}  requests by type"
    )
    out: dict[str, Any] = {"types": types, "duration_s": args.duration, "rows": {}, "small": {}}
    names: list[tuple[str, str | Path]] = []
    if args.only != "regimes":
        names += [(t, t) for t in TRACES]
    if args.only != "traces":
        names += [(n, regime_trace(n, args.duration)) for n in args.regimes.split(",")]
    for name, trace in names:
        out["rows"][name] = data = bench_trace(
            trace, types, args.duration, not args.no_router_guard
        )
        print_table(name, data)
    if args.only is None:
        requests = prefill_only()
        for name, prices in (
            ("prefill-only", None),
            ("prefill-only A40 $0.60", {"A40-48GB": 0.6}),
        ):
            duo = ("A100-80GB", "A40-48GB")
            out["rows"][name] = data = bench_trace(requests, duo, None, True, prices)
            print_table(name, data)
    for name, trace in names[:2]:
        out["small"][name] = cases = small_cases(trace, types)
        for case in cases:
            print(
                f"small {name} D={case['demand_replicas']}: milp {case['milp']} "
                f"({case['milp_ms']} ms), exhaustive ${case['exhaustive_cost']}/h "
                f"({case['exhaustive_ms']} ms): {'equal' if case['equal'] else 'DIFFERENT'}"
            )
    path = ROOT / "bench" / "results" / args.out
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
