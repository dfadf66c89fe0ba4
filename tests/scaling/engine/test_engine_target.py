"""A target only for the algorithms that read one: hpa, kpa and apa hold without it;
predictive and slo size from offered work and need none."""

from __future__ import annotations

from typing import Any

import pytest

from scaling.engine import Observation, PolicyParams, ReplicaCapacity, decide

NOW = 50_000.0
CAPACITY = ReplicaCapacity(
    prefill_tokens_per_s=5_000.0, decode_tokens_per_s=800.0, max_concurrency=32
)
# Ten minutes of steady offered work: 20k prompt and 3.2k generation tokens/s, which is
# 4 + 4 = 8 replicas of work at CAPACITY.
OFFERED: dict[str, Any] = {
    "prompt_tokens_per_s": tuple((NOW - 600 + 5 * k, 20_000.0) for k in range(121)),
    "generation_tokens_per_s": tuple((NOW - 600 + 5 * k, 3_200.0) for k in range(121)),
    "capacity": CAPACITY,
    "ttft_p95_s": tuple((NOW - 600 + 5 * k, 0.5) for k in range(121)),  # slo reads it too
}
METRIC: dict[str, Any] = {"series": tuple((NOW - 600 + 5 * k, 10.0) for k in range(121))}


def policy(algorithm: str, target: float | None) -> PolicyParams:
    return PolicyParams(algorithm, "vllm:num_requests_running", target, 1, 50, slo_ttft_p95_s=2.0)


@pytest.mark.parametrize("algorithm", ["hpa", "kpa", "apa"])
def test_an_algorithm_that_reads_a_target_holds_without_one(algorithm: str) -> None:
    obs = Observation(now=NOW, current=3, ready=3, **METRIC)
    decision = decide(policy(algorithm, None), obs)
    assert decision.outcome == "hold" and decision.desired == 3
    assert f"the {algorithm} algorithm needs a target" in decision.reason
    assert decide(policy(algorithm, 5.0), obs).reason != decision.reason


@pytest.mark.parametrize("algorithm", ["predictive", "slo"])
def test_an_algorithm_sized_from_offered_work_needs_no_target(algorithm: str) -> None:
    obs = Observation(now=NOW, current=3, ready=3, **OFFERED)
    without = decide(policy(algorithm, None), obs)
    assert without.outcome == "scale_up" and without.desired >= 8
    # The target is not read at all: any value decides the same.
    assert decide(policy(algorithm, 7.0), obs).desired == without.desired


def test_predictive_without_offered_work_or_a_target_holds_and_says_why() -> None:
    obs = Observation(now=NOW, current=3, ready=3, **METRIC)
    decision = decide(policy("predictive", None), obs)
    assert decision.outcome == "hold" and decision.desired == 3
    assert "no target" in decision.reason
