"""The live loop's mix (scaling.variants) and the back-test's (scaling.backtest.mix.MixSizer)
decide the same mix for the same signals: the same prompt-length histogram over the same
window, the same policy counts, tick after tick (hysteresis and the cold-start wait
included). The back-test sees requests arrive; the live loop reads vLLM's cumulative
``vllm:request_prompt_tokens`` buckets and the mean prompt from the token counters."""

from __future__ import annotations

import json
from bisect import bisect_left
from typing import Any

import pytest

from clusters.kubernetes import DeploymentState
from quotas.models import GpuType
from scaling import variants
from scaling.backtest import Deployment, Slo
from scaling.backtest.mix import MixSettings, MixSizer
from scaling.engine import history_s
from scaling.engine.mix import MixMemory, prompt_buckets
from scaling.models import ScalingPolicy, Workload
from scaling.signals import SignalTick
from simulator.replica import Request

pytestmark = pytest.mark.django_db

MODEL = Deployment().model
POLICY = ScalingPolicy(
    algorithm="predictive",
    metric="vllm:num_requests_running",
    target=32.0,
    min_replicas=1,
    max_replicas=50,
    slo_ttft_p95_s=2.0,
    cold_start_s=Deployment().cold_start_s,
)
OUTPUT_TOKENS = 1.0  # prefill-only: the router guard keeps the A40 (mix.routed)
# (tick time, the policy's count, prompts arrived since the last tick): 2,000-token prompts,
# cheaper on A40s at $0.60, then some of 8,000 (beyond the A40's prefill within the TTFT),
# the count moving up and down.
SHORT, LONG = [2000] * 60, [2000] * 50 + [8000] * 10
TICKS = [
    (15.0, 8, SHORT),
    (30.0, 8, SHORT),
    (45.0, 9, SHORT),
    (60.0, 9, SHORT),
    (75.0, 9, SHORT),
    (90.0, 9, LONG),
    (105.0, 10, LONG),
    (120.0, 10, LONG),
    (135.0, 9, LONG),
    (150.0, 9, SHORT),
    (165.0, 8, SHORT),
    (180.0, 8, SHORT),
]


@pytest.fixture
def a40(db: Any) -> GpuType:
    return GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.60", node_label="NVIDIA-A40"
    )


def backtest_goals() -> list[dict[str, int]]:
    settings = MixSettings(("A100-80GB", "A40-48GB"), {"A40-48GB": 0.6})
    sizer = MixSizer(POLICY.engine_params(), Deployment(), Slo(), settings)
    pool = sizer.new_pool(8)
    goals = []
    for now, desired, prompts in TICKS:
        arrived = [Request(now, p, int(OUTPUT_TOKENS)) for p in prompts]
        sizer.observe(SignalTick(now, desired, desired), arrived, pool, OUTPUT_TOKENS)
        sizer.apply(pool, desired, now)
        goals.append(dict(sizer.goal))
    return goals


def live_goals(a100: GpuType, a40: GpuType) -> list[dict[str, int]]:
    workload = Workload(model_name=MODEL, gpus_per_replica=1, gpu_type=a100)
    top = Deployment().perf.kv_capacity_tokens  # the same +Inf edge as the back-test's
    bounds = [*prompt_buckets(top - 1)]
    les = [f"{float(b)}" for b in bounds] + ["+Inf"]
    cumulative = dict.fromkeys(les, 0.0)
    before: dict[str, Any] = {"at": 0.0, "buckets": dict(cumulative)}
    window: list[list[Any]] = []
    counts, memory = {"A100-80GB": 8, "A40-48GB": 0}, None
    goals = []
    for now, desired, prompts in TICKS:
        for p in prompts:  # each prompt counted in its bucket and every one above
            for le in les[bisect_left(bounds, p) :]:
                cumulative[le] += 1
        buckets = dict(cumulative)
        reading = {"at": now, "buckets": buckets}
        mean = sum(prompts) / len(prompts)  # the token counters' rate over the requests'
        window = variants.prompt_window(window, before, reading, mean, variants.window_s(POLICY))
        before = reading
        shape = variants.window_classes(window, OUTPUT_TOKENS, top, buckets)
        pool = mixed_pool(a100, a40, counts)
        memory = memory or variants.memory_of(pool, None)
        choice = variants.choose(workload, POLICY, pool, desired, shape, {}, memory, now)
        assert choice.memory is not None, choice.reason
        counts, memory = choice.replicas, choice.memory  # applied in full: no quota binds
        goals.append(dict(choice.replicas))
    return goals


def mixed_pool(a100: GpuType, a40: GpuType, counts: dict[str, int]) -> variants.Pool:
    def state(name: str, n: int) -> DeploymentState:
        return DeploymentState("team-a", name, n, n, n)

    parts = (
        variants.Part(a100, state("chat", counts["A100-80GB"]), 0, POLICY.max_replicas, None),
        variants.Part(a40, state("chat-a40", counts["A40-48GB"]), 0, POLICY.max_replicas, 1),
    )
    return variants.Pool(parts, [], state("chat", counts["A100-80GB"]))


def test_the_live_loop_and_the_backtest_choose_the_same_mix_tick_after_tick(gpu_type, a40):
    assert variants.window_s(POLICY) == history_s(POLICY.engine_params())
    backtest, live = backtest_goals(), live_goals(gpu_type, a40)
    assert live == backtest
    # Not a trivial sequence: the move to A40s waited a cold start (the first ticks keep
    # all-A100), then held through the count's moves and the long prompts (hysteresis).
    assert backtest[0] == {"A100-80GB": 8, "A40-48GB": 0}
    moved = next(i for i, g in enumerate(backtest) if g["A40-48GB"])
    assert TICKS[moved][0] - TICKS[0][0] >= POLICY.cold_start_s
    assert len({tuple(g.values()) for g in backtest[moved:]}) > 1  # the counts still move


def test_the_memory_survives_the_loop_state_as_json():
    memory = MixMemory({"A100-80GB": 3, "A40-48GB": 4}, 5, ("A100-80GB", "A40-48GB"), 12.5)
    assert MixMemory.from_dict(json.loads(json.dumps(memory.to_dict()))) == memory
