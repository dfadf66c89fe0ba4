"""Fault injection: API errors, hangs, a silent metrics endpoint, failed nodes.

Set over HTTP (``POST /_faults``, ``DELETE /_faults``) or from the config's ``faults``
section. Random choices come from one seeded generator, so a test run is repeatable.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.config import FaultConfig

ALLOWED_CODES = (409, 429, 500, 502, 503, 504)
_REASONS = {
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class ClusterFaults:
    error_rate: float = 0.0
    error_codes: list[int] = field(default_factory=lambda: [500])
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    metrics_down: bool = False
    failed_nodes: list[str] = field(default_factory=list)


class FaultError(ValueError):
    """A fault request that does not validate; ``errors`` maps field to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("invalid fault settings")
        self.errors = errors


class Faults:
    """Per-cluster fault settings and the dice that apply them."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.clusters: dict[str, ClusterFaults] = {}

    def load(self, cluster: str, config: FaultConfig) -> None:
        self.clusters[cluster] = ClusterFaults(
            config.error_rate,
            list(config.error_codes),
            config.hang_rate,
            config.hang_seconds,
            config.metrics_down,
            list(config.failed_nodes),
        )

    def get(self, cluster: str) -> ClusterFaults:
        return self.clusters.setdefault(cluster, ClusterFaults())

    def update(self, cluster: str, body: dict[str, Any]) -> ClusterFaults:
        """Merge ``body`` into the cluster's settings after validating all of it."""
        errors: dict[str, list[str]] = {}
        current = self.get(cluster)
        new = ClusterFaults(**asdict(current))
        for key in ("error_rate", "hang_rate"):
            if key in body:
                value = body[key]
                if not isinstance(value, int | float) or not 0 <= value <= 1:
                    errors[key] = ["must be a number from 0 to 1"]
                else:
                    setattr(new, key, float(value))
        if "hang_seconds" in body:
            value = body["hang_seconds"]
            if not isinstance(value, int | float) or not 0 <= value <= 600:
                errors["hang_seconds"] = ["must be a number of seconds from 0 to 600"]
            else:
                new.hang_seconds = float(value)
        if "error_codes" in body:
            codes = body["error_codes"]
            if (
                not isinstance(codes, list)
                or not codes
                or any(c not in ALLOWED_CODES for c in codes)
            ):
                errors["error_codes"] = [f"must be a non-empty list from {list(ALLOWED_CODES)}"]
            else:
                new.error_codes = list(codes)
        if "metrics_down" in body:
            new.metrics_down = bool(body["metrics_down"])
        if errors:
            raise FaultError(errors)
        self.clusters[cluster] = new
        return new

    def roll(self, cluster: str) -> tuple[str, float] | None:
        """("error", code) or ("hang", seconds) for this request, or None."""
        faults = self.clusters.get(cluster)
        if faults is None:
            return None
        with self._lock:
            if faults.hang_rate and self._rng.random() < faults.hang_rate:
                return "hang", faults.hang_seconds
            if faults.error_rate and self._rng.random() < faults.error_rate:
                return "error", float(self._rng.choice(faults.error_codes))
        return None


def injected_status(code: int) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"injected fault: HTTP {code}",
        "reason": _REASONS.get(code, "InternalError"),
        "details": {"causes": [{"reason": "InjectedFault", "message": "simulator fault"}]},
        "code": code,
    }
