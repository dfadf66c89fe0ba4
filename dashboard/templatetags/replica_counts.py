"""Template filters for replica counts in their unit (dashboard.replicas)."""

from __future__ import annotations

from typing import Any

from django import template

from dashboard import replicas

register = template.Library()


@register.filter
def decision_counts(decision: Any) -> dict[str, str]:
    """A decision card's per-type counts and its total's unit (see dashboard.replicas)."""
    return replicas.decision_counts(decision.workload, decision.metrics)


@register.filter
def status_counts(workload: Any) -> dict[str, str] | None:
    """The workload's latest evaluation as per-type counts (None on one GPU type)."""
    if not list(workload.variants.all()):
        return None
    return replicas.status_counts(workload.public_status, workload.gpu_type.name)


@register.filter
def replica_unit(workload: Any) -> str:
    """ "L4-24GB-equivalents" for a workload on several GPU types, "" on one."""
    return replicas.unit(workload.gpu_type.name) if list(workload.variants.all()) else ""


@register.filter
def machines_ready(workload: Any) -> int | None | str:
    """A mixed pool row's Ready: the ready replicas of every type as the latest evaluation saw
    them (None before it has), "" for a workload on one GPU type (its own column value)."""
    if not list(workload.variants.all()):
        return ""
    status = workload.public_status
    return sum(t.ready for t in status.types) if status is not None and status.types else None
