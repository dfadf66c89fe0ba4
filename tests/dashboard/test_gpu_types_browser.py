"""A workload on several GPU types in a real browser: the fleet row names each type with its
ready / desired replicas, and the workload page shows each type's Deployment, its counts, the
mix line the control loop chose, and a warning for a Deployment not pinned to its type's nodes.

Chromium (Debian's) driven by Playwright against uvicorn on the demo. Before the server
starts, the demo's search-phi-3 (L4) gets two variants whose Deployments are written through
the simulator's Kubernetes API (an A40 one pinned by nodeSelector, an A100 one not pinned),
and the control loop ticks the cluster (the real loop, against the simulator)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.servers import demo_app
from tests.dashboard.test_dashboard_browser import browser, log_in, shoot  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SEED = """
import json, time
from kubernetes import client as k8s
from quotas.models import GpuType
from scaling.loop import tick_cluster
from scaling.models import Workload, WorkloadVariant
w = Workload.objects.get(deployment="search-phi-3")
apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=w.cluster.api_url)))
def deployment(name, pod_spec):
    labels = {"app": name}
    gpu = {"nvidia.com/gpu": "1"}
    container = {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
                 "args": ["--model", w.model_name],
                 "resources": {"requests": gpu, "limits": gpu}}
    apps.create_namespaced_deployment(w.namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": pod_spec | {"containers": [container]}}}})
deployment("search-phi-3-a40", {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A40"}})
deployment("search-phi-3-a100", {})
for name, deployment_name in (("A40-48GB", "search-phi-3-a40"), ("A100-80GB", "search-phi-3-a100")):
    WorkloadVariant.objects.create(workload=w, gpu_type=GpuType.objects.get(name=name),
                                   deployment=deployment_name, min_replicas=0, max_replicas=3)
for _ in range(3):
    tick_cluster(w.cluster.pk)
    time.sleep(0.5)
print(json.dumps(Workload.objects.get(pk=w.pk).status))
"""


@pytest.fixture(scope="module")
def mixed_app(
    start_module_simulator: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, Any]]]:
    sim = start_module_simulator(None, speed=10.0)
    seed = [sys.executable, "manage.py", "shell", "-c", SEED]
    env = {"SIMULATOR_PORT": sim.rsplit(":", 1)[1]}
    with demo_app(tmp_path_factory.mktemp("var"), seed=seed, env=env) as (url, seeded):
        yield url, json.loads(seeded.strip().splitlines()[-1])


def test_a_workload_on_three_gpu_types_shows_each_type_and_the_mix(
    mixed_app,
    browser,  # noqa: F811 (the imported fixture)
):
    url, status = mixed_app
    types = {t["gpu_type"]: t for t in status["types"]}
    assert list(types) == ["L4-24GB", "A100-80GB", "A40-48GB"]  # variants by name and status["mix"]

    alice = log_in(browser, url, "alice")
    row = alice.locator("#workloads tr", has_text="acme-search/search-phi-3")
    cell = row.locator("[data-field=gpu-types]")
    counts = " + ".join(f"{name} {t['ready']}/{t['desired']}" for name, t in types.items())
    assert re.sub(r"\s+", " ", cell.inner_text().replace("unpinned", "")).strip() == counts
    assert cell.locator(".error").count() == 1  # the A100 Deployment is not pinned

    row.locator("a", has_text="search-phi-3").click()
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    section = alice.locator("#gpu-types")
    assert section.locator("#mix-line").inner_text().startswith(status["mix"])
    for name, deployment, bounds in (
        ("L4-24GB", "search-phi-3", None),
        ("A40-48GB", "search-phi-3-a40", "0\u20133"),
        ("A100-80GB", "search-phi-3-a100", "0\u20133"),
    ):
        cells = section.locator(f"tr[data-gpu-type='{name}'] td").all_inner_texts()
        assert cells[1] == f"acme-search/{deployment}"
        assert cells[2] == f"{types[name]['ready']} / {types[name]['desired']}"
        if bounds:
            assert cells[3] == bounds
    warning = section.locator("tr[data-gpu-type='A100-80GB'] [data-field=warning]").inner_text()
    assert warning.startswith("Deployment search-phi-3-a100 is not pinned to A100-80GB nodes")
    assert section.locator("tr[data-gpu-type='A40-48GB'] [data-field=warning]").count() == 0
    shoot(alice, "workload-gpu-types")
