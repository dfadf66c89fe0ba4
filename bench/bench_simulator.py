"""Simulator benchmarks: virtual-clock replay speed and routing strategies at saturation.

Run: ``.venv/bin/python bench/bench_simulator.py`` (writes bench/results/simulator.json).

1. Replay speed: the one-hour Azure conversation trace (Azure LLM inference trace 2023,
   CC BY 4.0, simulator/traces/README.md) through one pool of Llama-3.1-8B on A100-80GB
   with a fixed replica count; simulated seconds per wall second, median of runs. Measured
   for the default engine (chunked prefill) and, in the same run and alternating with it,
   for the engine without chunked prefill, with the latencies each produces.
2. Routing: the same trace, time-compressed until round-robin no longer keeps up with the
   offered load at a fixed replica count; then round-robin, least-outstanding-requests and
   shortest-expected-delay side by side on identical arrivals.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from performance import GPU_PROFILES, MODELS  # noqa: E402
from simulator.config import LoadConfig  # noqa: E402
from simulator.load import make_load  # noqa: E402
from simulator.pool import ROUTING_STRATEGIES, ServingPool  # noqa: E402
from simulator.replica import Completion, Request  # noqa: E402
from simulator.traces import load_trace  # noqa: E402

GPU = GPU_PROFILES["A100-80GB"]
MODEL = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
REPLAY_REPLICAS = 3
ROUTING_REPLICAS = 4
ROUTING_WINDOW_S = 600.0
RUNS = 3
# Published reference (round-robin vs an optimised scheduler): latency ms, req/s, GPU util.
REFERENCE = {"round_robin": (142.0, 210.0, 0.61), "optimised": (96.0, 298.0, 0.87)}


def replay_hour() -> dict[str, Any]:
    started = time.perf_counter()
    load_trace("conv")
    parse_s = time.perf_counter() - started
    arrivals = make_load(LoadConfig(kind="trace", trace="conv")).arrivals(0.0, 3600.0)
    walls: dict[bool, list[float]] = {True: [], False: []}
    done: dict[bool, list[Completion]] = {}
    for _ in range(RUNS):
        for chunked in (True, False):  # alternated, so both see the same machine load
            started = time.perf_counter()
            pool = ServingPool(
                GPU, MODEL, replicas=REPLAY_REPLICAS, warm=True, chunked_prefill=chunked
            )
            pool.submit_many(arrivals)
            pool.advance(3600.0)
            walls[chunked].append(time.perf_counter() - started)
            done[chunked] = list(pool.completed)
    wall = statistics.median(walls[True])
    unchunked = statistics.median(walls[False])
    return {
        "trace": "AzureLLMInferenceTrace_conv (1 h)",
        "replicas": REPLAY_REPLICAS,
        "requests": len(arrivals),
        "completed": len(done[True]),
        "trace_parse_s": round(parse_s, 3),
        "wall_s_median": round(wall, 3),
        "wall_s_runs": [round(w, 3) for w in walls[True]],
        "sim_s_per_wall_s": round(3600.0 / wall, 1),
        "target_wall_s": 10.0,
        "met": wall < 10.0,
        "without_chunked_prefill": {
            "wall_s_median": round(unchunked, 3),
            "wall_s_runs": [round(w, 3) for w in walls[False]],
            "wall_ratio_chunked_over_unchunked": round(wall / unchunked, 3),
        },
        "latency": {
            "chunked_prefill": _latency(done[True]),
            "without_chunked_prefill": _latency(done[False]),
        },
    }


def _latency(done: list[Completion]) -> dict[str, float]:
    ttft = sorted(c.ttft_s for c in done)
    itl = sorted(c.itl_s for c in done)
    return {
        "ttft_p50_s": round(ttft[len(ttft) // 2], 4),
        "ttft_p99_s": round(ttft[int(0.99 * len(ttft))], 4),
        "itl_mean_p50_s": round(itl[len(itl) // 2], 4),
        "itl_mean_p99_s": round(itl[int(0.99 * len(itl))], 4),
    }


def run_window(arrivals: list[Request], routing: str) -> dict[str, float]:
    """Serve every arrival of the window to completion; rates over the whole makespan."""
    pool = ServingPool(GPU, MODEL, replicas=ROUTING_REPLICAS, warm=True, routing=routing)
    pool.submit_many(arrivals)
    pool.advance(ROUTING_WINDOW_S * 20)
    done = list(pool.completed)
    makespan = max(c.finish_s for c in done)
    busy = sum(r.busy_s for r in pool.replicas.values())
    return {
        "completed": len(done),
        "mean_latency_s": statistics.fmean(c.e2e_s for c in done),
        "mean_ttft_s": statistics.fmean(c.ttft_s for c in done),
        "p99_ttft_s": sorted(c.ttft_s for c in done)[int(0.99 * len(done))],
        "requests_per_s": len(done) / makespan,
        "gpu_util": busy / (ROUTING_REPLICAS * makespan),
    }


def saturating_speed() -> tuple[float, list[dict[str, float]]]:
    """Smallest compression at which round-robin completes < 95 % of the offered rate."""
    sweep = []
    for speed in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0):
        arrivals = _arrivals(speed)
        result = run_window(arrivals, "round-robin")
        offered = len(arrivals) / ROUTING_WINDOW_S
        sweep.append(
            {
                "speed": speed,
                "offered_rps": round(offered, 2),
                "completed_rps": round(result["requests_per_s"], 2),
            }
        )
        if result["requests_per_s"] < 0.95 * offered:
            return speed, sweep
    return speed, sweep


def _arrivals(speed: float) -> list[Request]:
    return make_load(LoadConfig(kind="trace", trace="conv", speed=speed)).arrivals(
        0.0, ROUTING_WINDOW_S
    )


def routing() -> dict[str, Any]:
    speed, sweep = saturating_speed()
    below = max((row["speed"] for row in sweep if row["speed"] < speed), default=speed)
    return {
        "replicas": ROUTING_REPLICAS,
        "window_s": ROUTING_WINDOW_S,
        "saturation_sweep": sweep,
        "saturated": compare(speed),
        "just_below_saturation": compare(below),
    }


def compare(speed: float) -> dict[str, Any]:
    arrivals = _arrivals(speed)
    results = {name: run_window(arrivals, name) for name in ROUTING_STRATEGIES}
    base = results["round-robin"]
    ratios = {
        name: {
            "latency": r["mean_latency_s"] / base["mean_latency_s"],
            "throughput": r["requests_per_s"] / base["requests_per_s"],
            "gpu_util": r["gpu_util"] / base["gpu_util"],
        }
        for name, r in results.items()
    }
    rr, opt = REFERENCE["round_robin"], REFERENCE["optimised"]
    return {
        "speed": speed,
        "requests": len(arrivals),
        "results": results,
        "ratios_vs_round_robin": ratios,
        "reference_ratios": {
            "latency": opt[0] / rr[0],
            "throughput": opt[1] / rr[1],
            "gpu_util": opt[2] / rr[2],
        },
    }


def main() -> None:
    replay = replay_hour()
    print(
        f"replay: 1 h conv trace ({replay['requests']} requests, {REPLAY_REPLICAS} x A100 8B) "
        f"in {replay['wall_s_median']} s wall (median of {RUNS}) = "
        f"{replay['sim_s_per_wall_s']} sim s per wall s (target < 10 s: "
        f"{'met' if replay['met'] else 'NOT met'})"
    )
    old = replay["without_chunked_prefill"]
    print(
        f"replay without chunked prefill: {old['wall_s_median']} s wall (median of {RUNS}); "
        f"chunked / unchunked = x{old['wall_ratio_chunked_over_unchunked']}"
    )
    for mode, lat in replay["latency"].items():
        print(
            f"latency {mode}: TTFT p50 {lat['ttft_p50_s']} s, p99 {lat['ttft_p99_s']} s; "
            f"mean ITL p50 {lat['itl_mean_p50_s']} s, p99 {lat['itl_mean_p99_s']} s"
        )
    outcome = routing()
    for regime in ("just_below_saturation", "saturated"):
        _print_routing(regime, outcome[regime])
    out = ROOT / "bench" / "results" / "simulator.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"replay": replay, "routing": outcome}, indent=2) + "\n")


def _print_routing(regime: str, result: dict[str, Any]) -> None:
    reference = result["reference_ratios"]
    for name, r in result["results"].items():
        ratio = result["ratios_vs_round_robin"][name]
        print(
            f"routing {regime} {name} @ {result['speed']}x trace speed, {ROUTING_REPLICAS} "
            f"replicas: mean latency "
            f"{r['mean_latency_s'] * 1000:.0f} ms (TTFT {r['mean_ttft_s'] * 1000:.0f} ms), "
            f"{r['requests_per_s']:.2f} req/s, GPU util {r['gpu_util']:.0%}; vs round-robin: "
            f"latency x{ratio['latency']:.3f}, throughput x{ratio['throughput']:.3f}, "
            f"util x{ratio['gpu_util']:.3f} (reference optimised/RR: latency "
            f"x{reference['latency']:.3f}, throughput x{reference['throughput']:.3f}, "
            f"util x{reference['gpu_util']:.3f})"
        )


if __name__ == "__main__":
    main()
