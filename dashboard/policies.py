"""Policies as the dashboard draws and edits them: the threshold lines, quota usage, and the
versioned save (a save based on an old version is a conflict, never an overwrite)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from dashboard.frames import TenantUsage
from dashboard.live import PolicyView, TypeRef, WorkloadRef, thresholds
from history.models import record_change, snapshot
from quotas.models import Quota
from scaling.engine import ALGORITHMS
from scaling.models import ScalingPolicy, Workload
from scaling.tasks import request_reconcile


def policy_view(policy: ScalingPolicy) -> PolicyView:
    """Target and tolerance band; empty tolerances take the algorithm's documented default."""
    defaults = ALGORITHMS[policy.algorithm].defaults if policy.algorithm in ALGORITHMS else {}
    up = policy.scale_up_tolerance
    down = policy.scale_down_tolerance
    upper: float | None = None
    lower: float | None = None
    if policy.target is not None:  # predictive and slo may have none: no lines to draw
        upper, lower = thresholds(
            policy.target,
            up if up is not None else float(defaults.get("scale_up_tolerance", 0.0)),
            down if down is not None else float(defaults.get("scale_down_tolerance", 0.0)),
        )
    return PolicyView(
        version=policy.version,
        algorithm=policy.algorithm,
        mode=policy.mode,
        metric=policy.metric,
        aggregation=policy.aggregation,
        target=policy.target,
        upper=upper,
        lower=lower,
        min_replicas=policy.min_replicas,
        max_replicas=policy.max_replicas,
    )


def tolerance_defaults() -> dict[str, dict[str, float]]:
    """Each algorithm's default tolerances, for the editor to move the lines as it types
    (the same defaults ``policy_view`` fills an empty tolerance with)."""
    return {
        name: {
            "up": float(algorithm.defaults.get("scale_up_tolerance", 0.0)),
            "down": float(algorithm.defaults.get("scale_down_tolerance", 0.0)),
        }
        for name, algorithm in ALGORITHMS.items()
    }


def workload_ref(workload: Workload) -> WorkloadRef:
    policy = workload.policy_or_none
    return WorkloadRef(
        id=workload.pk,
        tenant_id=workload.tenant_id,
        cluster_id=workload.cluster_id,
        namespace=workload.namespace,
        deployment=workload.deployment,
        gpus_per_replica=workload.gpus_per_replica,
        policy=policy_view(policy) if policy is not None else None,
        types=type_refs(workload),
        mix=status.mix if (status := workload.public_status) is not None else "",
    )


def type_refs(workload: Workload) -> tuple[TypeRef, ...]:
    """A workload on several GPU types: the primary, then each variant, with what the loop's
    latest evaluation set for each (none without variants; load them with prefetch_related)."""
    variants = list(workload.variants.all())
    if not variants:
        return ()
    status = workload.public_status
    seen = {t.gpu_type: t for t in status.types} if status is not None else {}
    pairs = [(workload.gpu_type.name, workload.deployment)]
    pairs += [(v.gpu_type.name, v.deployment) for v in variants]
    return tuple(
        TypeRef(
            name,
            deployment,
            seen[name].desired if name in seen else None,
            seen[name].warning if name in seen else "",
        )
        for name, deployment in pairs
    )


def usage(workloads: Iterable[Workload], tenant_ids: Iterable[int] | None = None) -> list[Any]:
    """Per tenant and GPU type: nominal and borrowing limit against GPUs held now."""
    held: dict[tuple[int, int], int] = {}
    for w in workloads:
        for gpu_type, gpus in w.gpus_by_type.items():  # a mixed workload: each type its own
            held[(w.tenant_id, gpu_type)] = held.get((w.tenant_id, gpu_type), 0) + gpus
    quotas = Quota.objects.select_related("tenant", "tenant__parent", "gpu_type")
    if tenant_ids is not None:
        quotas = quotas.filter(tenant_id__in=list(tenant_ids))
    return [
        TenantUsage(
            tenant_id=q.tenant_id,
            tenant=q.tenant.slug,
            gpu_type=q.gpu_type.name,
            nominal=q.nominal,
            borrowing_limit=q.borrowing_limit,
            used=held.get((q.tenant_id, q.gpu_type_id), 0),
            ceiling=q.as_limit().ceiling,
            over_since=q.over_since.timestamp() if q.over_since else None,
            reclaim_grace_s=q.reclaim_grace_s,
        )
        for q in quotas
    ]


@dataclass(frozen=True)
class Conflict:
    """The stored policy moved on since the editor loaded it: what differs, field by field."""

    stored_version: int
    changed: dict[str, tuple[Any, Any]]  # field -> (what the editor loaded, what is stored)


def save_policy(
    policy: ScalingPolicy,
    loaded_version: int,
    loaded: dict[str, Any],
    user: Any,
    reason: str,
) -> Conflict | None:
    """Save an edited policy unless someone saved since ``loaded_version``.

    ``policy`` carries the edits (already validated); ``loaded`` holds the edited fields as
    the editor showed them, to tell the user what the other save changed. The version check,
    the save and the history record share one transaction with the row locked, so two saves
    cannot both pass the check; the reconcile is queued for after the commit.
    """
    with transaction.atomic():
        stored = ScalingPolicy.objects.select_for_update().get(pk=policy.pk)
        if stored.version != loaded_version:
            now = snapshot(stored)
            changed = {k: (v, now.get(k)) for k, v in loaded.items() if v != now.get(k)}
            return Conflict(stored.version, changed)
        before = snapshot(stored)
        policy.save()
        record_change(policy, before, user, reason or "edited in the dashboard")
        request_reconcile(policy.workload)
    return None
