"""A workload's observed load: the request trace of its last hour, rebuilt from what its
cluster's Prometheus recorded, so the what-if preview replays the traffic the workload had.

vLLM exports counters, not requests. Per step of the window (``step_s``, 30 s for an hour):

1. Range-query Prometheus for the raw values of ``vllm:request_success_total``,
   ``vllm:prompt_tokens_total`` and ``vllm:generation_tokens_total`` at every step, keep the
   series of the workload's own pods (``ObservedQuery.owns``: in its namespace, named as its
   ReplicaSets name pods; labels normalised as the live reads do) and sum, per step, how
   much each grew since the previous step (``_workload_increase`` says how restarts and new
   pods count).
2. Requests in the step = the finished requests (they trail arrivals by one request's
   latency, seconds against a 30 s step); their prompt and output sizes = the token
   increases divided by the requests, over the ``SIZE_STEPS`` steps around it (prompts are
   counted at prefill, requests at the end: one step alone can split the two).
3. The step's requests arrive uniformly at random inside it (a Poisson process given its
   count), with a generator seeded by the workload, so the same hour previews the same way.
4. The replicas that actually served, per step: pods reporting ``vllm:num_requests_running``
   (the preview draws them beside the replayed curves as what really happened).

No history (a cluster read from its exporters keeps none; Prometheus has no series of the
workload) is an ``ObservedLoadError`` with a message the page shows, never an empty trace.
"""

from __future__ import annotations

import math
import random
import re
from array import array
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusters import prometheus
from clusters.metrics import MetricsError
from scaling.observe import GENERATION_TOKENS as GENERATION
from scaling.observe import PROMPT_TOKENS as PROMPT
from scaling.observe import REQUESTS_FINISHED as REQUESTS
from scaling.observe import REQUESTS_RUNNING as SERVING
from simulator.traces import Trace

WINDOW_S = 3600.0
STEP_S = 30.0
SIZE_STEPS = 5  # request sizes: the mean over this many steps around each (2.5 min at 30 s)
# apimachinery's rand.SafeEncodeString alphabet: a ReplicaSet's pod-template-hash (up to ten
# characters) and the five-character suffix of its pods' generated names.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"


class ObservedLoadError(ValueError):
    """There is no observed load to replay (the message says why, for the page)."""


@dataclass(frozen=True)
class ObservedQuery:
    """Where and whose load to read: the cluster's Prometheus and the workload's pods."""

    prometheus_url: str
    namespace: str
    deployment: str
    seed: int
    end: float
    window_s: float = WINDOW_S
    step_s: float = STEP_S

    def owns(self, labels: Mapping[str, str]) -> bool:
        """A series of one of the Deployment's pods over the hour, by the pod's name:
        ``<deployment>-<pod-template-hash>-<5 chars>``, as its ReplicaSets name them.

        Not by its selector, as the live chart and the loop match pods (observe.pods_of):
        most of the hour's pods no longer exist, the API lists only live ones, and the
        exporters' series carry the pod's name, not its labels. The name is checked whole,
        so a StatefulSet ``chat-canary``'s pod ``chat-canary-0`` is not Deployment chat's.
        """
        if labels.get("namespace") != self.namespace:
            return False
        shape = rf"{re.escape(self.deployment)}-{_SAFE}{{1,10}}-{_SAFE}{{5}}"
        return re.fullmatch(shape, labels.get("pod", "")) is not None


@dataclass(frozen=True)
class ObservedLoad:
    trace: Trace
    start: float  # Unix seconds of the trace's 0
    duration_s: float
    step_s: float
    actual: list[tuple[float, int]]  # (seconds into the window, replicas serving)

    @property
    def initial_replicas(self) -> int | None:
        return self.actual[0][1] if self.actual else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace": self.trace.name,
            "requests": len(self.trace),
            "start": self.start,
            "duration_s": self.duration_s,
            "timeline": [{"t": t, "replicas": n} for t, n in self.actual],
        }


def read_observed_load(query: ObservedQuery) -> ObservedLoad:
    """Read the workload's counters over the window and rebuild its trace (steps above)."""
    start = query.end - query.window_s
    per_step = {
        name: _workload_increase(query, name, start) for name in (REQUESTS, PROMPT, GENERATION)
    }
    if not per_step[REQUESTS]:
        raise ObservedLoadError(
            f"Prometheus has no requests of {query.namespace}/{query.deployment} in the last "
            f"{query.window_s / 60:.0f} minutes (it takes two {query.step_s:g} s steps of its "
            "counters): there is no observed load to replay. Pick a recorded trace."
        )
    for name in (PROMPT, GENERATION):
        if not per_step[name]:  # sizes unknown: never replayed as one-token requests
            raise ObservedLoadError(
                f"Prometheus has no {name} of {query.namespace}/{query.deployment}: the sizes "
                "of its requests are unknown. Pick a recorded trace."
            )
    serving = _serving_replicas(query, start)
    # The trace starts where the workload's data does: one step before the first point
    # (which counts what happened in the step up to it).
    origin = min(per_step[REQUESTS]) - query.step_s

    def rebased(values: Mapping[float, float]) -> dict[float, float]:
        return {t - origin: n for t, n in values.items()}

    trace = rebuild_trace(
        rebased(per_step[REQUESTS]),
        rebased(per_step[PROMPT]),
        rebased(per_step[GENERATION]),
        query.step_s,
        random.Random(query.seed),
        name=f"observed {query.namespace}/{query.deployment}",
    )
    # Up to the last step with data: after it the load is unknown, not zero.
    duration = max(per_step[REQUESTS]) - origin
    actual = [
        (t - origin, n) for t, n in sorted(serving.items()) if origin < t <= origin + duration
    ]
    return ObservedLoad(trace, origin, duration, query.step_s, actual)


def rebuild_trace(
    requests: Mapping[float, float],
    prompt_tokens: Mapping[float, float],
    output_tokens: Mapping[float, float],
    step_s: float,
    rng: random.Random,
    name: str,
) -> Trace:
    """Arrivals from per-step counts: each step's requests (its end time -> count) land
    uniformly inside it; fractions carry to the next step. A request's sizes are the mean of
    the steps around it (``SIZE_STEPS``): tokens are counted at prefill and requests at the
    end, so one step alone can pair a request with another's prompt."""
    ends = sorted(requests)
    rows: list[tuple[float, int, int]] = []
    carry = 0.0
    for i, end in enumerate(ends):
        exact = requests[end] + carry
        count = math.floor(exact)
        carry = exact - count
        if count <= 0:
            continue
        around = ends[max(0, i - SIZE_STEPS // 2) : i + SIZE_STEPS // 2 + 1]
        served = sum(requests[t] for t in around)
        prompt = max(1, round(sum(prompt_tokens.get(t, 0.0) for t in around) / served))
        output = max(1, round(sum(output_tokens.get(t, 0.0) for t in around) / served))
        begin = max(0.0, end - step_s)
        rows += [(rng.uniform(begin, end), prompt, output) for _ in range(count)]
    rows.sort()
    return Trace(
        name=name,
        times=array("d", (r[0] for r in rows)),
        inputs=array("l", (r[1] for r in rows)),
        outputs=array("l", (r[2] for r in rows)),
    )


def _workload_increase(query: ObservedQuery, metric: str, start: float) -> dict[float, float]:
    """Per step (keyed by its end time), how much the counter grew over the workload's pods:
    the difference of each pod's raw values at consecutive steps (a drop is a restart: the
    new value is the growth since), never PromQL's extrapolated ``increase()``, whose guesses
    at the edges of a series differ between counters and skew the sizes per request. A pod
    that appears after the workload's first step counts from zero (it started in between);
    the pods seen at that first step are the baseline. Steps with no pod of the workload
    are absent (unknown), not zero."""
    owned = [points for labels, points in _query_range(query, metric, start) if query.owns(labels)]
    if not owned:
        return {}
    baseline = min(points[0][0] for points in owned if points)
    totals: dict[float, float] = defaultdict(float)
    for points in owned:
        previous = None if points and points[0][0] == baseline else 0.0
        for t, value in points:
            if not math.isfinite(value):
                continue
            if previous is not None:
                totals[t] += value - previous if value >= previous else value
            previous = value
    return dict(totals)


def _serving_replicas(query: ObservedQuery, start: float) -> dict[float, int]:
    counts: dict[float, int] = defaultdict(int)
    for labels, points in _query_range(query, SERVING, start):
        if query.owns(labels):
            for t, _ in points:
                counts[t] += 1
    return dict(counts)


def _query_range(query: ObservedQuery, metric: str, start: float) -> prometheus.Series:
    try:
        return prometheus.read_range(query.prometheus_url, metric, start, query.end, query.step_s)
    except MetricsError as exc:
        raise ObservedLoadError(f"Could not read the observed load from Prometheus: {exc}") from exc
