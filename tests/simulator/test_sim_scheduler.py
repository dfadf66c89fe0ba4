"""The replica's chunked-prefill scheduler (vLLM V1), checked one engine iteration at a time.

``Replica.run_until(h)`` commits the iterations that start before ``h``, so a horizon just
past the replica's clock commits exactly one: the helpers below watch the counters move
per iteration and compare them with what the scheduler must do from first principles.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from performance import GPU_PROFILES, MODELS, ReplicaPerf, replica_perf
from simulator.replica import Completion, Replica, Request

A100 = GPU_PROFILES["A100-80GB"]
LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
PERF = replica_perf(A100, LLAMA_8B)  # token budget 2,048
BUDGET = PERF.token_budget


@dataclass(frozen=True)
class Iteration:
    start: float
    duration: float
    decodes: int  # sequences decoding when the iteration started
    prompt_tokens: int  # prompt tokens it prefilled
    generated: int  # tokens it emitted (decodes plus first tokens)


def make_replica(
    perf: ReplicaPerf = PERF, max_concurrency: int = 256
) -> tuple[Replica, list[Completion]]:
    done: list[Completion] = []
    return Replica("r", perf, max_concurrency, 0.0, 0.0), done


def one_iteration(replica: Replica, done: list[Completion]) -> Iteration:
    start, decodes = replica.clock, len(replica.decoding)
    prompt, generated = replica.prompt_tokens, replica.generation_tokens
    replica.run_until(start + 1e-9, done.append)
    return Iteration(
        start,
        replica.clock - start,
        decodes,
        replica.prompt_tokens - prompt,
        replica.generation_tokens - generated,
    )


def run_iterations(replica: Replica, done: list[Completion], until: float) -> list[Iteration]:
    """Every iteration up to ``until`` (idle time skipped)."""
    out = []
    while replica.clock < until and replica.outstanding:
        out.append(one_iteration(replica, done))
    return out


def test_a_long_prompt_no_longer_stalls_the_decoding_sequences() -> None:
    chunked, done = make_replica()
    unchunked, done_old = make_replica(replica_perf(A100, LLAMA_8B, chunked_prefill=False))
    for replica in (chunked, unchunked):
        for i in range(8):
            replica.enqueue(Request(0.0, 200, 400), i)
        replica.run_until(0.5, lambda c: None)  # 8 sequences decoding
        replica.enqueue(Request(0.5, 8000, 5), 99)
    bound = PERF.iteration_s(8, BUDGET - 8)
    iterations = run_iterations(chunked, done, 10.0)
    # Decodes get a token every iteration, and no iteration outlasts one full budget.
    assert all(it.generated >= it.decodes for it in iterations)
    assert max(it.duration for it in iterations) == pytest.approx(bound)
    assert bound < 0.25
    # Without chunked prefill the whole 8,000-token prefill runs alone: a 0.8 s stall.
    stalls = [it for it in run_iterations(unchunked, done_old, 10.0) if it.prompt_tokens]
    assert stalls[0].generated == 1 and stalls[0].prompt_tokens == 8000
    assert stalls[0].duration == pytest.approx(PERF.prefill_s(8000))
    assert stalls[0].duration > 3 * bound
    # The long prompt's neighbours keep a mean inter-token latency near a decode step.
    neighbours = [c for c in done if c.input_tokens == 200]
    old_neighbours = [c for c in done_old if c.input_tokens == 200]
    assert max(c.itl_s for c in neighbours) < max(c.itl_s for c in old_neighbours)


def test_every_iteration_stays_within_the_token_budget_decodes_first() -> None:
    perf = replica_perf(A100, LLAMA_8B, token_budget=512)
    replica, done = make_replica(perf)
    rng = random.Random(7)
    t = 0.0
    for i in range(60):
        t += rng.expovariate(20.0)
        replica.enqueue(Request(t, rng.randint(1, 3000), rng.randint(1, 60)), i)
    iterations = run_iterations(replica, done, 1e6)
    assert len(done) == 60
    for it in iterations:
        assert it.decodes + it.prompt_tokens <= 512
        assert it.generated >= it.decodes  # every decoding sequence got its token
        assert it.duration == pytest.approx(perf.iteration_s(it.decodes, it.prompt_tokens))
    # Prefill fills what the decodes leave whenever a prompt is pending.
    assert any(it.decodes and it.decodes + it.prompt_tokens == 512 for it in iterations)


def test_a_long_prompt_takes_several_iterations_to_its_first_token() -> None:
    replica, done = make_replica()
    replica.enqueue(Request(0.0, 5000, 3), 0)
    iterations = run_iterations(replica, done, 100.0)
    assert [it.prompt_tokens for it in iterations[:3]] == [2048, 2048, 904]
    assert [it.generated for it in iterations] == [0, 0, 1, 1, 1]
    (completion,) = done
    ttft = 2 * PERF.iteration_s(0, 2048) + PERF.iteration_s(0, 904)
    assert completion.ttft_s == pytest.approx(ttft)
    assert PERF.lone_prefill_s(5000) == pytest.approx(ttft)
    assert completion.ttft_s > PERF.prefill_s(5000)  # each chunk streams the weights too
    assert completion.finish_s == pytest.approx(ttft + 2 * PERF.step_s(1))


def test_partial_prefills_continue_before_new_prompts_are_admitted() -> None:
    replica, done = make_replica()
    replica.enqueue(Request(0.0, 3000, 2), 0)
    replica.enqueue(Request(0.0, 1000, 2), 1)
    first = one_iteration(replica, done)
    assert first.prompt_tokens == BUDGET and replica.num_running == 1  # A's first chunk
    assert len(replica.waiting) == 1
    second = one_iteration(replica, done)
    # A's last 952 tokens first, then B's whole prompt: both emit their first token.
    assert second.prompt_tokens == 952 + 1000
    assert second.generated == 2
    assert replica.waiting_prompt_tokens == 0


def test_kv_admission_and_concurrency_hold_with_chunked_prefill() -> None:
    replica, done = make_replica(max_concurrency=2)
    for i in range(3):
        replica.enqueue(Request(0.0, 100, 50), i)
    it = one_iteration(replica, done)
    assert it.prompt_tokens == 200 and replica.num_running == 2 and len(replica.waiting) == 1
    assert len(replica.running) == 2
    # KV: what is prefilled, then what is generated, counts as used.
    assert replica.kv_used_tokens == 200
    one_iteration(replica, done)
    assert replica.kv_used_tokens == 202
    run_iterations(replica, done, 100.0)
    assert len(done) == 3
    assert replica.kv_reserved == 0 and replica.kv_used_tokens == 0


def test_every_token_is_generated_exactly_once() -> None:
    replica, done = make_replica(max_concurrency=16)
    rng = random.Random(11)
    requests = []
    t = 0.0
    for _ in range(300):
        t += rng.expovariate(8.0)
        request = Request(t, rng.randint(1, 6000), rng.randint(1, 300))
        requests.append(request)
    for i, request in enumerate(requests):  # arrivals interleaved with the engine
        replica.run_until(request.arrival_s, done.append)
        replica.enqueue(request, i)
    replica.run_until(1e6, done.append)
    assert sorted((c.arrival_s, c.input_tokens, c.output_tokens) for c in done) == sorted(
        (r.arrival_s, r.input_tokens, r.output_tokens) for r in requests
    )
    assert replica.prompt_tokens == sum(r.input_tokens for r in requests)
    assert replica.generation_tokens == sum(r.output_tokens for r in requests)
    assert replica.successes == len(requests)
    assert replica.outstanding == 0 and replica.kv_reserved == 0
    assert replica.waiting_prompt_tokens == 0 and replica.kv_used_tokens == 0
    for c in done:
        assert c.arrival_s <= c.first_token_s <= c.finish_s
        # A first token needs at least the prompt's lone prefill; later tokens a step each.
        assert c.ttft_s >= PERF.lone_prefill_s(c.input_tokens) - 1e-9
        assert c.finish_s - c.first_token_s >= (c.output_tokens - 1) * PERF.step_s(1) - 1e-9
    # The ITL histogram saw one observation per token after the first.
    assert replica.itl.count == sum(r.output_tokens - 1 for r in requests)


def test_abandon_drops_partial_prefills_too() -> None:
    replica, done = make_replica()
    replica.enqueue(Request(0.0, 6000, 10), 0)
    replica.enqueue(Request(0.0, 10, 10), 1)
    one_iteration(replica, done)
    assert replica.prefilling
    assert replica.abandon() == 2
    assert replica.outstanding == 0 and replica.kv_used_tokens == 0
    assert replica.waiting_prompt_tokens == 0
