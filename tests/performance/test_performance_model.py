"""The performance model against numbers worked out by hand from the datasheet formulas."""

from __future__ import annotations

import math

import pytest

from performance import GPU_PROFILES, MODELS, ModelDoesNotFit, replica_perf
from simulator.pool import ServingPool
from simulator.replica import Request

A100 = GPU_PROFILES["A100-80GB"]
LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]

# Hand derivation for Llama-3.1-8B (8.03 B params, 32 layers, 8 KV heads x 128) on one
# A100-SXM4-80GB (2,039 GB/s, 312 dense TFLOPS), with 70 % bandwidth and 50 % compute
# efficiency and 2 ms per iteration overhead:
BANDWIDTH = 2039e9 * 0.7
FLOPS = 312e12 * 0.5
WEIGHTS = 8.03e9 * 2
KV_PER_TOKEN = 2 * 32 * 8 * 128 * 2  # 131,072 bytes
T0 = 0.002 + WEIGHTS / BANDWIDTH
K = 2 * 8.03e9 / FLOPS + KV_PER_TOKEN * 1024 / BANDWIDTH
PER_PROMPT_TOKEN = 2 * 8.03e9 / FLOPS


def prefill(tokens: int) -> float:
    return 0.002 + tokens * PER_PROMPT_TOKEN


def step(batch: int) -> float:
    return T0 + K * batch


def iteration(decodes: int, prompt_tokens: int) -> float:
    """One chunked-prefill pass: weights streamed once (hidden by a big enough chunk)."""
    return 0.002 + max(WEIGHTS / BANDWIDTH, prompt_tokens * PER_PROMPT_TOKEN) + K * decodes


def one_replica(max_concurrency: int = 256, chunked: bool = True) -> ServingPool:
    return ServingPool(
        A100,
        LLAMA_8B,
        max_concurrency=max_concurrency,
        replicas=1,
        warm=True,
        chunked_prefill=chunked,
    )


def test_derived_profile_matches_the_datasheet_formulas() -> None:
    perf = replica_perf(A100, LLAMA_8B)
    assert perf.step_s(1) == pytest.approx(step(1))
    assert perf.step_s(64) == pytest.approx(step(64))
    assert perf.prefill_s(1000) == pytest.approx(prefill(1000))
    assert perf.iteration_s(5, 0) == pytest.approx(step(5))
    assert perf.iteration_s(5, 1000) == pytest.approx(iteration(5, 1000))
    assert perf.iteration_s(0, 10) == pytest.approx(step(0))  # a weight stream at least
    assert perf.token_budget == 2048  # vllm serve's default on an A100
    assert perf.chunked_prefill
    kv_tokens = math.floor((0.9 * 81920 * 2**20 - WEIGHTS) / KV_PER_TOKEN)
    assert perf.kv_capacity_tokens == kv_tokens
    # Sanity against published serving numbers: ~13 ms per token at batch 1, ~0.1 s prefill.
    assert 0.010 < perf.step_s(1) < 0.020
    assert 0.05 < perf.prefill_s(1000) < 0.2


@pytest.mark.parametrize("chunked", [True, False])
def test_single_request_latency_is_prefill_then_one_step_per_token(chunked: bool) -> None:
    pool = one_replica(chunked=chunked)
    pool.submit(Request(0.0, 1000, 10))
    pool.advance(10.0)
    (done,) = pool.completed
    assert done.ttft_s == pytest.approx(prefill(1000))
    assert done.e2e_s == pytest.approx(prefill(1000) + 9 * step(1))
    assert done.itl_s == pytest.approx(step(1))


@pytest.mark.parametrize("chunked", [True, False])
def test_simultaneous_requests_share_one_prefill_and_the_decode_batch(chunked: bool) -> None:
    pool = one_replica(chunked=chunked)  # 1,500 prompt tokens: within either budget
    pool.submit_many([Request(0.0, 1000, 3), Request(0.0, 500, 5)])
    pool.advance(10.0)
    first, second = sorted(pool.completed, key=lambda c: c.finish_s)
    ttft = prefill(1500)
    assert first.ttft_s == pytest.approx(ttft)
    assert second.ttft_s == pytest.approx(ttft)
    assert first.e2e_s == pytest.approx(ttft + 2 * step(2))
    assert second.e2e_s == pytest.approx(ttft + 2 * step(2) + 2 * step(1))


@pytest.mark.parametrize("chunked", [True, False])
def test_a_full_batch_makes_the_next_request_queue(chunked: bool) -> None:
    pool = one_replica(max_concurrency=1, chunked=chunked)
    pool.submit_many([Request(0.0, 200, 4), Request(0.01, 300, 2)])
    pool.advance(10.0)
    first, second = sorted(pool.completed, key=lambda c: c.arrival_s)
    first_end = prefill(200) + 3 * step(1)
    assert first.e2e_s == pytest.approx(first_end)
    assert second.first_token_s == pytest.approx(first_end + prefill(300))
    assert second.finish_s == pytest.approx(first_end + prefill(300) + step(1))


def test_without_chunked_prefill_an_arrival_stalls_the_decodes_for_its_prefill() -> None:
    pool = one_replica(chunked=False)
    pool.submit_many([Request(0.0, 100, 100), Request(0.5, 400, 2)])
    pool.advance(30.0)
    a, b = sorted(pool.completed, key=lambda c: c.arrival_s)
    steps_before = math.ceil((0.5 - prefill(100)) / step(1))
    boundary = prefill(100) + steps_before * step(1)
    assert b.first_token_s == pytest.approx(boundary + prefill(400))
    assert b.finish_s == pytest.approx(boundary + prefill(400) + step(2))
    # A's 99 decode steps: those before B's prefill at batch 1, one at batch 2, rest at 1.
    rest = 99 - steps_before - 1
    expected_a = boundary + prefill(400) + step(2) + rest * step(1)
    assert a.finish_s == pytest.approx(expected_a)


def test_with_chunked_prefill_an_arrival_is_prefilled_beside_the_decodes() -> None:
    pool = one_replica()
    pool.submit_many([Request(0.0, 100, 100), Request(0.5, 400, 2)])
    pool.advance(30.0)
    a, b = sorted(pool.completed, key=lambda c: c.arrival_s)
    assert a.ttft_s == pytest.approx(iteration(0, 100))
    steps_before = math.ceil((0.5 - iteration(0, 100)) / step(1))
    boundary = iteration(0, 100) + steps_before * step(1)
    # One pass makes A's next token and B's whole 400-token prompt (399 + 1 <= 2,048).
    assert b.first_token_s == pytest.approx(boundary + iteration(1, 400))
    assert b.finish_s == pytest.approx(b.first_token_s + step(2))
    # A's 99 tokens: steps_before at batch 1, one beside B's prompt, one at batch 2, rest.
    rest = 99 - steps_before - 2
    assert rest > 0
    expected_a = boundary + iteration(1, 400) + step(2) + rest * step(1)
    assert a.finish_s == pytest.approx(expected_a)


def test_the_token_budget_follows_vllm_serve_defaults() -> None:
    assert replica_perf(GPU_PROFILES["H100-80GB"], LLAMA_8B).token_budget == 8192
    assert replica_perf(A100, LLAMA_8B).token_budget == 2048  # A100s are kept at 2,048
    assert replica_perf(GPU_PROFILES["L4-24GB"], LLAMA_8B).token_budget == 2048
    assert replica_perf(A100, LLAMA_8B, token_budget=512).token_budget == 512
    with pytest.raises(ValueError, match="token_budget"):
        replica_perf(A100, LLAMA_8B, token_budget=0)


def test_a_model_too_large_for_the_card_is_refused() -> None:
    with pytest.raises(ModelDoesNotFit):
        replica_perf(GPU_PROFILES["L4-24GB"], MODELS["meta-llama/Llama-3.1-70B-Instruct"], 1)
