"""How a workload's replica counts read on the dashboard (docs/dashboard.md, "Replica counts
of a mixed pool").

A workload on several GPU types is decided in replicas of its primary type, each other type
weighted by the work one of its replicas does beside a primary one (scaling.variants). Shown
bare, such a total misleads: 2 L4s and an A100 may read "24 → 8". So wherever a mixed pool's
counts appear, the per-type counts lead ("2 x L4-24GB → 1 x A100-80GB + 2 x A40-48GB", drawn
with a multiplication sign) and the
policy's total follows with its unit ("24 → 8 L4-24GB-equivalents"). A workload on one GPU
type reads as before: its counts are plain replicas.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scaling.status import TypeStatus, WorkloadStatus

TIMES = " \u00d7 "  # the multiplication sign, as the templates write a GPU count


def unit(primary: str) -> str:
    """The unit of a mixed pool's policy total: replicas of its primary type."""
    return f"{primary}-equivalents"


def counts_text(counts: Iterable[tuple[str, int]]) -> str:
    """ "1 x A100-80GB + 2 x A40-48GB" (with TIMES); types at 0 are left out, none at all is
    "0 replicas"."""
    return " + ".join(f"{n}{TIMES}{name}" for name, n in counts if n) or "0 replicas"


def decision_counts(workload: Any, metrics: Any) -> dict[str, str]:
    """What a decision card shows beside its total: ``unit`` (empty for a workload on one GPU
    type, whose totals are plain replicas) and ``wanted``, the per-type counts it set, as the
    loop recorded them (``Decision.metrics["types"]``, scaling.status.TypeStatus; empty for a
    decision recorded before they were). ``workload`` needs its ``gpu_type`` and ``variants``
    loaded (select/prefetch_related)."""
    if not list(workload.variants.all()):
        return {"unit": "", "wanted": ""}
    types = metrics.get("types") if isinstance(metrics, dict) else None
    wanted = [TypeStatus.from_dict(t) for t in types] if isinstance(types, list) else []
    return {
        "unit": unit(workload.gpu_type.name),
        "wanted": counts_text((t.gpu_type, t.desired) for t in wanted) if wanted else "",
    }


def status_counts(status: WorkloadStatus | None, primary: str) -> dict[str, str] | None:
    """A mixed pool's latest evaluation as per-type counts, current → desired (None without
    per-type counts: a workload on one GPU type, or not evaluated on its types yet)."""
    if status is None or not status.types:
        return None
    return {
        "current": counts_text((t.gpu_type, t.current_or_ready) for t in status.types),
        "desired": counts_text((t.gpu_type, t.desired) for t in status.types),
        "unit": unit(primary),
    }
