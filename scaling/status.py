"""A workload's public status: the latest evaluation of its policy, as operators and clients
see it (the API's ``status``, the dashboard's status panel).

It is stored in ``Workload.status`` (JSON written by ``to_dict`` and read back by
``from_dict``, here and only here). What the control loop keeps for itself between ticks
(engine memory, signal history, counters, the decision key, the quota allocation's clocks)
lives in ``Workload.loop_state`` and is never served: see LOOP_STATE_KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the back-test imports this module without Django set up
    from clusters.kubernetes import DeploymentState

# The keys of Workload.loop_state. Kept here, next to what is public, so the two stay apart.
LOOP_STATE_KEYS = (
    "memory",
    "history",
    "counters",
    "key",
    "wanted",
    "grown_at",
    "waiting_since",
    "signals",  # the open chunk of the signal history (scaling.signal_store)
)


@dataclass(frozen=True)
class StatusStep:
    """One constraint of the engine's explanation, with the replica count after it."""

    name: str
    value: int
    note: str = ""


@dataclass(frozen=True)
class MetricValue:
    """A metric value the engine used; ``value`` is text for NaN and infinities (JSON has
    none), as Prometheus writes them."""

    label: str
    value: float | str
    timestamp: float | None = None
    pod: str | None = None


@dataclass(frozen=True)
class ErrorIncident:
    """One failing cause (its kind and the failing call) while it lasts: when it started, how
    many ticks it failed, and the last of them."""

    cause: tuple[str, ...]
    count: int
    since: datetime
    last_at: datetime


@dataclass(frozen=True)
class Infeasible:
    """Requests that finished in the last ``window_s`` with a prompt too long for any
    replica to prefill within ``ttft_s`` (the back-test's feasibility rule,
    scaling.backtest.slo): ``requests`` of ``total``, "at least" when the prompt-length
    histogram cannot say exactly. They are shown, not scaled for. ``text`` is the sentence.
    """

    requests: int
    total: int
    at_least: bool
    window_s: float
    ttft_s: float
    limit_tokens: int
    text: str

    @property
    def window(self) -> str:
        """``window_s`` as the page says it: "45 s", "10 min"."""
        if self.window_s < 90:
            return f"{self.window_s:.0f} s"
        return f"{self.window_s / 60:.0f} min"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "total": self.total,
            "at_least": self.at_least,
            "window_s": self.window_s,
            "ttft_s": self.ttft_s,
            "limit_tokens": self.limit_tokens,
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Infeasible | None:
        if not isinstance(data, dict):
            return None
        return cls(
            requests=int(data["requests"]),
            total=int(data["total"]),
            at_least=bool(data["at_least"]),
            window_s=float(data["window_s"]),
            ttft_s=float(data["ttft_s"]),
            limit_tokens=int(data["limit_tokens"]),
            text=str(data["text"]),
        )


@dataclass(frozen=True)
class TypeStatus:
    """One GPU type of a workload on several (scaling.variants), the primary first: its
    Deployment's ``ready`` replicas as observed, its ``current`` replicas (its spec, as
    observed; None in statuses written before it was recorded) and the ``desired`` count the
    mix set for it this tick (after any quota cut): plain replicas of that type, unlike the
    status's totals (in primary-type replicas). ``warning``: the Deployment's pods are not
    pinned to the type's nodes, so they may run on (and be counted as) another GPU type."""

    gpu_type: str
    deployment: str
    ready: int
    desired: int
    warning: str = ""
    current: int | None = None

    @classmethod
    def of(
        cls, gpu_type: str, node_label: str, deployment: DeploymentState, desired: int
    ) -> TypeStatus:
        warning = deployment.pin_warning(gpu_type, node_label)
        ready, spec = deployment.ready_replicas, deployment.spec_replicas
        return cls(gpu_type, deployment.name, ready, desired, warning, spec)

    @property
    def current_or_ready(self) -> int:
        return self.current if self.current is not None else self.ready

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu_type": self.gpu_type,
            "deployment": self.deployment,
            "ready": self.ready,
            "current": self.current,
            "desired": self.desired,
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TypeStatus:
        return cls(
            gpu_type=str(data["gpu_type"]),
            deployment=str(data["deployment"]),
            ready=int(data["ready"]),
            desired=int(data["desired"]),
            warning=str(data.get("warning", "")),
            current=None if data.get("current") is None else int(data["current"]),
        )


@dataclass(frozen=True)
class WorkloadStatus:
    """The latest evaluation of a workload's policy.

    ``outcome`` is a Decision outcome (``applied``, ``held``, ``dry-run``,
    ``blocked_by_quota``, ``error``) or ``off`` when no policy is active. ``current`` is the
    Deployment's replicas as observed, ``raw_desired`` what the algorithm asked for and
    ``desired`` what was left after ``steps``. ``failure`` is the Deployment's own failure
    condition (e.g. pods refused by a ResourceQuota); ``error`` the ongoing incident when the
    workload cannot be observed. ``observed_at`` is when the Deployment was last observed.
    ``since`` is when this outcome began (the Decision that recorded it) and ``evaluations``
    how many ticks have repeated it: "held at 8 since 07:30, 46 evaluations".
    ``infeasible``: the requests too long for the TTFT objective in the last 10 minutes
    (None: not counted; policies that read offered work count them).
    ``types``: a workload on several GPU types, each type's Deployment (empty otherwise), and
    ``mix`` the line that explains the mix chosen for the policy's total.
    """

    at: datetime
    outcome: str
    reason: str
    policy_version: int | None = None
    algorithm: str = ""
    current: int | None = None
    raw_desired: int | None = None
    desired: int | None = None
    steps: tuple[StatusStep, ...] = ()
    metrics: tuple[MetricValue, ...] = ()
    failure: str = ""
    error: ErrorIncident | None = None
    observed_at: datetime | None = None
    since: datetime | None = None
    evaluations: int = 0
    infeasible: Infeasible | None = None
    types: tuple[TypeStatus, ...] = ()
    mix: str = ""

    @property
    def type_warnings(self) -> list[str]:
        return [t.warning for t in self.types if t.warning]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "outcome": self.outcome,
            "reason": self.reason,
            "policy_version": self.policy_version,
            "algorithm": self.algorithm,
            "current": self.current,
            "raw_desired": self.raw_desired,
            "desired": self.desired,
            "steps": [{"name": s.name, "value": s.value, "note": s.note} for s in self.steps],
            "metrics": [
                {"label": m.label, "value": m.value, "timestamp": m.timestamp, "pod": m.pod}
                for m in self.metrics
            ],
            "failure": self.failure,
            "error": None
            if self.error is None
            else {
                "cause": list(self.error.cause),
                "count": self.error.count,
                "since": self.error.since.isoformat(),
                "last_at": self.error.last_at.isoformat(),
            },
            "observed_at": None if self.observed_at is None else self.observed_at.isoformat(),
            "since": None if self.since is None else self.since.isoformat(),
            "evaluations": self.evaluations,
            "infeasible": None if self.infeasible is None else self.infeasible.to_dict(),
            "types": [t.to_dict() for t in self.types],
            "mix": self.mix,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WorkloadStatus | None:
        """The stored status, or None for a workload the loop has not evaluated yet."""
        if not data or "at" not in data or "outcome" not in data:
            return None
        error = data.get("error")
        observed_at, since = data.get("observed_at"), data.get("since")
        return cls(
            at=datetime.fromisoformat(data["at"]),
            outcome=str(data["outcome"]),
            reason=str(data.get("reason", "")),
            policy_version=data.get("policy_version"),
            algorithm=str(data.get("algorithm", "")),
            current=data.get("current"),
            raw_desired=data.get("raw_desired"),
            desired=data.get("desired"),
            steps=tuple(
                StatusStep(s["name"], s["value"], s.get("note", "")) for s in data.get("steps", [])
            ),
            metrics=tuple(
                MetricValue(m["label"], m["value"], m.get("timestamp"), m.get("pod"))
                for m in data.get("metrics", [])
            ),
            failure=str(data.get("failure", "")),
            error=None
            if not isinstance(error, dict)
            else ErrorIncident(
                cause=tuple(error["cause"]),
                count=int(error["count"]),
                since=datetime.fromisoformat(error["since"]),
                last_at=datetime.fromisoformat(error["last_at"]),
            ),
            observed_at=datetime.fromisoformat(observed_at) if observed_at else None,
            since=datetime.fromisoformat(since) if since else None,
            evaluations=int(data.get("evaluations", 0)),
            infeasible=Infeasible.from_dict(data.get("infeasible")),
            types=tuple(TypeStatus.from_dict(t) for t in data.get("types") or []),
            mix=str(data.get("mix", "")),
        )
