"""predictive on shortened regimes of the suite (simulator/regimes/, docs/traces.md): pins the
decision-quality changes of issue 14's Goal through the real back-test."""

from __future__ import annotations

from pathlib import Path

from scaling.backtest import run_backtest
from scaling.engine import PolicyParams
from simulator.tracegen import generate, regime, write_trace

POLICY = PolicyParams("predictive", "vllm:num_requests_running", None, 1, 50, slo_ttft_p95_s=2.0)


def test_a_flash_crowd_is_sized_for_the_demand_now_once_the_pool_is_short(tmp_path: Path) -> None:
    # Seed 1 cut at 660 s: 8 min at 3 req/s, then the crowd (x6 within 20 s) for 3 min.
    # Sized on the minute's mean, the pool asked for 3, 4, 5 replicas over 45 s of a crowd of
    # ~3.6 replicas of work and met 51.0 % of requests; sized for the demand now once it
    # outran the ready replicas for two scrapes, 56.8 % at the same GPU-hours (0.61).
    path = tmp_path / "flash-crowd.jsonl"
    write_trace(generate(regime("flash-crowd"), 1, 660.0), path)
    result = run_backtest(POLICY, path, oracle=False)
    assert result.slo_attainment is not None
    assert result.slo_attainment > 0.55
    assert result.gpu_hours < 0.7
