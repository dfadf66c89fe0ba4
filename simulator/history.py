"""What the simulator was asked and what it changed: the record a fault test reads back.

Two logs, numbered by one sequence so ``GET /_history?since=N`` returns everything after
entry N of both:

- ``requests``: every request to a cluster (Kubernetes API, pool, metrics), logged when it
  arrives (before any injected hang or error) and completed with the status it got. A test
  counts retries here, and lands a kill while a write is in flight.
- ``scales``: every change of a Deployment's ``spec.replicas`` by any API write (the
  ``/scale`` subresource, a PATCH or PUT of the Deployment, a creation or deletion), with the
  value before and after. A test checks from it that no Deployment ever went above a bound.

Both are bounded (``LIMIT`` entries each; the oldest go first and ``dropped`` counts them), so a
simulator left running for days does not grow without end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

LIMIT = 20_000


class History:
    def __init__(self, limit: int = LIMIT) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self.requests: deque[dict[str, Any]] = deque(maxlen=limit)
        self.scales: deque[dict[str, Any]] = deque(maxlen=limit)
        self.dropped = {"requests": 0, "scales": 0}

    def _append(self, log: str, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "at": time.time(), **entry}
            entries = self.requests if log == "requests" else self.scales
            if len(entries) == entries.maxlen:
                self.dropped[log] += 1
            entries.append(entry)
            return entry

    def request(self, cluster: str, method: str, path: str) -> dict[str, Any]:
        """Log an arriving request; the caller sets ``status`` on the entry once answered."""
        return self._append(
            "requests", {"cluster": cluster, "method": method, "path": path, "status": None}
        )

    def scaled(
        self,
        cluster: str,
        deployment: tuple[str, str],
        before: int | None,
        after: int | None,
        via: str,
    ) -> None:
        namespace, name = deployment
        self._append(
            "scales",
            {
                "cluster": cluster,
                "namespace": namespace,
                "name": name,
                "from": before,
                "to": after,
                "via": via,
            },
        )

    def since(self, seq: int) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": [dict(e) for e in self.requests if e["seq"] > seq],
                "scales": [dict(e) for e in self.scales if e["seq"] > seq],
                "last": self._seq,
                "dropped": dict(self.dropped),
            }

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.scales.clear()
            self.dropped = {"requests": 0, "scales": 0}
