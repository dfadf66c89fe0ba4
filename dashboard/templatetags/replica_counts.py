"""Template filters for replica counts in their unit (dashboard.replicas)."""

from __future__ import annotations

from typing import Any

from django import template

from dashboard import replicas

register = template.Library()


@register.filter
def decision_counts(decision: Any) -> dict[str, str]:
    """A decision card's per-type counts and its total's unit (see dashboard.replicas)."""
    return replicas.decision_counts(decision.workload, decision.reason)


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
