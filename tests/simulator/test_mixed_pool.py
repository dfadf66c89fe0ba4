"""A pool whose replicas run on different GPU types, and routing across it."""

from __future__ import annotations

import random

import pytest

from scaling.backtest.deployment import Deployment
from simulator.pool import ServingPool
from simulator.replica import Completion, Request

A100, A40 = "A100-80GB", "A40-48GB"


def mixed(routing: str, a100: int = 1, a40: int = 1) -> ServingPool:
    return Deployment(gpu_type=A100, routing=routing, max_concurrency=64).new_pool(
        a100, others={A40: a40}
    )


def poisson(rate: float, duration_s: float = 300.0, seed: int = 1) -> list[Request]:
    """Chat-like load: prompts lognormal around 1.1k tokens, answers around 150."""
    rng = random.Random(seed)
    t, out = 0.0, []
    while (t := t + rng.expovariate(rate)) < duration_s:
        prompt = max(1, int(rng.lognormvariate(7, 1)))
        out.append(Request(t, prompt, max(1, int(rng.lognormvariate(5, 0.8)))))
    return out


def serve(pool: ServingPool, requests: list[Request]) -> list[Completion]:
    pool.submit_many(requests)
    pool.advance(requests[-1].arrival_s + 3_600.0)
    return list(pool.completed)


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * len(values))]


def test_each_replica_serves_at_its_own_gpu_types_speed() -> None:
    pool = mixed("round-robin")
    types = {r.name: r.perf.gpu.name for r in pool.replicas.values()}
    assert sorted(types.values()) == [A100, A40]
    # Round robin alternates, so one lone request lands on each replica.
    done = serve(pool, [Request(0.0, 2_000, 101), Request(100.0, 2_000, 101)])
    assert {types[c.replica] for c in done} == {A100, A40}
    for completion in done:
        perf = pool.replicas[completion.replica].perf
        # Chunked prefill of a 2,000-token prompt in one iteration, then 100 lone decode steps.
        expected = perf.iteration_s(0, 2_000) + 100 * perf.step_s(1)
        assert completion.e2e_s == pytest.approx(expected, rel=0.02)
    by_type = {types[c.replica]: c.e2e_s for c in done}
    assert by_type[A40] > 2 * by_type[A100]  # a third of the A100's memory bandwidth


def test_scaling_one_type_leaves_the_other_alone_and_gpu_time_is_per_type() -> None:
    pool = mixed("round-robin", a100=2, a40=1)
    pool.set_replicas(3, now=0.0, gpu_type=A40)
    assert pool.replicas_by_type() == {A100: 2, A40: 3}
    pool.set_replicas(1, now=10.0, gpu_type=A100)  # drains one A100, no A40
    pool.advance(100.0)
    assert pool.replicas_by_type() == {A100: 1, A40: 3}
    assert pool.gpu_seconds_by_type() == pytest.approx({A100: 10.0 + 100.0, A40: 300.0})
    assert pool.gpu_seconds == pytest.approx(410.0)


def test_an_unknown_gpu_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown GPU type"):
        mixed("round-robin").set_replicas(1, now=0.0, gpu_type="B200")


def test_capacity_aware_routing_favours_the_fast_replica_and_beats_round_robin() -> None:
    # About 5 requests/s saturates one A100 + one A40 on this load (bench/README.md).
    requests = poisson(5.0)
    results = {}
    for routing in ("round-robin", "shortest-expected-delay"):
        pool = mixed(routing)
        types = {r.name: r.perf.gpu.name for r in pool.replicas.values()}
        done = serve(pool, requests)
        share = sum(types[c.replica] == A100 for c in done) / len(done)
        results[routing] = (share, p95([c.ttft_s for c in done]))
    assert results["round-robin"][0] == pytest.approx(0.5, abs=0.01)
    assert results["shortest-expected-delay"][0] > 0.65
    assert results["shortest-expected-delay"][1] < results["round-robin"][1] / 5


def test_expected_delay_prices_each_replica_at_its_own_speed() -> None:
    # The A40 is the pool's first replica: with one speed for all (or counting requests) the
    # tie between two idle replicas goes to it; priced per replica, the A100 wins.
    def first_choice(routing: str) -> str:
        pool = Deployment(gpu_type=A40, routing=routing).new_pool(1, others={A100: 1})
        types = {r.name: r.perf.gpu.name for r in pool.replicas.values()}
        [done] = serve(pool, [Request(0.0, 1_000, 100)])
        return types[done.replica]

    assert first_choice("least-outstanding") == A40
    assert first_choice("shortest-expected-delay") == A100
