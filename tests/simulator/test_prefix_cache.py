"""vLLM automatic prefix caching in the replica model, and traces that carry prefix identity."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from performance import GPU_PROFILES, MODELS, replica_perf
from scaling.backtest.deployment import trace_requests
from simulator.pool import ServingPool
from simulator.replica import BLOCK_TOKENS, Completion, Replica, ReplicaState, Request
from simulator.traces import TraceError, load_trace

A100 = GPU_PROFILES["A100-80GB"]
LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
PERF = replica_perf(A100, LLAMA_8B, 1)


def ttft_after(first: Request, second: Request, chunked: bool = True) -> float:
    """TTFT of ``second`` on one idle replica that served ``first`` alone before it."""
    pool = ServingPool(
        A100, LLAMA_8B, replicas=1, warm=True, routing="round-robin", chunked_prefill=chunked
    )
    pool.submit_many([first, second])
    pool.advance(200.0)
    done = {c.arrival_s: c for c in pool.completed}
    return done[second.arrival_s].ttft_s


@pytest.mark.parametrize("chunked", [True, False])
def test_cached_leading_blocks_skip_exactly_their_prefill(chunked: bool) -> None:
    perf = replica_perf(A100, LLAMA_8B, 1, chunked_prefill=chunked)
    first = Request(0.0, 4 * BLOCK_TOKENS, 4, (1, 2, 3, 4))
    shared = Request(100.0, 4 * BLOCK_TOKENS, 4, (1, 2, 7, 8))  # 2 leading blocks hit
    unrelated = Request(100.0, 4 * BLOCK_TOKENS, 4, (5, 6, 7, 8))
    assert ttft_after(first, shared, chunked) == pytest.approx(
        perf.lone_prefill_s(2 * BLOCK_TOKENS), rel=1e-9
    )
    assert ttft_after(first, unrelated, chunked) == pytest.approx(
        perf.lone_prefill_s(4 * BLOCK_TOKENS), rel=1e-9
    )


def test_only_leading_blocks_hit_and_a_whole_cached_prompt_computes_its_last_token() -> None:
    replica = Replica("r", PERF, 256, 0.0, 0.0)
    replica.prefix_cache.update({2: None, 3: None})
    assert replica.cached_prefix_tokens(Request(0.0, 1536, 1, (1, 2, 3))) == 0
    replica.prefix_cache[1] = None
    assert replica.cached_prefix_tokens(Request(0.0, 1536, 1, (1, 2, 3))) == 1535
    # The last, partial block is never cached (vLLM caches full blocks only).
    assert replica.cached_prefix_tokens(Request(0.0, 1100, 1, (1, 2, 3))) == 1024


def serve(replica: Replica, requests: list[Request]) -> list[Completion]:
    done: list[Completion] = []
    for n, request in enumerate(requests):
        replica.run_until(request.arrival_s, done.append)
        replica.enqueue(request, n)
    replica.run_until(requests[-1].arrival_s + 60.0, done.append)
    return done


def test_the_cache_evicts_the_least_recently_used_block_at_kv_capacity() -> None:
    small = dataclasses.replace(PERF, kv_capacity_tokens=3 * BLOCK_TOKENS + 100)
    replica = Replica("r", small, 256, 0.0, 0.0)
    replica.state = ReplicaState.READY
    assert replica.prefix_cache_blocks == 3
    serve(replica, [Request(0.0, 1024, 1, (1, 2)), Request(10.0, 1024, 1, (3, 4))])
    assert list(replica.prefix_cache) == [2, 3, 4]  # block 1 was the least recently used
    # Block 2 is reused (it leads this prompt), so 3, not 2, is the next to go.
    serve(replica, [Request(100.0, 1100, 1, (2, 5, 6))])
    assert list(replica.prefix_cache) == [4, 2, 5]
    assert (replica.prefix_cache_hits, replica.prefix_cache_queries) == (512, 1024 + 1024 + 1100)


def write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_json_lines_hash_ids_load_compactly_and_reach_the_requests(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mooncake.jsonl",
        [
            {"timestamp": 500, "input_length": 1500, "output_length": 9, "hash_ids": [7, 8, 9]},
            {"timestamp": 0, "input_length": 600, "output_length": 3, "hash_ids": [7, 8]},
            {"timestamp": 900, "input_length": 10, "output_length": 3},
        ],
    )
    trace = load_trace(path)
    assert list(trace.hash_flat) == [7, 8, 7, 8, 9]  # sorted by arrival, one flat array
    assert [trace.hash_ids(i) for i in range(3)] == [(7, 8), (7, 8, 9), ()]
    _, requests = trace_requests(trace)
    assert [r.hash_ids for r in requests] == [(7, 8), (7, 8, 9), ()]


@pytest.mark.parametrize(
    ("hash_ids", "message"),
    [
        ("7,8", "list of 64-bit integers"),
        ([1, "2"], "list of 64-bit integers"),
        ([1, True], "list of 64-bit integers"),
        ([1, 2**64], "list of 64-bit integers"),
        ([1, 2, 3], "3 blocks, more than the 2"),
    ],
)
def test_bad_hash_ids_are_a_trace_error_naming_the_line(
    tmp_path: Path, hash_ids: object, message: str
) -> None:
    path = write(
        tmp_path / "bad.jsonl",
        [
            {"timestamp": 0, "input_length": 600, "output_length": 3},
            {"timestamp": 10, "input_length": 600, "output_length": 3, "hash_ids": hash_ids},
        ],
    )
    with pytest.raises(TraceError, match=rf"line 2: .*{message}"):
        load_trace(path)
