"""Turning steps into the plain-words reason and the outcome label.

The reason leads with what decided the count. With no constraint changing it, that is the
algorithm's own sentence ("average vllm:num_requests_running 9.2 per replica over target 4
→ 5 replicas"). When a constraint changed it (stabilisation, a rate limit, min/max, the
quota, a reclaim), the last one to do so decided, so it comes first and the algorithm's
sentence follows as what was wanted: "rate limit: scale-up policy allows ... → 5 replicas
(wanted 12 replicas: average ... → 12 replicas; stabilisation: ... → 10)". An operator
reads the first clause and knows why; the rest is the trail.
"""

from __future__ import annotations

from .types import Step

OUTCOMES = ("scale_up", "scale_down", "hold", "blocked_by_quota")


def replicas_text(n: float) -> str:
    """'1 replica', '3 replicas', '0.75 replicas' (floats to 3 significant digits)."""
    text = f"{n:.3g}" if isinstance(n, float) else str(n)
    return f"{text} replica" if text == "1" else f"{text} replicas"


def duration_text(seconds: float) -> str:
    """'45 s', '5 min', '2 h': the unit an operator would say."""
    if seconds >= 7200 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:g} s"


def moves(start: int | None, steps: tuple[Step, ...]) -> list[Step]:
    """The steps that moved the count, in order."""
    moved: list[Step] = []
    previous = start
    for step in steps:
        if previous is not None and step.value != previous:
            moved.append(step)
        previous = step.value
    return moved


def clause(step: Step) -> str:
    return f"{step.name}: {step.note} → {step.value}"


def reason(headline: str, start: int | None, steps: tuple[Step, ...]) -> str:
    """What decided first; see the module docstring."""
    moved = moves(start, steps)
    if not moved or start is None:
        return headline
    decider = moved[-1]
    wanted = "; ".join([headline, *(clause(step) for step in moved[:-1])])
    return (
        f"{decider.name}: {decider.note} → {replicas_text(decider.value)} "
        f"(wanted {replicas_text(start)}: {wanted})"
    )


def outcome(current: int, desired: int, quota_cut: bool) -> str:
    if quota_cut:
        return "blocked_by_quota"
    if desired > current:
        return "scale_up"
    if desired < current:
        return "scale_down"
    return "hold"
