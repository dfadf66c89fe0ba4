"""The service-level objective of a back-test and how requests are counted against it.

A request meets the SLO when its time to first token is within ``ttft_s`` and its mean
inter-token latency (``Completion.itl_s``) within ``tpot_s``. Attainment counts only the
requests that *could* meet it: a request is feasible when, alone on an idle replica, it
would fit the KV cache, its prefill (``perf.lone_prefill_s(input)``: the prompt's chunks
through the engine's token budget) would end within ``ttft_s`` and a batch-of-one decode
step (``perf.step_s(1)``) would be within ``tpot_s``. No scaling policy can help the
others; they are reported as the infeasible share beside the attainment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from performance import GpuProfile, ModelDoesNotFit, ReplicaPerf, model_spec, replica_perf
from scaling.capacity import DEFAULT_TPOT_S
from simulator.replica import Completion, Request

# The SLO of every back-test that names none (the command, the API's jobs, the preview).
DEFAULT_SLO_TTFT_S = 2.0
DEFAULT_SLO_TPOT_S = DEFAULT_TPOT_S  # the objective the live loop sizes replicas for


@dataclass(frozen=True)
class Slo:
    """TTFT bound and mean inter-token latency bound, in seconds."""

    ttft_s: float = DEFAULT_SLO_TTFT_S
    tpot_s: float = DEFAULT_SLO_TPOT_S

    def feasible(self, perf: ReplicaPerf, input_tokens: int, output_tokens: int) -> bool:
        """Whether the request would meet the SLO alone on an idle replica."""
        if input_tokens + output_tokens > perf.kv_capacity_tokens:
            return False
        if perf.lone_prefill_s(input_tokens) > self.ttft_s:
            return False
        return output_tokens <= 1 or perf.step_s(1) <= self.tpot_s

    def longest_prompt(self, perf: ReplicaPerf) -> int:
        """The longest prompt ``feasible`` admits on ``perf`` with one output token (the
        decode bound then does not apply): what the live loop counts infeasible requests
        against, by the same rule. Bisection: feasibility only falls as prompts grow.
        0 when not even a one-token prompt is feasible."""
        low, high = 0, perf.kv_capacity_tokens  # feasible(low), or low == 0; not beyond high
        while low < high:
            mid = (low + high + 1) // 2
            if self.feasible(perf, mid, 1):
                low = mid
            else:
                high = mid - 1
        return low

    def met(self, completion: Completion) -> bool:
        return completion.ttft_s <= self.ttft_s and completion.itl_s <= self.tpot_s


@lru_cache(maxsize=256)
def prompt_limit(
    profile: GpuProfile | None, model: str, gpus_per_replica: int, ttft_s: float
) -> int | None:
    """The longest prompt one replica of ``model`` on ``gpus_per_replica`` x ``profile`` (a
    ``GpuType.profile``) prefills within ``ttft_s`` alone (``Slo.longest_prompt``); None
    when the GPU type has no profile or the model does not fit (nothing is counted)."""
    if profile is None:
        return None
    try:
        perf = replica_perf(profile, model_spec(model), gpus_per_replica)
    except ModelDoesNotFit:
        return None
    return Slo(ttft_s=ttft_s).longest_prompt(perf)


@dataclass(frozen=True)
class Attainment:
    """Requests offered, how many were feasible, and how many feasible ones met the SLO."""

    requests: int
    feasible: int
    met: int

    @property
    def infeasible(self) -> int:
        return self.requests - self.feasible

    @property
    def attainment(self) -> float | None:
        """Met / feasible; None when no request was feasible."""
        return self.met / self.feasible if self.feasible else None

    @property
    def infeasible_share(self) -> float | None:
        return self.infeasible / self.requests if self.requests else None


def count_attainment(
    slo: Slo, perf: ReplicaPerf, offered: Iterable[Request], completed: Iterable[Completion]
) -> Attainment:
    """Count the offered requests against the SLO.

    A feasible request that never completed (rejected, lost, unfinished) counts as missed.
    Completions are matched to offers by their token counts only through feasibility, which
    depends on nothing else, so no request identity is needed.
    """
    requests = feasible = 0
    for request in offered:
        requests += 1
        feasible += slo.feasible(perf, request.input_tokens, request.output_tokens)
    met = sum(
        1 for c in completed if slo.met(c) and slo.feasible(perf, c.input_tokens, c.output_tokens)
    )
    return Attainment(requests, feasible, met)
