"""The GPU mix replay (scaling/backtest/mix.py): classes from histogram bounds, the router
guard, hysteresis on types, and a short replay through the ordinary run_backtest."""

from __future__ import annotations

import random

import pytest

from scaling.backtest import Deployment, Slo, run_backtest
from scaling.backtest.jobs import priced
from scaling.backtest.mix import (
    MixSettings,
    MixSizer,
    gpu_options,
    prompt_buckets,
    request_classes,
    run_mix_backtest,
    steady,
)
from scaling.engine import PolicyParams
from scaling.engine.mix import RequestClass
from simulator.replica import Request

POLICY = PolicyParams("predictive", "vllm:num_requests_running", 32.0, 1, 50, slo_ttft_p95_s=2.0)
PAIR = MixSettings(("A100-80GB", "A40-48GB"))


def test_prompt_buckets_are_vllms_1_2_5_bounds():
    assert prompt_buckets(600) == (1, 2, 5, 10, 20, 50, 100, 200, 500)


def test_classes_from_a_histogram_keep_the_sum_and_split_the_rate_by_counts():
    classes = request_classes((1000, 2000, 5000), [0, 3, 1, 0], 7000.0, 8.0, 10.0, 9000)
    assert [c.name for c in classes] == ["<=2000", "<=5000"]
    assert [c.rate_per_s for c in classes] == [6.0, 2.0]
    assert sum(c.prompt_tokens * n for c, n in zip(classes, (3, 1), strict=True)) == pytest.approx(
        7000.0
    )
    assert [c.longest_prompt_tokens for c in classes] == [2000, 5000]


def test_short_prompts_go_to_the_cheaper_type_and_long_ones_to_the_faster():
    options = gpu_options(PAIR, Deployment(), Slo(), 50)
    short = RequestClass("<=2000", 19.0, 2000.0, 2.0, 2000)
    long = RequestClass("<=5000", 1.6, 4700.0, 2.0, 5000)  # beyond the A40's prefill in 1 s
    mix = steady(options, [short, long], {}, 0.05)
    assert {gpu for k, gpu in mix.served if k == "<=5000"} == {"A100-80GB"}
    assert {gpu for k, gpu in mix.served if k == "<=2000"} == {"A40-48GB"}
    # Hysteresis: from all-A100, a mix saving under 10 % keeps the A100s.
    kept = steady(options, [short, long], {"A100-80GB": 6}, 0.1)
    assert kept.replicas["A40-48GB"] == 0
    assert kept.cost_per_hour <= mix.cost_per_hour * 1.1


def test_the_router_guard_drops_a_slower_type_when_decode_makes_it_late():
    sizer = MixSizer(POLICY, Deployment(), Slo(), PAIR)
    sizer.output_tokens = 2.0
    assert [o.name for o in sizer.routed()] == ["A100-80GB", "A40-48GB"]
    sizer.output_tokens = 300.0  # 300 x 22 ms more per token on the A40: late before routed
    assert [o.name for o in sizer.routed()] == ["A100-80GB"]


def test_a_short_mixed_replay_never_costs_more_than_the_cheapest_single_type():
    rng = random.Random(7)
    requests, t = [], 0.0
    while t < 300:
        t += rng.expovariate(6.0)
        requests.append(Request(t, 4800 if rng.random() < 0.1 else 600, 200))
    mixed = run_mix_backtest(POLICY, requests, settings=PAIR)
    singles = [
        priced(run_backtest(POLICY, requests, gpu_type=g, oracle=False), None)
        for g in PAIR.gpu_types
    ]
    goal = (mixed.result.slo_attainment or 0.0) - 0.005
    meeting = [r for r in singles if (r.slo_attainment or 0.0) >= goal]
    assert meeting
    assert mixed.cost_usd <= min(r.cost_usd or 0.0 for r in meeting) + 1e-6
    assert (mixed.result.slo_attainment or 0.0) >= (singles[0].slo_attainment or 0.0) - 0.005
    assert sum(mixed.requests_by_type.values()) == mixed.result.completed
