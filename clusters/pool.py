"""The inference-pool adapter: the admin protocol of docs/pool-protocol.md over HTTP.

Only per-replica concurrency and routing go through it; replica counts are Deployment
replicas. Writes are idempotent PUTs of the whole setting.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.conf import settings

# The router strategies the protocol defines (docs/pool-protocol.md, "Routing strategies");
# a pool answers any other name with a 422.
ROUTING_STRATEGIES = ("round-robin", "least-outstanding", "shortest-expected-delay", "prefix-aware")


class PoolError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class PoolSettings:
    max_concurrency: int
    routing: str


def list_pool_settings(base_url: str) -> dict[tuple[str, str], PoolSettings]:
    """Every pool's settings in one call, keyed by (namespace, deployment)."""
    body = _request("GET", f"{base_url.rstrip('/')}/workloads")
    return {
        (item["namespace"], item["deployment"]): PoolSettings(
            int(item["max_concurrency"]), str(item["routing"])
        )
        for item in body.get("workloads", [])
    }


def set_pool_settings(base_url: str, namespace: str, deployment: str, wanted: PoolSettings) -> None:
    url = f"{base_url.rstrip('/')}/workloads/{namespace}/{deployment}"
    _request("PUT", url, {"max_concurrency": wanted.max_concurrency, "routing": wanted.routing})


def _request(method: str, url: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.POOL_TIMEOUT_S) as response:
            result: dict[str, Any] = json.loads(response.read() or b"{}")
            return result
    except urllib.error.HTTPError as exc:
        detail = exc.read(4096).decode(errors="replace")
        raise PoolError(
            f"{method} {url}: HTTP {exc.code} {detail}", transient=exc.code >= 500
        ) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PoolError(f"{method} {url}: {exc}", transient=True) from exc
