"""The simulated vLLM exports what vLLM V1 exports about prompts: the per-request prompt-length
histogram (``vllm:request_prompt_tokens``, 1-2-5 buckets up to max_model_len) and the
prefix-cache counters in tokens (``vllm:prefix_cache_queries_total`` / ``_hits_total``)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from simulator.cluster import Cluster
from simulator.config import load_config
from simulator.exposition import render
from simulator.histogram import one_two_five
from simulator.replica import BLOCK_TOKENS, ReplicaState, Request


def test_one_two_five_is_vllms_build_1_2_5_buckets() -> None:
    assert one_two_five(100) == (1, 2, 5, 10, 20, 50, 100)
    assert one_two_five(131_072)[-3:] == (20_000, 50_000, 100_000)


def test_prompt_lengths_and_prefix_cache_tokens_are_exported_per_replica() -> None:
    cluster = Cluster(load_config(None).cluster("east"))
    cluster.tick(120.0)  # past the cold starts
    dep = next(d for d in cluster.dep_info.values() if d.pool.count(ReplicaState.READY))
    pool = dep.pool
    # Two turns of a session: the second resends the first's 4 blocks and adds 2.
    first = Request(121.0, 4 * BLOCK_TOKENS, 2, (1, 2, 3, 4))
    again = Request(140.0, 6 * BLOCK_TOKENS, 2, (1, 2, 3, 4, 5, 6))
    replica = next(r for r in pool.replicas.values() if r.state is ReplicaState.READY)
    for seq_id, request in enumerate((first, again)):
        replica.run_until(request.arrival_s, lambda done: None)
        replica.enqueue(request, 10_000 + seq_id)
    replica.run_until(170.0, lambda done: None)

    families = {f.name: f for f in text_string_to_metric_families(render(cluster))}
    pod = replica.name
    queries = families["vllm:prefix_cache_queries"]
    hits = families["vllm:prefix_cache_hits"]
    assert queries.type == hits.type == "counter"
    by_pod = {s.labels["pod"]: s.value for s in hits.samples}
    assert by_pod[pod] == replica.prefix_cache_hits >= 4 * BLOCK_TOKENS
    assert {s.labels["pod"]: s.value for s in queries.samples}[pod] == (
        replica.prefix_cache_queries
    )

    lengths = families["vllm:request_prompt_tokens"]
    assert lengths.type == "histogram"
    buckets = [
        (s.labels["le"], s.value)
        for s in lengths.samples
        if s.name.endswith("_bucket") and s.labels["pod"] == pod
    ]
    assert [le for le, _ in buckets] == [
        *(repr(float(b)) for b in one_two_five(131_072)),
        "+Inf",
    ]
    cumulative = dict(buckets)
    # Whole prompts (their cached part included), counted when the request finishes.
    assert cumulative["2000.0"] - cumulative["1000.0"] >= 1  # the 2,048-token first turn
    assert cumulative["5000.0"] - cumulative["2000.0"] >= 1  # the 3,072-token second turn
    assert cumulative["+Inf"] == replica.successes
