"""Fault injection: API errors, hangs, a silent metrics endpoint, nonsense metric values,
failed nodes.

Set over HTTP (``POST /_faults``, ``DELETE /_faults``) or from the config's ``faults``
section. Random choices come from one seeded generator, so a test run is repeatable. Errors
and hangs may be scoped to some verbs and a path suffix (``match_methods``, ``match_path``):
"every PUT of a ``/scale`` waits 0.5 s" lands a crash in the middle of an apply, "every
PUT of a ``/scale`` answers 409" exercises the writer's conflict retries while reads work.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.config import FaultConfig

ALLOWED_CODES = (409, 429, 500, 502, 503, 504)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# What a metric value fault may say besides a number: JSON has no NaN or infinities.
SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}
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
    # Errors and hangs only for these verbs (all when empty) and paths ending so ("" = all).
    match_methods: list[str] = field(default_factory=list)
    match_path: str = ""
    # Exporter sample name -> the value every series of it shows instead of its own.
    metric_values: dict[str, float | str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if self.match_methods and method not in self.match_methods:
            return False
        return path.rstrip("/").endswith(self.match_path)


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
        _scope(body, new, errors)
        if "metric_values" in body:
            _metric_values(body["metric_values"], new, errors)
        if errors:
            raise FaultError(errors)
        self.clusters[cluster] = new
        return new

    def roll(self, cluster: str, method: str, path: str) -> tuple[str, float] | None:
        """("error", code) or ("hang", seconds) for this request, or None."""
        faults = self.clusters.get(cluster)
        if faults is None or not faults.matches(method, path):
            return None
        with self._lock:
            if faults.hang_rate and self._rng.random() < faults.hang_rate:
                return "hang", faults.hang_seconds
            if faults.error_rate and self._rng.random() < faults.error_rate:
                return "error", float(self._rng.choice(faults.error_codes))
        return None


def _scope(body: dict[str, Any], new: ClusterFaults, errors: dict[str, list[str]]) -> None:
    if "match_methods" in body:
        methods = body["match_methods"]
        if not isinstance(methods, list) or any(m not in HTTP_METHODS for m in methods):
            errors["match_methods"] = [f"must be a list from {list(HTTP_METHODS)}"]
        else:
            new.match_methods = list(methods)
    if "match_path" in body:
        path = body["match_path"]
        if not isinstance(path, str) or len(path) > 200:
            errors["match_path"] = ["must be a path suffix of at most 200 characters"]
        else:
            new.match_path = path.rstrip("/")


def _metric_values(raw: Any, new: ClusterFaults, errors: dict[str, list[str]]) -> None:
    """Merge ``{sample name: value}``; a value of null restores the series' own values."""
    if not isinstance(raw, dict):
        errors["metric_values"] = ["must be an object of sample name to value"]
        return
    merged = dict(new.metric_values)
    for name, value in raw.items():
        if not name or not all(c.isalnum() or c in "_:" for c in name):
            errors.setdefault("metric_values", []).append(f"{name!r} is not a sample name")
        elif value is None:
            merged.pop(name, None)
        elif isinstance(value, bool) or not (
            isinstance(value, int | float) or value in SPECIAL_VALUES
        ):
            message = f"{name}: must be a number or one of {sorted(SPECIAL_VALUES)}"
            errors.setdefault("metric_values", []).append(message)
        else:
            merged[name] = value
    new.metric_values = merged


def override_samples(text: str, values: dict[str, float | str]) -> str:
    """``text`` (exposition format) with every sample named in ``values`` showing that value:
    as an exporter with a bug, a counter that wrapped or a pod that restarted would."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in values:
            value = values[name]
            number = SPECIAL_VALUES[value] if isinstance(value, str) else float(value)
            shown = "NaN" if math.isnan(number) else _number(number)
            lines[i] = f"{line.rpartition(' ')[0]} {shown}"
    return "\n".join(lines)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


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
