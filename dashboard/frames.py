"""The JSON frames the live streams send (docs/dashboard.md lists them).

Every frame has ``type`` (snapshot, delta, decision, stale), ``t`` (the tick the values belong
to) and ``sent_at`` (when the server published it; the benchmark measures delay from it), both
Unix seconds. A frame is serialised once per tick and audience, never once per socket.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dashboard import replicas
from dashboard.live import GpuCell, WorkloadLive


@dataclass(frozen=True)
class TenantUsage:
    """One tenant's GPUs of one type: its quota and what its workloads hold now."""

    tenant_id: int
    tenant: str
    gpu_type: str
    nominal: int
    borrowing_limit: int | None
    used: int
    ceiling: int | None  # the most it may hold (quota maths' TenantQuota.ceiling); None: no cap
    over_since: float | None = None  # the reclaim grace clock (Quota.over_since), Unix seconds
    reclaim_grace_s: int | None = None  # None: an excess is never reclaimed

    @property
    def borrowed(self) -> int:
        return max(0, self.used - self.nominal)

    @property
    def over(self) -> int:
        """GPUs held over the ceiling (a lowered quota); 0 when within it or uncapped."""
        return max(0, self.used - self.ceiling) if self.ceiling is not None else 0

    @property
    def reclaim_at(self) -> datetime | None:
        """When the excess is reclaimed, if it will be and the clock has started."""
        if not self.over or self.over_since is None or self.reclaim_grace_s is None:
            return None
        return datetime.fromtimestamp(self.over_since + self.reclaim_grace_s, UTC)

    def as_dict(self) -> dict[str, Any]:
        body = {k: v for k, v in self.__dict__.items() if k != "tenant_id"}
        return {**body, "borrowed": self.borrowed, "over": self.over}


def dumps(frame_type: str, t: float, **body: Any) -> str:
    return json.dumps(
        {"type": frame_type, "t": round(t, 3), "sent_at": round(time.time(), 4), **body},
        separators=(",", ":"),
        allow_nan=False,  # NaN is not JSON; live.py already turned it into None
    )


def decision_dict(decision: Any) -> dict[str, Any]:
    """A Decision as the timeline draws it (steps are {name, value, note}); ``unit`` and
    ``wanted``: a mixed pool's counts as dashboard.replicas words them (empty otherwise)."""
    workload = decision.workload
    return {
        **replicas.decision_counts(workload, decision.metrics),
        "id": decision.pk,
        "workload": decision.workload_id,
        "workload_name": f"{workload.namespace}/{workload.deployment}",
        "tenant_id": workload.tenant_id,
        "at": decision.at.timestamp(),
        "algorithm": decision.algorithm,
        "outcome": decision.outcome,
        "outcome_label": decision.get_outcome_display(),  # as _decisions.html shows it
        "current": decision.current_replicas,
        "raw": decision.raw_desired_replicas,
        "final": decision.final_replicas,
        "policy_version": decision.policy_version,
        "reason": decision.reason,
        "steps": decision.steps,
    }


def workload_delta(live: WorkloadLive) -> str:
    policy = live.ref.policy.as_dict() if live.ref.policy else None
    point = live.point
    return dumps(
        "delta",
        point.get("t", 0.0),
        workload=live.ref.id,
        values=point.get("values", {}),
        stale=point.get("stale", []),
        policy=policy,
        types=live.types,
        mix=live.ref.mix,
    )


def layout_of(cells: Iterable[GpuCell]) -> list[tuple[str, str, str, str]]:
    """Which GPU each column of a fleet frame describes: (cluster, host, gpu, model)."""
    return [(c.cluster, c.host, c.gpu, c.model) for c in cells]


def layout_id(layout: list[tuple[str, str, str, str]]) -> str:
    return hashlib.sha1(json.dumps(layout).encode()).hexdigest()[:12]


def cell_columns(cells: list[GpuCell], visible: frozenset[int] | None) -> dict[str, list[Any]]:
    """The heatmap as columns aligned with the layout (a delta carries only these: ~1.5 kB
    for 64 GPUs instead of ~9 kB of objects). A GPU held by a tenant the viewer may not see
    shows only as taken: no value, no workload."""

    def hidden(cell: GpuCell) -> bool:
        return cell.tenant_id is not None and visible is not None and cell.tenant_id not in visible

    masked = [hidden(c) for c in cells]
    return {
        "util": [None if m else c.util for c, m in zip(cells, masked, strict=True)],
        "memory_mib": [None if m else c.memory_mib for c, m in zip(cells, masked, strict=True)],
        "state": ["other" if m else c.state for c, m in zip(cells, masked, strict=True)],
        "workload": [None if m else c.workload_id for c, m in zip(cells, masked, strict=True)],
    }


def totals(cells: Iterable[GpuCell]) -> dict[str, Any]:
    """Busy, warming and idle GPUs overall and per cluster and GPU model (counts only, so
    every viewer may see them)."""
    overall = {"busy": 0, "warming": 0, "idle": 0, "stale": 0}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in cells:
        overall[cell.state] += 1
        group = groups.setdefault(
            (cell.cluster, cell.model),
            {"cluster": cell.cluster, "model": cell.model, "total": 0, **dict.fromkeys(overall, 0)},
        )
        group["total"] += 1
        group[cell.state] += 1
    return {"overall": overall, "groups": [groups[key] for key in sorted(groups)]}


def fleet_body(
    cells: list[GpuCell],
    visible: frozenset[int] | None,
    usage: Iterable[TenantUsage],
    workloads: Mapping[int, WorkloadLive],
    stale: list[str],
    with_layout: bool,
) -> dict[str, Any]:
    """A fleet snapshot or delta body. The layout goes out with every snapshot and with a
    delta only when the set of GPUs changed; a client holding another ``layout_id`` asks for a
    fresh snapshot by reconnecting."""

    def sees(tenant_id: int) -> bool:
        return visible is None or tenant_id in visible

    layout = layout_of(cells)
    return {
        "layout_id": layout_id(layout),
        **({"layout": layout} if with_layout else {}),
        **cell_columns(cells, visible),
        "totals": totals(cells),
        "usage": [u.as_dict() for u in usage if sees(u.tenant_id)],
        "workloads": [
            {"id": wid, **_summary(live)}
            for wid, live in sorted(workloads.items())
            if sees(live.ref.tenant_id)
        ],
        "stale": stale,
    }


def _summary(live: WorkloadLive) -> dict[str, Any]:
    values = live.point.get("values", {})
    summary = {key: values.get(key) for key in ("ready", "warming", "metric", "queue", "ttft_p95")}
    if not live.types:
        return summary
    return summary | live.machines() | {"types": live.types}
