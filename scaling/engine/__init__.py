"""The decision engine: pure scaling maths shared by the control loop, the back-tester and
the UI's what-if preview. No Django, no I/O, no clock: time arrives in `Observation.now`.

Entry point::

    decide(policy: PolicyParams, obs: Observation, memory: Memory | None = None,
           quota: QuotaHeadroom | None = None) -> Decision

Inputs
    PolicyParams  the stored ScalingPolicy, field for field; None means the algorithm's
                  documented default (each algorithm module's DEFAULTS). `aggregation` says
                  whether the metric is per replica ("average") or for the pool ("total").
    Observation   `now`, `current` (spec replicas), `ready`, `warming`, optional `pods`
                  (PodState) and per-pod `samples` (PodSample) of the policy metric, the
                  metric `series` [(t, value), ...], offered-work series
                  (`prompt_tokens_per_s`, `generation_tokens_per_s`, `request_rate`),
                  `ttft_p95_s`, and `capacity` (ReplicaCapacity) for predictive.
    Memory        what algorithms remember between ticks; `to_dict()` / `from_dict()`; pass
                  back `decision.memory` next tick. Bounded: pruned to the longest window.
    QuotaHeadroom the quota allocation's grant, or None: how many more replicas it allows
                  (`replicas`, `detail`), or a reclaim down to `reclaim_to`.

Output
    Decision      `desired` (final), `raw_desired`, `steps` (Step: name, value, note) in the
                  order applied, `outcome` (scale_up | scale_down | hold | blocked_by_quota),
                  `reason` in plain words, `metric_values` used, `memory`, `algorithm`,
                  `effective` parameter values, `to_dict()`.

`note_outage(memory, now)` marks a tick the loop could not observe: clocks stop, and the
first fresh observation after it starts a recovery window with no scale-down.

`history_s(policy)` is how many seconds of signal history the policy's algorithm reads and
`reads(policy)` which signals (METRIC, OFFERED_WORK, TTFT); the live loop and the back-tester
keep and produce exactly those (scaling.signals).

Algorithms live in ALGORITHMS (name -> Algorithm): hpa, kpa, apa, predictive, slo.
"""

from .decide import ALGORITHMS, decide
from .freshness import note_outage
from .inputs import history_s, needs_metric, reads
from .types import (
    METRIC,
    OFFERED_WORK,
    TTFT,
    Algorithm,
    Decision,
    Memory,
    MetricValue,
    Observation,
    PodSample,
    PodState,
    PolicyParams,
    QuotaHeadroom,
    ReplicaCapacity,
    Step,
)

__all__ = [
    "ALGORITHMS",
    "METRIC",
    "OFFERED_WORK",
    "TTFT",
    "Algorithm",
    "Decision",
    "Memory",
    "MetricValue",
    "Observation",
    "PodSample",
    "PodState",
    "PolicyParams",
    "QuotaHeadroom",
    "ReplicaCapacity",
    "Step",
    "decide",
    "history_s",
    "needs_metric",
    "note_outage",
    "reads",
]
