"""What a policy's algorithm reads, for the callers that observe for it (the live loop, the
back-tester): which signals, and how many seconds of their history.

Both callers keep exactly this much (scaling.signals.SignalHistory), so a back-test averages
the same window the live loop does.
"""

from __future__ import annotations

from .decide import ALGORITHMS
from .guards import resolve_params
from .types import METRIC, OFFERED_WORK, PolicyParams

# An unknown algorithm holds (decide); its caller still observes the policy metric.
_UNKNOWN = frozenset({METRIC})


def reads(policy: PolicyParams | str) -> frozenset[str]:
    """The signals the policy's algorithm (or the algorithm so named) reads: METRIC,
    OFFERED_WORK, TTFT (types.py). They depend on the algorithm alone, so the loop asks by
    name before it resolves any params."""
    name = policy if isinstance(policy, str) else policy.algorithm
    algorithm = ALGORITHMS.get(name)
    return algorithm.reads if algorithm is not None else _UNKNOWN


def needs_metric(policy: PolicyParams) -> bool:
    """Whether the policy metric is the algorithm's only demand signal (not a fallback
    behind offered work), so a caller that cannot produce it cannot evaluate the policy."""
    return OFFERED_WORK not in reads(policy)


def history_s(policy: PolicyParams) -> float:
    """Seconds of signal history that can change a decision of ``policy``.

    1. Resolve the effective params as `decide` does (defaults, then `derive`).
    2. Take the algorithm's own lookback (Algorithm.history_s: its windows).
    3. At least ``max_metric_age_s``: a window with no point falls back to the latest one
       (series.window_points), which counts for as long as it is not stale.
    """
    algorithm = ALGORITHMS.get(policy.algorithm)
    if algorithm is None:
        return max(policy.max_metric_age_s, 0.0)
    params = resolve_params(policy, algorithm.defaults)
    if algorithm.derive is not None:
        params = algorithm.derive(policy, params)
    return max(algorithm.history_s(params), policy.max_metric_age_s, 0.0)
