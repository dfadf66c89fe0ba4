"""The fault campaign's shared pieces: a simulated cluster with two tenants' Deployments, their
registration, and the simulator's fault and history endpoints (docs/simulator.md)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BUSY = {"kind": "constant", "rate_rps": 20.0, "input_mean": 300, "output_mean": 200}


def deployment(namespace: str, name: str, replicas: int = 1, load: Any = None) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "model": MODEL,
        "gpu_type": "A100-80GB",
        "replicas": replicas,
        "cold_start_s": 2.0,
        "load": load or BUSY,
    }


def fleet(*deployments: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": [
            {
                "name": "east",
                "nodes": [{"gpu_type": "A100-80GB", "count": 2, "gpus_per_node": 8}],
                "workloads": list(deployments),
            }
        ]
    }


def register(
    url: str, tenant: Any, name: str, gpu_type: Any, using: str = "default", **policy: Any
) -> Any:
    """The tenant's Workload ``name`` in its own namespace on cluster east, with an hpa policy
    in enforce mode (``policy`` overrides fields). ``using`` names the database alias."""
    from clusters.models import Cluster
    from scaling.models import ScalingPolicy, Workload

    base = f"{url}/east"
    cluster, _ = Cluster.objects.using(using).get_or_create(
        name="east",
        defaults={"api_url": base, "metrics_source": "exporter", "metrics_url": f"{base}/metrics"},
    )
    workload = Workload.objects.db_manager(using).create(
        tenant=tenant,
        cluster=cluster,
        namespace=tenant.slug,
        deployment=name,
        model_name=MODEL,
        gpu_type=gpu_type,
        gpus_per_replica=1,
    )
    fields = {
        "algorithm": "hpa",
        "metric": "vllm:num_requests_running",
        "target": 8,
        "min_replicas": 1,
        "max_replicas": 4,
        "mode": "enforce",
    } | policy
    ScalingPolicy.objects.db_manager(using).create(workload=workload, **fields)
    return workload


def call(url: str, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method=method)
    request.add_header("Content-Type", content_type or "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def set_faults(url: str, **faults: Any) -> None:
    call(url, "POST", "/_faults", {"cluster": "east", **faults})


def clear_faults(url: str) -> None:
    call(url, "DELETE", "/_faults")


def history(url: str, since: int = 0) -> dict[str, Any]:
    return call(url, "GET", f"/_history?since={since}")


def spec_replicas(url: str, namespace: str, name: str) -> int:
    path = f"/east/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    return int(call(url, "GET", path)["spec"]["replicas"])


def scale_by_hand(url: str, namespace: str, name: str, replicas: int) -> None:
    """What ``kubectl edit`` would do: a merge PATCH of the Deployment itself (not of its
    ``/scale``, so a fault scoped to ``/scale`` does not touch it)."""
    path = f"/east/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    call(url, "PATCH", path, {"spec": {"replicas": replicas}}, "application/merge-patch+json")


def loop_writes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The replica changes made through ``/scale`` (the control loop's writes)."""
    return [e for e in entries if e["via"].endswith("/scale")]


def scale_puts(entries: list[dict[str, Any]]) -> int:
    return sum(1 for e in entries if e["method"] == "PUT" and e["path"].endswith("/scale"))


def wait_for_pods(url: str, name: str, timeout: float = 20.0) -> None:
    """Until the Deployment ``name`` has ready pods serving (its metrics exist)."""
    deadline = time.monotonic() + timeout
    while True:
        text = urllib.request.urlopen(f"{url}/east/metrics", timeout=5).read().decode()
        if any(
            line.startswith("vllm:num_requests_running") and f'pod="{name}-' in line
            for line in text.splitlines()
        ):
            return
        assert time.monotonic() < deadline, f"{name} never served"
        time.sleep(0.2)
