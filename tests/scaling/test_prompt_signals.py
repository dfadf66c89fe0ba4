"""Prompt-length and prefix-cache signals: requests too long for the TTFT objective counted
from vLLM's prompt-length buckets (never scaled for), and offered prompt work that leaves
out the tokens a prefix cache served."""

from __future__ import annotations

import pytest

from clusters.metrics import Sample
from performance import GPU_PROFILES, MODELS, replica_perf
from scaling.backtest.result import infeasible_sentence
from scaling.backtest.signals import Gateway
from scaling.backtest.slo import Slo, prompt_limit
from scaling.capacity import capacity_of
from scaling.engine import PolicyParams
from scaling.observe import Overlong, requests_over, uncached_prompt
from simulator.histogram import PROMPT_TOKENS_BUCKETS
from simulator.pool import ServingPool
from simulator.replica import BLOCK_TOKENS, Request

A100 = GPU_PROFILES["A100-80GB"]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
PERF = replica_perf(A100, MODELS[LLAMA], 1)


def cumulative(prompts: list[int]) -> dict[str, float]:
    """vLLM's cumulative buckets (``le`` as the exporters write it) after ``prompts``."""
    bounds = [*PROMPT_TOKENS_BUCKETS, float("inf")]
    out = {repr(b) if b != float("inf") else "+Inf": 0.0 for b in bounds}
    for n in prompts:
        for b in bounds:
            if n <= b:
                out[repr(b) if b != float("inf") else "+Inf"] += 1
    return out


def test_the_live_limit_is_the_back_tests_feasibility_rule_at_its_edge() -> None:
    slo = Slo(ttft_s=2.0)
    limit = prompt_limit(A100, LLAMA, 1, 2.0)
    assert limit == slo.longest_prompt(PERF)
    assert limit is not None and 5_000 < limit < 50_000
    assert slo.feasible(PERF, limit, 1) and not slo.feasible(PERF, limit + 1, 1)
    assert prompt_limit(None, LLAMA, 1, 2.0) is None  # a GPU type with no profile


def test_requests_over_a_bucket_bound_are_counted_exactly() -> None:
    before = cumulative([100, 30_000])
    now = cumulative([100, 30_000, 300, 1_500, 15_000, 60_000, 60_000, 200_000])
    assert requests_over(50_000.0, before, now) == Overlong(3, 6, False)


def test_a_bucket_straddling_the_limit_makes_the_count_a_floor() -> None:
    before = cumulative([])
    now = cumulative([1_000, 19_000, 19_500, 25_000, 60_000])
    # 19,232 lies in (10,000, 20,000]: 19,500 is over it but counted with the feasible.
    assert requests_over(19_232.0, before, now) == Overlong(2, 5, True)
    # The same bucket with nothing new in it: exact.
    assert requests_over(19_232.0, before, cumulative([1_000, 25_000])) == Overlong(1, 2, False)


def test_no_earlier_reading_or_a_restart_is_unknown_not_zero() -> None:
    now = cumulative([60_000])
    assert requests_over(19_232.0, {}, now) is None
    assert requests_over(19_232.0, cumulative([1, 2, 60_000, 60_000]), now) is None
    assert requests_over(19_232.0, now, now) == Overlong(0, 0, False)


def test_the_live_sentence_is_the_back_tests() -> None:
    assert (
        infeasible_sentence(412, 0.1834, 2.0, "A100-80GB", 1)
        == "412 requests (18 %) were too long to meet a 2 s TTFT on A100-80GB"
    )
    assert infeasible_sentence(1, 0.05, 2.0, "H100-80GB", 4, at_least=True) == (
        "at least 1 request (5.0 %) was too long to meet a 2 s TTFT on H100-80GB x4"
    )


def sample(value: float, at: float = 10.0) -> Sample:
    return Sample("x", (("namespace", "n"), ("pod", "p")), value, at)


def test_uncached_prompt_subtracts_hits_and_counts_a_pod_without_them_whole() -> None:
    out = uncached_prompt(
        {"a": sample(10_000.0, 10.0), "b": sample(4_000.0)}, {"a": sample(7_000.0, 9.0)}
    )
    assert (out["a"].value, out["a"].timestamp) == (3_000.0, 9.0)
    assert out["b"].value == 4_000.0


def test_the_back_tests_gateway_offers_only_the_prompt_tokens_that_need_prefill() -> None:
    """Two turns of a session on one replica: the second's resent turn is served from the
    prefix cache, and the gateway's offered prompt work leaves it out."""
    policy = PolicyParams("predictive", "vllm:num_requests_running", None, 1, 4)
    pool = ServingPool(A100, MODELS[LLAMA], replicas=1, warm=True)
    gateway = Gateway(policy, 5.0)
    capacity = capacity_of(PERF, 0.1, 256)
    turns = [
        Request(1.0, 8 * BLOCK_TOKENS, 4, tuple(range(8))),
        Request(6.0, 10 * BLOCK_TOKENS, 4, tuple(range(10))),
    ]
    offered = []
    for k, turn in enumerate(turns):
        now = 5.0 * (k + 1)
        pool.submit(turn)
        pool.advance(now)
        hits = {r.name: r.prefix_cache_hits for r in pool.replicas.values()}
        tick = gateway.tick(pool.snapshot(now), 1, [turn], [], capacity, hits)
        offered.append(tick.prompt_tokens_per_s)
    assert offered[0] == pytest.approx(8 * BLOCK_TOKENS / 5.0)
    assert offered[1] == pytest.approx(2 * BLOCK_TOKENS / 5.0)  # 8 blocks came from the cache


@pytest.mark.django_db
def test_the_status_counts_the_last_ten_minutes_tick_by_tick(gpu_type) -> None:
    """The count holds still: each tick's requests over the limit are kept and summed over
    INFEASIBLE_WINDOW_S, a pod going away (its counters gone) loses none of what was
    counted, older ticks drop out, and a new objective starts afresh."""
    from scaling import loop, observe
    from scaling.models import ScalingPolicy, Workload

    workload = Workload(namespace="team-a", model_name=LLAMA, gpu_type=gpu_type)
    policy = ScalingPolicy(slo_ttft_p95_s=2.0)
    counters: dict = {}

    def tick(now: float, pods: dict[str, list[int]], ttft: float = 2.0):
        policy.slo_ttft_p95_s = ttft
        index = {
            ("team-a", pod): [
                Sample(observe.PROMPT_LENGTH_BUCKETS, (("le", le),), count, now)
                for le, count in cumulative(prompts).items()
            ]
            for pod, prompts in pods.items()
        }
        observed = loop.Observed(now, {}, {}, {observe.PROMPT_LENGTH_BUCKETS: index})
        found, counters["prompt_len"] = loop._infeasible(
            workload, policy, observed, set(pods), counters
        )
        return found

    assert tick(0.0, {"a": [], "b": []}) is None  # a first reading: nothing to compare
    assert tick(5.0, {"a": [30_000], "b": [100, 60_000]}).requests == 2
    # Pod b goes away (scaled down): its counters vanish, the sum goes down, this tick is
    # unknown, and what was counted stays.
    held = tick(10.0, {"a": [30_000, 40_000]})
    assert (held.requests, held.total, held.window) == (2, 3, "10 s")
    later = tick(15.0, {"a": [30_000, 40_000, 50_000, 100]})
    assert (later.requests, later.total) == (3, 5)
    assert later.text.startswith("3 requests (60 %) were too long to meet a 2 s TTFT")
    # Ten minutes on, the ticks before are out of the window.
    gone = tick(15.0 + loop.INFEASIBLE_WINDOW_S, {"a": [30_000, 40_000, 50_000, 100, 100]})
    assert (gone.requests, gone.total) == (0, 1)
    # A looser objective admits longer prompts: counted afresh against its limit.
    looser = tick(
        20.0 + loop.INFEASIBLE_WINDOW_S, {"a": [30_000, 40_000, 50_000, 100, 100, 25_000]}, 4.0
    )
    assert (looser.requests, looser.total) == (0, 1)
