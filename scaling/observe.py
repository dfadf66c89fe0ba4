"""From what a cluster reports to what the engine reads: pods grouped by workload, metric
samples averaged per pod, counter rates, TTFT p95 from histogram buckets. Pure functions,
no I/O. The history of each signal kept between ticks is scaling.signals.

A sample that is missing stays missing: nothing here turns an absent value into zero.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from clusters.kubernetes import DeploymentState, PodState
from clusters.metrics import Sample

PROMPT_TOKENS = "vllm:prompt_tokens_total"  # every prompt token, cached ones included
GENERATION_TOKENS = "vllm:generation_tokens_total"
# vLLM V1's automatic prefix caching, in tokens: prompt tokens found in the cache at admission.
# They need no prefill, so they are no work to size replicas for (uncached_prompt).
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"
TTFT_BUCKETS = "vllm:time_to_first_token_seconds_bucket"
# The wait before a request's first scheduled step: the part of TTFT capacity can remove (a
# long prompt's own prefill is not; it is in TTFT, never here).
QUEUE_BUCKETS = "vllm:request_queue_time_seconds_bucket"
# Whole prompts of finished requests, in vLLM's 1-2-5 buckets: how many were too long for
# the TTFT objective on any replica (requests_over).
PROMPT_LENGTH_BUCKETS = "vllm:request_prompt_tokens_bucket"
OFFERED_WORK_METRICS = (
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    PREFIX_CACHE_HITS,
    TTFT_BUCKETS,
    QUEUE_BUCKETS,
    PROMPT_LENGTH_BUCKETS,
)
# No inference replica processes ten million tokens (or requests) a second: eight H100s
# prefill a small model at well under one million. A counter rising faster was corrupted or
# wrapped (a 1.8e19 jump is a uint64 gone wrong), and a rate made of it must not drive scaling.
MAX_COUNTER_RATE_PER_POD = 1e7


def pods_by_namespace(pods: Iterable[PodState]) -> dict[str, list[PodState]]:
    """Pods grouped by namespace, once per tick, so that matching a Deployment's selector
    looks at its namespace's pods, not at the whole cluster's."""
    grouped: dict[str, list[PodState]] = defaultdict(list)
    for pod in pods:
        grouped[pod.namespace].append(pod)
    return grouped


def pods_of(deployment: DeploymentState, pods: dict[str, list[PodState]]) -> list[PodState]:
    """The Deployment's pods: same namespace, labels matching its selector."""
    if not deployment.selector:
        return []
    return [
        pod
        for pod in pods.get(deployment.namespace, ())
        if all(pod.labels.get(k) == v for k, v in deployment.selector.items())
    ]


def unplaced(pods: Iterable[PodState]) -> str:
    """Why some of the pods cannot be placed (the scheduler's own message), or "": a scale-up
    whose pods stay Pending is capacity that will not come."""
    stuck = [pod for pod in pods if pod.unschedulable]
    if not stuck:
        return ""
    count = f"{len(stuck)} pod{'s' if len(stuck) > 1 else ''}"
    return f"{count} cannot be placed: {stuck[0].unschedulable}"


def placed(deployment: DeploymentState, pods: Iterable[PodState]) -> DeploymentState:
    """The Deployment as quota and capacity count it: a pod the scheduler cannot place holds
    no GPU and is no replica on its way, so it is charged to no quota (issue 17: "counted
    against nothing") and not counted warming; its spec and the reported failure keep it."""
    stuck = sum(1 for pod in pods if pod.unschedulable)
    if not stuck:
        return deployment
    return replace(deployment, replicas=max(deployment.replicas - stuck, deployment.ready_replicas))


def failure_of(deployment: DeploymentState, pods: Iterable[PodState]) -> str:
    """What keeps the Deployment from its replicas: its own condition (e.g. pods refused by a
    ResourceQuota) and pods the scheduler cannot place."""
    return "; ".join(f for f in (deployment.failure or "", unplaced(pods)) if f)


PodIndex = dict[tuple[str, str], list[Sample]]


def index_by_pod(samples: Iterable[Sample]) -> PodIndex:
    """Samples grouped by (namespace, pod), built once per tick and metric name, so each
    workload looks up its own pods instead of scanning the whole cluster's series."""
    index: PodIndex = defaultdict(list)
    for sample in samples:
        index[(sample.label("namespace"), sample.label("pod"))].append(sample)
    return index


def per_pod(index: PodIndex, namespace: str, pods: set[str]) -> dict[str, Sample]:
    """One value per pod: the mean over its series (a 4-GPU pod has four DCGM series),
    stamped with the oldest of them so staleness is never hidden."""
    grouped = {pod: index[(namespace, pod)] for pod in pods if index.get((namespace, pod))}
    return {
        pod: Sample(
            group[0].name,
            (("namespace", namespace), ("pod", pod)),
            math.fsum(s.value for s in group) / len(group),
            min(s.timestamp for s in group),
        )
        for pod, group in grouped.items()
    }


def counter_rate(
    previous: dict[str, list[float]], current: dict[str, Sample]
) -> tuple[float | None, dict[str, list[float]]]:
    """Summed per-second rate of a counter over pods seen in both readings.

    A pod whose counter went down restarted: it is skipped, not counted as negative. So is
    one whose counter rose faster than ``MAX_COUNTER_RATE_PER_POD`` (or to NaN or infinity):
    a corrupt reading, not load. With no pod counted the rate is unknown (None), never zero.
    """
    rate, seen = 0.0, False
    for pod, sample in current.items():
        before = previous.get(pod)
        if before is None:
            continue
        elapsed, delta = sample.timestamp - before[0], sample.value - before[1]
        # (a NaN delta fails the comparison too)
        if elapsed > 0 and 0 <= delta <= MAX_COUNTER_RATE_PER_POD * elapsed:
            rate += delta / elapsed
            seen = True
    state = {pod: [s.timestamp, s.value] for pod, s in current.items()}
    return (rate if seen else None), state


def uncached_prompt(prompt: dict[str, Sample], hits: dict[str, Sample]) -> dict[str, Sample]:
    """Per pod, prompt tokens minus those its prefix cache served: the prompt tokens that
    were prefilled, a counter `counter_rate` takes the rate of. A pod exporting no hit
    counter (vLLM V0, or caching off) counts its prompt tokens whole, as before the counter
    existed: more work, never less. Stamped with the older of the two samples."""
    out = dict(prompt)
    for pod, cached in hits.items():
        total = prompt.get(pod)
        if total is not None:
            out[pod] = Sample(
                total.name,
                total.labels,
                total.value - cached.value,
                min(total.timestamp, cached.timestamp),
            )
    return out


def bucket_counts(index: PodIndex, namespace: str, pods: set[str]) -> dict[str, float]:
    """Histogram bucket counts summed over the workload's pods, keyed by ``le``."""
    counts: dict[str, float] = defaultdict(float)
    for pod in pods:
        for sample in index.get((namespace, pod), ()):
            counts[sample.label("le")] += sample.value
    return dict(counts)


def histogram_quantile(q: float, before: dict[str, float], now: dict[str, float]) -> float | None:
    """The q-quantile of observations made between two readings of cumulative buckets,
    interpolated linearly inside the bucket (as PromQL's histogram_quantile does)."""
    deltas = sorted((float(le), now[le] - before.get(le, 0.0)) for le in now if le and le in before)
    if not deltas or deltas[-1][1] <= 0 or any(d < 0 for _, d in deltas):
        return None
    total, rank = deltas[-1][1], q * deltas[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in deltas:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            fraction = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound if total else None


@dataclass(frozen=True)
class Overlong:
    """Requests observed between two readings of the prompt-length histogram: ``requests``
    of the ``total`` had a prompt longer than the limit; ``at_least`` when a bucket straddles
    the limit and holds some, so that some of its requests may be over it too."""

    requests: int
    total: int
    at_least: bool


def requests_over(limit: float, before: dict[str, float], now: dict[str, float]) -> Overlong | None:
    """How many requests observed between two readings of cumulative prompt-length buckets
    had a prompt longer than ``limit`` tokens; None when unknown (no earlier reading, or a
    bucket went down: a restart).

    1. Deltas per bucket, by bound, over the buckets in both readings.
    2. The requests at or under the limit are at most the count of the smallest bound at or
       above it (``le``: less or equal), so those over it are at least total minus that.
    3. That is exact when the bound is the limit itself, or when the bucket straddling the
       limit (from the bound below it) holds nothing new; otherwise it is "at least".
    """
    deltas = sorted((float(le), now[le] - before[le]) for le in now if le and le in before)
    if not deltas or any(d < 0 for _, d in deltas) or not math.isinf(deltas[-1][0]):
        return None
    total = deltas[-1][1]
    below = 0.0  # cumulative count at the largest bound under the limit
    for bound, count in deltas:
        if bound >= limit:
            straddling = count - below > 0 and bound != limit
            return Overlong(round(total - count), round(total), straddling)
        below = count
    return None  # unreachable: the +Inf bucket is at or above any limit


def aggregate(values: dict[str, Sample], aggregation: str) -> tuple[float, float] | None:
    """(value, oldest timestamp) of the policy metric across pods, or None with no samples."""
    if not values:
        return None
    total = math.fsum(s.value for s in values.values())
    stamp = min(s.timestamp for s in values.values())
    return (total / len(values) if aggregation == "average" else total), stamp


# --- what the dashboard reads besides the policy metric ------------------------------------------
# Named here, beside the offered-work metrics, so that the charts and the loop spell each
# series one way (clusters.metrics.KNOWN_METRICS says what each one measures).

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
GPU_MEMORY_USED = "DCGM_FI_DEV_FB_USED"
REQUESTS_RUNNING = "vllm:num_requests_running"
REQUESTS_WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
REQUESTS_FINISHED = "vllm:request_success_total"


def policy_value(
    index: PodIndex, namespace: str, pods: set[str], aggregation: str
) -> tuple[float, float] | None:
    """(value, oldest timestamp) of a policy metric over the workload's pods, as the loop
    records it for the engine: each pod's series averaged first (`per_pod`), then
    `aggregate`d. The dashboard's chart of the policy metric is this value."""
    return aggregate(per_pod(index, namespace, pods), aggregation)
