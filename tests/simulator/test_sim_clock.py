"""The virtual clock: determinism, cold start, drain, GPU-seconds, loads and traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from performance import GPU_PROFILES, MODELS
from simulator.config import ConfigError, LoadConfig, load_config
from simulator.load import SyntheticLoad, TraceLoad, make_load
from simulator.pool import ServingPool
from simulator.replica import Request
from simulator.traces import TraceError, load_trace

A100 = GPU_PROFILES["A100-80GB"]
LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]


def replay(routing: str) -> list[tuple[float, float, str]]:
    pool = ServingPool(A100, LLAMA_8B, replicas=2, warm=True, routing=routing)
    pool.submit_many(make_load(LoadConfig(kind="trace", trace="conv")).arrivals(0, 300))
    pool.advance(300)
    return [(c.first_token_s, c.finish_s, c.replica) for c in pool.completed]


@pytest.mark.parametrize("routing", ["round-robin", "least-outstanding", "shortest-expected-delay"])
def test_replaying_the_same_load_twice_gives_identical_results(routing: str) -> None:
    first = replay(routing)
    assert len(first) > 1000
    assert first == replay(routing)


def test_cold_start_delays_readiness_and_still_burns_gpu_time() -> None:
    pool = ServingPool(A100, LLAMA_8B, cold_start_s=60.0, replicas=1, now=0.0)
    pool.submit(Request(10.0, 100, 2))
    pool.advance(59.0)
    snap = pool.snapshot(59.0)
    assert (snap.ready, snap.warming, snap.waiting) == (0, 1, 1)
    assert pool.completed == []
    pool.advance(70.0)
    (done,) = pool.completed
    assert done.first_token_s > 60.0  # served only once warm
    assert done.ttft_s > 50.0
    assert pool.gpu_seconds == pytest.approx(70.0)


def test_scale_down_drains_in_flight_requests_before_the_replica_leaves() -> None:
    pool = ServingPool(A100, LLAMA_8B, replicas=1, warm=True, routing="round-robin")
    pool.submit(Request(0.0, 100, 500))  # about 7 s of decoding
    pool.advance(1.0)
    pool.set_replicas(0, now=1.0)
    assert pool.snapshot(1.0).draining == 1
    pool.advance(30.0)
    (done,) = pool.completed
    assert done.output_tokens == 500 and done.finish_s > 5.0
    assert pool.replicas == {}
    # GPU time stops when the drain ends, not at the scale-down call or at 30 s.
    assert pool.gpu_seconds == pytest.approx(done.finish_s)


def test_scale_up_adds_warming_replicas_that_join_after_the_cold_start() -> None:
    pool = ServingPool(A100, LLAMA_8B, cold_start_s=30.0, replicas=1, warm=True)
    pool.set_replicas(3, now=10.0)
    assert (pool.snapshot(10.0).ready, pool.snapshot(10.0).warming) == (1, 2)
    pool.advance(40.0)
    assert pool.snapshot(40.0).ready == 3


def test_gpu_seconds_count_every_gpu_of_a_multi_gpu_replica() -> None:
    pool = ServingPool(
        GPU_PROFILES["H100-80GB"],
        MODELS["meta-llama/Llama-3.1-70B-Instruct"],
        gpus_per_replica=4,
        replicas=2,
        warm=True,
    )
    pool.advance(100.0)
    assert pool.gpu_seconds == pytest.approx(800.0)


def test_the_azure_traces_parse_with_their_documented_shape() -> None:
    conv = load_trace("conv")
    assert len(conv) == 19_366
    assert 3400 < conv.duration_s < 3600  # 58 minutes
    assert sum(conv.inputs) / len(conv) == pytest.approx(1155, rel=0.01)
    assert load_trace("conv") is conv  # parsed once, cached


def test_json_lines_traces_use_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [
        {"timestamp": 1500, "input_length": 10, "output_length": 5},
        {"timestamp": 500, "input_length": 20, "output_length": 7},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    trace = load_trace(path)
    assert list(trace.times) == [0.0, 1.0]
    assert list(trace.inputs) == [20, 10]
    path.write_text('{"timestamp": "x"}\n')
    with pytest.raises(TraceError):
        load_trace(path)


def test_rate_scale_keeps_a_deterministic_share_and_speed_compresses_time() -> None:
    trace = load_trace("conv")
    half = TraceLoad(trace, rate_scale=0.5)
    assert len(half.times) == pytest.approx(len(trace) / 2, rel=0.03)
    assert TraceLoad(trace, rate_scale=0.5).times == half.times
    double = TraceLoad(trace, rate_scale=2.0)
    assert len(double.times) == 2 * len(trace)
    fast = TraceLoad(trace, speed=10.0)
    assert fast.times[-1] == pytest.approx(trace.duration_s / 10)


def test_trace_replay_loops_and_windows_do_not_change_the_traffic() -> None:
    load = TraceLoad(load_trace("code"), speed=20.0)
    whole = load.arrivals(0.0, 2 * load.period_s)
    sliced = [r for t in range(400) for r in load.arrivals(t * 0.5, (t + 1) * 0.5)]
    assert len(whole) == 2 * len(load.times)
    assert sliced == [r for r in whole if r.arrival_s < 200.0]


@pytest.mark.parametrize("kind", ["constant", "step", "diurnal", "bursty"])
def test_synthetic_patterns_are_seeded_and_window_independent(kind: str) -> None:
    load = SyntheticLoad(
        LoadConfig(
            kind=kind,
            rate_rps=2.0,
            peak_rps=8.0,
            high_rps=8.0,
            burst_rps=20.0,
            burst_s=10.0,
            period_s=120.0,
            seed=3,
        )
    )
    whole = load.arrivals(0.0, 240.0)
    sliced = [r for t in range(2400) for r in load.arrivals(t * 0.1, (t + 1) * 0.1)]
    assert whole == sliced
    assert 2.0 * 240 * 0.7 < len(whole) < 20.0 * 240
    assert all(r.input_tokens >= 1 and r.output_tokens >= 1 for r in whole)


def test_the_demo_fleet_has_the_names_the_control_plane_relies_on() -> None:
    fleet = load_config(None)
    east, west = fleet.cluster("east"), fleet.cluster("west")
    assert len(east.nodes) == 6 and len(west.nodes) == 8
    assert sum(n.gpus for n in east.nodes) == 48
    names = {(w.namespace, w.name) for c in fleet.clusters for w in c.workloads}
    assert len(names) == 12
    assert ("acme-chat", "chat-llama-8b") in names
    chat = next(w for w in east.workloads if w.name == "chat-llama-70b")
    assert (chat.gpu_type, chat.gpus_per_replica, chat.load.rate_scale) == ("H100-80GB", 4, 0.3)
    assert set(east.namespaces) == {
        "acme-chat",
        "acme-code",
        "acme-search",
        "globex-research",
        "globex-support",
        "globex-ml",
    }


def test_invalid_configs_name_the_offending_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    workload = {"namespace": "a", "name": "w", "model": "m", "gpu_type": "TPU-v5"}
    path.write_text(json.dumps({"clusters": [{"name": "c", "workloads": [workload]}]}))
    with pytest.raises(ConfigError, match=r"clusters\[0\]\.workloads\[0\]\.gpu_type"):
        load_config(path)
    too_big = {**workload, "gpu_type": "L4-24GB", "model": "meta-llama/Llama-3.1-70B-Instruct"}
    path.write_text(json.dumps({"clusters": [{"name": "c", "workloads": [too_big]}]}))
    with pytest.raises(ConfigError, match="does not fit"):
        load_config(path)
