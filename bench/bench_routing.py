"""Routing strategies side by side on three kinds of traffic, one run.

Run: ``.venv/bin/python bench/bench_routing.py`` (writes bench/results/routing.json and
prints a Markdown table for bench/README.md).

Traffic (Llama-3.1-8B on A100-80GB, chunked prefill, automatic prefix caching):

a. conv: the one-hour Azure conversation trace (Azure LLM inference trace 2023, CC BY 4.0,
   simulator/traces/README.md); no prefix identity.
b. long-context: seeded synthetic, Poisson arrivals at 3.5 req/s for 20 min, prompts
   lognormal with median 9k and p90 30k tokens (capped at 128k), outputs lognormal with
   median 200; no prefix identity. The shape of the long-context traces of issue 14.
c. multi-turn: seeded synthetic sessions (Poisson session starts, geometric number of turns,
   exponential think time); each turn's prompt is one of 16 shared system prompts, the
   conversation so far and a new message, with ``hash_ids`` per 512-token block, so turns
   of a session (and sessions of a system prompt) share leading blocks.

For each trace and strategy:

1. A fixed pool (``FIXED_REPLICAS``) serves the whole trace: TTFT p50/p95, throughput
   (completed requests per second of makespan), GPU busy share and the prefix-cache hit
   share of prompt tokens.
2. A back-test of the default predictive policy (no oracle): SLO attainment over feasible
   requests, GPU-hours, mean replicas.

Then a mixed pool (issue 17): 2 x A100-80GB + 2 x A40-48GB serving the first ten minutes of
the conv trace with its arrival times stretched or compressed (``MIXED_LOADS``: light,
moderate, and saturated, past what the pool can serve), and a control, four identical A100s
at the same share of their capacity. Per strategy (round-robin, least-outstanding,
shortest-expected-delay): TTFT p50/p95, end-to-end p50 and mean, throughput (completed
requests per second of makespan), GPU busy share (mean over replicas) and the share of
requests the A100s served, and USD per thousand requests (the pool held for the makespan at
the assumed prices of ``ASSUMED_PRICE_USD_PER_GPU_HOUR``). ``--mixed-only`` runs just this
part.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaling.backtest import Deployment, run_backtest, trace_requests  # noqa: E402
from scaling.backtest.deployment import ASSUMED_PRICE_USD_PER_GPU_HOUR  # noqa: E402
from scaling.engine import PolicyParams  # noqa: E402
from simulator.pool import ROUTING_STRATEGIES  # noqa: E402
from simulator.replica import BLOCK_TOKENS, Request  # noqa: E402

SEED = 14
DURATION_S = 1200.0
FIXED_REPLICAS = {"conv": 2, "long-context": 12, "multi-turn": 3}
POLICY = replace(
    PolicyParams("predictive", "vllm:num_requests_running", 32.0, 1, 64, slo_ttft_p95_s=2.0),
)


def lognormal(rng: random.Random, median: float, p90: float, cap: int) -> int:
    sigma = math.log(p90 / median) / 1.2816  # z of the 90th percentile
    return max(1, min(cap, round(rng.lognormvariate(math.log(median), sigma))))


def long_context(seed: int = SEED, rate: float = 3.5) -> list[Request]:
    rng = random.Random(seed)
    t, out = 0.0, []
    while (t := t + rng.expovariate(rate)) < DURATION_S:
        out.append(
            Request(t, lognormal(rng, 9_000, 30_000, 128_000), lognormal(rng, 200, 800, 4_000))
        )
    return out


def multi_turn(seed: int = SEED, sessions_per_s: float = 0.6) -> list[Request]:
    """Chat sessions whose turns resend the conversation so far behind a system prompt."""
    rng = random.Random(seed)
    systems = [rng.randint(2, 8) * BLOCK_TOKENS for _ in range(16)]
    out: list[Request] = []
    start, session = 0.0, 0
    while (start := start + rng.expovariate(sessions_per_s)) < DURATION_S:
        session += 1
        system = rng.randrange(len(systems))
        # Block ids: the system prompt's blocks are shared; the conversation's are the session's.
        shared = systems[system] // BLOCK_TOKENS
        blocks = [system * 1_000 + b for b in range(shared)]
        context, t = systems[system], start
        for _ in range(1 + min(20, int(rng.expovariate(1 / 4)))):
            context += lognormal(rng, 300, 1_500, 16_000)
            need = -(-context // BLOCK_TOKENS)
            blocks += [session * 1_000_000 + b for b in range(len(blocks), need)]
            output = lognormal(rng, 250, 700, 2_000)
            out.append(Request(t, context, output, tuple(blocks[:need])))
            context += output
            t += 5.0 + rng.expovariate(1 / 25)
            if t >= DURATION_S:
                break
    out.sort(key=lambda r: r.arrival_s)
    return out


def fixed_pool(requests: list[Request], replicas: int, routing: str) -> dict[str, Any]:
    pool = Deployment(routing=routing).new_pool(replicas)
    pool.submit_many(requests)
    pool.advance(requests[-1].arrival_s + 3_600.0)
    done = list(pool.completed)
    ttft = sorted(c.ttft_s for c in done)
    makespan = max(c.finish_s for c in done)
    busy = sum(r.busy_s for r in pool.replicas.values())
    hits = sum(r.prefix_cache_hits for r in pool.replicas.values())
    queries = sum(r.prefix_cache_queries for r in pool.replicas.values())
    return {
        "completed": len(done),
        "rejected": pool.rejected,
        "ttft_p50_s": round(ttft[len(ttft) // 2], 3),
        "ttft_p95_s": round(ttft[int(0.95 * len(ttft))], 3),
        "requests_per_s": round(len(done) / makespan, 3),
        "gpu_busy": round(busy / (replicas * makespan), 3),
        "prefix_hit_share": round(hits / queries, 3) if queries else 0.0,
    }


def backtest(requests: list[Request], routing: str) -> dict[str, Any]:
    result = run_backtest(POLICY, requests, routing=routing, oracle=False)
    return {
        "slo_attainment": result.slo_attainment,
        "infeasible_share": result.infeasible_share,
        "gpu_hours": round(result.gpu_hours, 2),
        "mean_replicas": round(result.mean_replicas, 1),
        "ttft_p95_s": result.ttft_p95_s,
    }


MIXED_SECONDS = 600.0  # of the conv trace, from its start
MIXED_POOLS = {"2 x A100 + 2 x A40": (2, 2), "4 x A100 (identical)": (4, 0)}
# (pool, load name, arrival-time compression). 0.3x: a third of the trace's rate; 3x the
# conv trace's rate (14.3 req/s) is past what the mixed pool serves (about 12.5 req/s with
# the best router); 4.5x puts four A100s (1.5x the mixed pool's measured capacity) at the
# same share of theirs.
MIXED_LOADS = [
    ("2 x A100 + 2 x A40", "light", 0.3),
    ("2 x A100 + 2 x A40", "moderate", 1.0),
    ("2 x A100 + 2 x A40", "saturated", 3.0),
    ("4 x A100 (identical)", "saturated", 4.5),
]
MIXED_ROUTINGS = ("round-robin", "least-outstanding", "shortest-expected-delay")
# The seed's table (issue 17): round robin -> device-load-aware routing.
SEED_TABLE = {"latency": 96 / 142, "throughput": 298 / 210, "gpu_use": 87 / 61}


def mixed_pool(requests: list[Request], a100: int, a40: int, routing: str) -> dict[str, Any]:
    pool = Deployment(routing=routing).new_pool(a100, others={"A40-48GB": a40} if a40 else None)
    fast = {r.name for r in pool.replicas.values() if r.perf.gpu.name == "A100-80GB"}
    pool.submit_many(requests)
    pool.advance(requests[-1].arrival_s + 3_600.0)
    done = list(pool.completed)
    ttft = sorted(c.ttft_s for c in done)
    e2e = sorted(c.e2e_s for c in done)
    makespan = max(c.finish_s for c in done)
    busy = sum(r.busy_s for r in pool.replicas.values())
    # The fixed pool held for the makespan, each GPU at its type's assumed price.
    per_hour = sum(ASSUMED_PRICE_USD_PER_GPU_HOUR[r.perf.gpu.name] for r in pool.replicas.values())
    return {
        "completed": len(done),
        "usd_per_1k_requests": round(per_hour * makespan / 3600 / len(done) * 1000, 3),
        "ttft_p50_s": round(ttft[len(ttft) // 2], 3),
        "ttft_p95_s": round(ttft[int(0.95 * len(ttft))], 3),
        "e2e_p50_s": round(e2e[len(e2e) // 2], 2),
        "e2e_mean_s": round(sum(e2e) / len(e2e), 2),
        "requests_per_s": round(len(done) / makespan, 2),
        "gpu_busy": round(busy / (len(pool.replicas) * makespan), 3),
        "a100_share": round(sum(c.replica in fast for c in done) / len(done), 3),
    }


def mixed_main() -> dict[str, Any]:
    """Round robin against load-aware routing on a mixed and an identical pool."""
    _, conv = trace_requests("conv", 0.0, MIXED_SECONDS)
    out: dict[str, Any] = {}
    print(
        "| pool | load | routing | TTFT p50 / p95 (s) | e2e p50 / mean (s) | req/s | GPU busy "
        "| A100 share | $/1k req |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for pool_name, load, speed in MIXED_LOADS:
        requests = [Request(r.arrival_s / speed, r.input_tokens, r.output_tokens) for r in conv]
        offered = round(len(requests) / requests[-1].arrival_s, 2)
        runs = {}
        for routing in MIXED_ROUTINGS:
            run = runs[routing] = mixed_pool(requests, *MIXED_POOLS[pool_name], routing)
            print(
                f"| {pool_name} | {load} ({offered} req/s offered) | {routing} "
                f"| {run['ttft_p50_s']} / {run['ttft_p95_s']} "
                f"| {run['e2e_p50_s']} / {run['e2e_mean_s']} | {run['requests_per_s']} "
                f"| {run['gpu_busy']:.0%} | {run['a100_share']:.0%} "
                f"| {run['usd_per_1k_requests']} |"
            )
        out[f"{pool_name}, {load}"] = {"offered_per_s": offered, **runs}
    print("\n| pool, load | routing vs round robin | e2e mean | TTFT p95 | req/s | GPU busy |")
    print("|---|---|---|---|---|---|")
    print(
        f"| seed (issue 17) | device-load-aware | {SEED_TABLE['latency']:.2f}x | - "
        f"| {SEED_TABLE['throughput']:.2f}x | {SEED_TABLE['gpu_use']:.2f}x |"
    )
    for key, runs in out.items():
        base = runs["round-robin"]
        for routing in MIXED_ROUTINGS[1:]:
            run = runs[routing]
            print(
                f"| {key} | {routing} | {run['e2e_mean_s'] / base['e2e_mean_s']:.2f}x "
                f"| {run['ttft_p95_s'] / base['ttft_p95_s']:.2f}x "
                f"| {run['requests_per_s'] / base['requests_per_s']:.2f}x "
                f"| {run['gpu_busy'] / base['gpu_busy']:.2f}x |"
            )
    return out


def main() -> None:
    mixed = mixed_main()
    if "--mixed-only" in sys.argv:
        out = ROOT / "bench" / "results" / "routing_mixed.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(mixed, indent=2) + "\n")
        return
    traces = {
        "conv": trace_requests("conv")[1],
        "long-context": long_context(),
        "multi-turn": multi_turn(),
    }
    results: dict[str, Any] = {}
    print(
        "| traffic | routing | TTFT p50 / p95 (s), fixed pool | req/s | GPU busy | prefix hits "
        "| predictive: SLO | GPU-h | mean replicas |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, requests in traces.items():
        results[name] = {"requests": len(requests), "fixed_replicas": FIXED_REPLICAS[name]}
        for routing in ROUTING_STRATEGIES:
            started = time.perf_counter()
            fixed = fixed_pool(requests, FIXED_REPLICAS[name], routing)
            scaled = backtest(requests, routing)
            results[name][routing] = {
                "fixed": fixed,
                "predictive": scaled,
                "wall_s": round(time.perf_counter() - started, 1),
            }
            attainment = scaled["slo_attainment"]
            print(
                f"| {name} ({len(requests)} req, {FIXED_REPLICAS[name]} replicas) | {routing} "
                f"| {fixed['ttft_p50_s']} / {fixed['ttft_p95_s']} | {fixed['requests_per_s']} "
                f"| {fixed['gpu_busy']:.0%} | {fixed['prefix_hit_share']:.0%} "
                f"| {attainment:.2%} | {scaled['gpu_hours']} | {scaled['mean_replicas']} |"
                if attainment is not None
                else f"| {name} | {routing} | no feasible requests |"
            )
    stats = {
        name: {
            "prompt_median": statistics.median(r.input_tokens for r in reqs),
            "prompt_p90": sorted(r.input_tokens for r in reqs)[int(0.9 * len(reqs))],
            "rate_per_s": round(len(reqs) / reqs[-1].arrival_s, 2),
        }
        for name, reqs in traces.items()
    }
    print(json.dumps(stats))
    out = ROOT / "bench" / "results" / "routing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"traces": stats, "results": results, "mixed": mixed}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
