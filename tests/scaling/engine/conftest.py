"""Small builders for engine inputs, so each test states only what matters to it.

Exposed as fixtures because the suite runs with --import-mode=importlib (no sibling imports).
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from scaling.engine import (
    Decision,
    Memory,
    Observation,
    PodSample,
    PodState,
    PolicyParams,
    QuotaHeadroom,
    decide,
)

NOW = 10_000.0


def policy(algorithm: str = "hpa", **fields: Any) -> PolicyParams:
    base = PolicyParams(
        algorithm=algorithm,
        metric="vllm:num_requests_running",
        target=4.0,
        min_replicas=1,
        max_replicas=100,
    )
    return replace(base, **fields)


def obs(
    current: int,
    value: float | None = None,
    *,
    now: float = NOW,
    ready: int | None = None,
    **fields: Any,
) -> Observation:
    """An observation; `value` is a fresh single-point series unless a series is given."""
    if value is not None and "series" not in fields:
        fields["series"] = ((now - 1.0, value),)
    return Observation(
        now=now, current=current, ready=current if ready is None else ready, **fields
    )


def pods(values: dict[str, float | None], *, now: float = NOW, unready: tuple[str, ...] = ()):
    """(pods, samples) where a None value means the pod reported no metric."""
    states = tuple(PodState(name, ready=name not in unready) for name in values)
    samples = tuple(PodSample(name, now - 1.0, v) for name, v in values.items() if v is not None)
    return states, samples


def run(
    pol: PolicyParams,
    ob: Observation,
    memory: Memory | None = None,
    quota: QuotaHeadroom | None = None,
) -> Decision:
    return decide(pol, ob, memory, quota)


@pytest.fixture
def build() -> SimpleNamespace:
    """The builders above: build.policy(...), build.obs(...), build.pods(...), build.run(...)."""
    return SimpleNamespace(NOW=NOW, policy=policy, obs=obs, pods=pods, run=run)
