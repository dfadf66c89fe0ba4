"""A workload's observed load: the request trace of its last hour, rebuilt from what its
cluster's Prometheus recorded, so the what-if preview replays the traffic the workload had.

vLLM exports counters, not requests. Per step of the window (``step_s``, 30 s for an hour):

1. Range-query Prometheus for ``increase(...[2 x step]) / 2`` of
   ``vllm:request_success_total``, ``vllm:prompt_tokens_total`` and
   ``vllm:generation_tokens_total``, per series, and sum the series of the workload's own
   pods (``<deployment>-<hash>-<suffix>`` in its namespace, labels normalised as the live
   reads do). The doubled range makes every step see at least two scrapes.
2. Requests in the step = the finished requests (they trail arrivals by one request's
   latency, seconds against a 30 s step); the step's prompt and output sizes = the token
   increases divided by them. The fractional part of a count carries to the next step.
3. The step's requests arrive uniformly at random inside it (a Poisson process given its
   count), with a generator seeded by the workload, so the same hour previews the same way.
4. The replicas that actually served, per step: pods reporting ``vllm:num_requests_running``
   (the preview draws them beside the replayed curves as what really happened).

No history (a cluster read from its exporters keeps none; Prometheus has no series of the
workload) is an ``ObservedLoadError`` with a message the page shows, never an empty trace.
"""

from __future__ import annotations

import json
import math
import random
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusters.metrics import normalise_labels
from simulator.traces import Trace

WINDOW_S = 3600.0
STEP_S = 30.0
REQUESTS = "vllm:request_success_total"
PROMPT = "vllm:prompt_tokens_total"
GENERATION = "vllm:generation_tokens_total"
SERVING = "vllm:num_requests_running"


class ObservedLoadError(ValueError):
    """There is no observed load to replay (the message says why, for the page)."""


@dataclass(frozen=True)
class ObservedQuery:
    """Where and whose load to read: the cluster's Prometheus and the workload's pods."""

    prometheus_url: str
    namespace: str
    deployment: str
    seed: int
    timeout_s: float
    end: float
    window_s: float = WINDOW_S
    step_s: float = STEP_S

    def owns(self, labels: Mapping[str, str]) -> bool:
        pod = labels.get("pod", "")
        return labels.get("namespace") == self.namespace and pod.rsplit("-", 2)[0] == (
            self.deployment
        )


@dataclass(frozen=True)
class ObservedLoad:
    trace: Trace
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
            "duration_s": self.duration_s,
            "timeline": [{"t": t, "replicas": n} for t, n in self.actual],
        }


def read_observed_load(query: ObservedQuery) -> ObservedLoad:
    """Read the workload's counters over the window and rebuild its trace (steps above)."""
    start = query.end - query.window_s
    per_step = {name: _workload_sum(query, name, start) for name in (REQUESTS, PROMPT, GENERATION)}
    if not per_step[REQUESTS]:
        raise ObservedLoadError(
            f"Prometheus has no requests of {query.namespace}/{query.deployment} in the last "
            f"{query.window_s / 60:.0f} minutes: there is no observed load to replay. "
            "Pick a recorded trace."
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
    duration = query.end - origin
    actual = [(t - origin, n) for t, n in sorted(serving.items()) if t > origin]
    return ObservedLoad(trace, duration, query.step_s, actual)


def rebuild_trace(
    requests: Mapping[float, float],
    prompt_tokens: Mapping[float, float],
    output_tokens: Mapping[float, float],
    step_s: float,
    rng: random.Random,
    name: str,
) -> Trace:
    """Arrivals from per-step counts: each step's requests (its end time -> count) land
    uniformly inside it with the step's mean sizes; fractions carry to the next step."""
    rows: list[tuple[float, int, int]] = []
    carry = 0.0
    for end in sorted(requests):
        exact = requests[end] + carry
        count = math.floor(exact)
        carry = exact - count
        if count <= 0 or requests[end] <= 0:
            continue
        prompt = max(1, round(prompt_tokens.get(end, 0.0) / requests[end]))
        output = max(1, round(output_tokens.get(end, 0.0) / requests[end]))
        begin = max(0.0, end - step_s)
        rows += [(rng.uniform(begin, end), prompt, output) for _ in range(count)]
    rows.sort()
    return Trace(
        name=name,
        times=array("d", (r[0] for r in rows)),
        inputs=array("l", (r[1] for r in rows)),
        outputs=array("l", (r[2] for r in rows)),
    )


def _workload_sum(query: ObservedQuery, metric: str, start: float) -> dict[float, float]:
    """Per step (keyed by its end time), the counter's increase summed over the workload's
    pods. Steps with no series of the workload are absent (unknown), not zero."""
    window = f"{int(2 * query.step_s)}s"
    promql = f'increase({{__name__="{metric}"}}[{window}]) / 2'
    totals: dict[float, float] = defaultdict(float)
    for labels, points in _query_range(query, promql, start):
        if query.owns(labels):
            for t, value in points:
                if math.isfinite(value) and value >= 0:
                    totals[t] += value
    return dict(totals)


def _serving_replicas(query: ObservedQuery, start: float) -> dict[float, int]:
    counts: dict[float, int] = defaultdict(int)
    for labels, points in _query_range(query, f'{{__name__="{SERVING}"}}', start):
        if query.owns(labels):
            for t, _ in points:
                counts[t] += 1
    return dict(counts)


def _query_range(
    query: ObservedQuery, promql: str, start: float
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """One ``/api/v1/query_range`` call with explicit times and a timeout; each series'
    labels normalised as ``clusters.metrics`` does (exported_* win)."""
    params = {
        "query": promql,
        "start": f"{start:.3f}",
        "end": f"{query.end:.3f}",
        "step": f"{query.step_s:g}s",
        "timeout": f"{int(query.timeout_s * 1000)}ms",
    }
    url = f"{query.prometheus_url.rstrip('/')}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=query.timeout_s) as response:
            body = json.load(response)
    except (OSError, ValueError) as exc:  # URLError, timeouts and bad JSON
        raise ObservedLoadError(f"Could not read the observed load from Prometheus: {exc}") from exc
    if body.get("status") != "success":
        raise ObservedLoadError(f"Prometheus refused the query: {body.get('error', body)}")
    return [
        (
            dict(normalise_labels(item.get("metric", {}))),
            [(float(t), float(v)) for t, v in item.get("values", [])],
        )
        for item in body.get("data", {}).get("result", [])
    ]
