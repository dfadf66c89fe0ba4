"""Turning steps into the plain-words reason and the outcome label.

The reason is the algorithm's own sentence ("average vllm:num_requests_running 9.2 per
replica over target 4 → 5 replicas") followed by every constraint that changed the count,
each as "<constraint>: <note> → <value>".
"""

from __future__ import annotations

from .types import Step

OUTCOMES = ("scale_up", "scale_down", "hold", "blocked_by_quota")


def replicas_text(n: float) -> str:
    """'1 replica', '3 replicas', '0.75 replicas' (floats to 3 significant digits)."""
    text = f"{n:.3g}" if isinstance(n, float) else str(n)
    return f"{text} replica" if text == "1" else f"{text} replicas"


def constraint_clauses(start: int | None, steps: tuple[Step, ...]) -> list[str]:
    """One clause per step that moved the count, in order."""
    clauses: list[str] = []
    previous = start
    for step in steps:
        if previous is not None and step.value != previous:
            clauses.append(f"{step.name}: {step.note} → {step.value}")
        previous = step.value
    return clauses


def reason(headline: str, start: int | None, steps: tuple[Step, ...]) -> str:
    return "; ".join([headline, *constraint_clauses(start, steps)])


def outcome(current: int, desired: int, quota_cut: bool) -> str:
    if quota_cut:
        return "blocked_by_quota"
    if desired > current:
        return "scale_up"
    if desired < current:
        return "scale_down"
    return "hold"
