"""Routing decisions through the pool: length-aware by default, prefix-aware on request."""

from __future__ import annotations

from performance import GPU_PROFILES, MODELS
from scaling.backtest.deployment import Deployment
from simulator.config import WorkloadConfig
from simulator.pool import DEFAULT_ROUTING, ServingPool
from simulator.replica import Completion, Request

A100 = GPU_PROFILES["A100-80GB"]
LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
PREFIX = tuple(range(1, 9))  # 8 blocks: 4,096 tokens


def replay(routing: str, requests: list[Request]) -> dict[float, Completion]:
    pool = ServingPool(A100, LLAMA_8B, replicas=2, warm=True, routing=routing)
    pool.submit_many(requests)
    pool.advance(600.0)
    return {c.arrival_s: c for c in pool.completed}


def test_the_default_everywhere_is_length_aware() -> None:
    assert DEFAULT_ROUTING == "shortest-expected-delay"
    assert ServingPool(A100, LLAMA_8B).routing == DEFAULT_ROUTING
    assert Deployment().new_pool(1).routing == DEFAULT_ROUTING
    assert WorkloadConfig("ns", "chat", LLAMA_8B.name, "A100-80GB").routing == DEFAULT_ROUTING


def test_expected_delay_counts_queued_prompt_tokens_not_requests() -> None:
    # replica-0 gets one 30k-token prompt (seconds of prefill); replica-1 three short
    # requests that keep decoding. A short probe then belongs on replica-1, though it has
    # more requests in flight.
    requests = [Request(0.0, 30_000, 50)]
    requests += [Request(0.001 * n, 100, 400) for n in (1, 2, 3)]
    probe = Request(0.01, 100, 10)
    sed = replay("shortest-expected-delay", [*requests, probe])
    outstanding = replay("least-outstanding", [*requests, probe])
    assert {sed[r.arrival_s].replica for r in requests[1:]} == {"replica-1"}
    assert sed[probe.arrival_s].replica == "replica-1"
    assert outstanding[probe.arrival_s].replica == "replica-0"  # 1 request in flight < 3
    assert sed[probe.arrival_s].ttft_s < outstanding[probe.arrival_s].ttft_s / 10


def shared_prefix_after_other_work(other: Request) -> tuple[list[Request], Request]:
    """replica-0 serves a prompt with PREFIX, then gets ``other``; a request with the same
    leading blocks and a new tail follows."""
    first = Request(0.0, 4096, 4, PREFIX)
    follow_up = Request(5.001, 4096 + 600, 4, (*PREFIX, 99, 100))
    return [first, other], follow_up


def test_prefix_aware_prefers_the_replica_holding_the_prefix() -> None:
    # A long decode on replica-0 makes plain SED (which cannot see caches) pick replica-1.
    requests, follow_up = shared_prefix_after_other_work(Request(5.0, 100, 5000))
    aware = replay("prefix-aware", [*requests, follow_up])
    blind = replay("shortest-expected-delay", [*requests, follow_up])
    assert aware[5.0].replica == blind[5.0].replica == "replica-0"
    assert aware[follow_up.arrival_s].replica == "replica-0"
    assert blind[follow_up.arrival_s].replica == "replica-1"
    assert aware[follow_up.arrival_s].ttft_s < blind[follow_up.arrival_s].ttft_s / 2


def test_prefix_aware_leaves_the_holder_when_its_queue_is_far_longer() -> None:
    # 60k prompt tokens queued on the holder: seconds of prefill, far past the bound.
    requests, follow_up = shared_prefix_after_other_work(Request(5.0, 60_000, 5))
    aware = replay("prefix-aware", [*requests, follow_up])
    assert aware[5.0].replica == "replica-0"
    assert aware[follow_up.arrival_s].replica == "replica-1"


def test_without_prefix_identity_prefix_aware_is_shortest_expected_delay() -> None:
    requests = [Request(0.01 * n, 500 + 7_000 * (n % 3), 30 + n) for n in range(60)]
    placed = {t: c.replica for t, c in replay("prefix-aware", requests).items()}
    assert placed == {t: c.replica for t, c in replay(DEFAULT_ROUTING, requests).items()}
    assert len(set(placed.values())) == 2
