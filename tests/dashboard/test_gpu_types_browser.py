"""A workload on several GPU types in a real browser: the fleet row names each type with its
ready / desired replicas, and the workload page shows each type's Deployment, its counts, the
mix line the control loop chose, and a warning for a Deployment not pinned to its type's nodes.

Chromium (Debian's) driven by Playwright against uvicorn on the demo. Before the server
starts, the demo's search-phi-3 (L4) gets two variants whose Deployments are written through
the simulator's Kubernetes API (an A40 one pinned by nodeSelector, an A100 one not pinned),
and the control loop ticks the cluster (the real loop, against the simulator)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

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
print(json.dumps({"api": w.cluster.api_url, "id": w.pk}))
print(json.dumps(Workload.objects.get(pk=w.pk).status))
"""

# A new evaluation's desired count for one GPU type, written as the loop writes the status.
SET_DESIRED = """
from scaling.models import Workload
w = Workload.objects.get(deployment="search-phi-3")
status = w.status
for t in status["types"]:
    if t["gpu_type"] == GPU_TYPE:
        t["desired"] = DESIRED
Workload.objects.filter(pk=w.pk).update(status=status)
"""


def ready_now(app: MixedApp, deployment: str) -> int:
    """The Deployment's ready replicas once all its replicas are ready (no loop runs here, so
    its spec stays put): a count still starting would move under the assertion."""
    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=app.api)))
    deadline = time.monotonic() + 60
    while True:
        found = apps.read_namespaced_deployment(deployment, "acme-search")
        ready = int(found.status.ready_replicas or 0)
        if ready == found.spec.replicas or time.monotonic() > deadline:
            return ready
        time.sleep(0.5)


@dataclass(frozen=True)
class MixedApp:
    url: str
    status: dict[str, Any]  # the seeded workload's status after the loop's ticks
    api: str  # the simulated cluster's Kubernetes API
    workload: int
    env: dict[str, str]  # the app's environment, for a later manage.py command


@pytest.fixture(scope="module")
def mixed_app(
    start_module_simulator: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MixedApp]:
    sim = start_module_simulator(None, speed=10.0)
    seed = [sys.executable, "manage.py", "shell", "-c", SEED]
    var = tmp_path_factory.mktemp("var")
    env = {"SIMULATOR_PORT": sim.rsplit(":", 1)[1]}
    with demo_app(var, seed=seed, env=env) as (url, seeded):
        where, status = seeded.strip().splitlines()[-2:]
        found = json.loads(where)
        app_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        app_env |= env | {"VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "controlplane.settings"}
        yield MixedApp(url, json.loads(status), found["api"], found["id"], app_env)


def test_a_workload_on_three_gpu_types_shows_each_type_and_the_mix(
    mixed_app,
    browser,  # noqa: F811 (the imported fixture)
):
    url, status = mixed_app.url, mixed_app.status
    types = {t["gpu_type"]: t for t in status["types"]}
    assert list(types) == ["L4-24GB", "A100-80GB", "A40-48GB"]  # variants by name and status["mix"]

    expect = pytest.importorskip("playwright.sync_api").expect
    deployments = {"L4-24GB": "search-phi-3", "A40-48GB": "search-phi-3-a40"}
    deployments["A100-80GB"] = "search-phi-3-a100"
    # Ready as the cluster reports it now: the pages draw the live count, not the seed's.
    ready = {name: ready_now(mixed_app, found) for name, found in deployments.items()}
    alice = log_in(browser, url, "alice")
    row = alice.locator("#workloads tr", has_text="acme-search/search-phi-3")
    cell = row.locator("[data-field=gpu-types]")
    for name, t in types.items():
        expect(cell.locator(f"[data-gpu-type='{name}']")).to_have_text(
            f"{ready[name]}/{t['desired']}", timeout=10000
        )
    counts = " + ".join(f"{name} {ready[name]}/{t['desired']}" for name, t in types.items())
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
        counts_cell = section.locator(f"tr[data-gpu-type='{name}'] [data-field=ready-desired]")
        expect(counts_cell).to_have_text(f"{ready[name]} / {types[name]['desired']}")
        cells = section.locator(f"tr[data-gpu-type='{name}'] td").all_inner_texts()
        assert cells[1] == f"acme-search/{deployment}"
        if bounds:
            assert cells[3] == bounds
    warning = section.locator("tr[data-gpu-type='A100-80GB'] [data-field=warning]").inner_text()
    assert warning.startswith("Deployment search-phi-3-a100 is not pinned to A100-80GB nodes")
    assert section.locator("tr[data-gpu-type='A40-48GB'] [data-field=warning]").inner_text() == ""
    shoot(alice, "workload-gpu-types")


def test_a_variants_counts_change_on_open_pages_without_a_reload(
    mixed_app,
    browser,  # noqa: F811 (the imported fixture)
):
    """The A40 Deployment is scaled through the cluster's API and the loop's status gets a
    new desired count while the workload page and the fleet page are open: both redraw the
    type's ready / desired from the live frames, and neither page reloads."""
    alice = log_in(browser, mixed_app.url, "alice")
    alice.goto(f"{mixed_app.url}/workloads/{mixed_app.workload}/")
    fleet = log_in(browser, mixed_app.url, "alice")
    for page in (alice, fleet):
        page.wait_for_selector("#live-status.live", timeout=30000)
        page.evaluate("window.notReloaded = true")
    cell = alice.locator("#gpu-types tr[data-gpu-type='A40-48GB'] [data-field=ready-desired]")
    row = fleet.locator("#workloads tr", has_text="acme-search/search-phi-3")
    counts = row.locator("[data-field=gpu-types] [data-gpu-type='A40-48GB']")
    ready = ready_now(mixed_app, "search-phi-3-a40")

    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=mixed_app.api)))
    body = {"spec": {"replicas": ready + 2}}
    apps.patch_namespaced_deployment_scale("search-phi-3-a40", "acme-search", body)
    command = [
        sys.executable,
        "manage.py",
        "shell",
        "-c",
        SET_DESIRED.replace("GPU_TYPE", "'A40-48GB'").replace("DESIRED", "7"),
    ]
    subprocess.run(command, cwd=ROOT, env=mixed_app.env, check=True, capture_output=True)

    expected = f"{ready + 2} / 7"
    alice.wait_for_function(
        "t => document.querySelector(\"#gpu-types tr[data-gpu-type='A40-48GB'] "
        '[data-field=ready-desired]").textContent === t',
        arg=expected,
        timeout=60000,
    )
    assert cell.inner_text() == expected
    fleet.wait_for_function(
        "t => [...document.querySelectorAll(\"[data-field=gpu-types] [data-gpu-type='A40-48GB']\")]"
        ".some((el) => el.textContent === t)",
        arg=f"{ready + 2}/7",
        timeout=30000,
    )
    assert counts.inner_text() == f"{ready + 2}/7"
    for page in (alice, fleet):
        assert page.evaluate("window.notReloaded") is True
    shoot(alice, "workload-gpu-types-live")


# A decision as the loop records one on a mixed pool: its reason leads with the mix line.
RECORD_DECISION = """
from django.utils import timezone
from scaling.models import Decision, Workload
w = Workload.objects.get(deployment="search-phi-3")
d = Decision.objects.create(
    workload=w, policy=w.policy, policy_version=w.policy.version, at=timezone.now(),
    algorithm=w.policy.algorithm, current_replicas=24, raw_desired_replicas=8,
    final_replicas=8, outcome="applied",
    reason="1 x A100-80GB + 2 x A40-48GB: $4.10/h; policy: demand 7.6 replicas",
    metrics={"values": [], "types": [  # each type's count, as the loop records them
        {"gpu_type": "A100-80GB", "deployment": "a", "ready": 0, "desired": 1},
        {"gpu_type": "A40-48GB", "deployment": "b", "ready": 0, "desired": 2},
    ]})
print(d.pk)
"""


def test_a_live_added_card_reads_as_the_server_rendered_one(
    mixed_app,
    browser,  # noqa: F811 (the imported fixture)
):
    """A mixed pool's decision arriving on the live feed leads with its per-type counts and
    names its total's unit, word for word as the page renders it after a reload."""
    alice = log_in(browser, mixed_app.url, "alice")
    alice.goto(f"{mixed_app.url}/workloads/{mixed_app.workload}/")
    alice.wait_for_selector("#live-status.live", timeout=30000)
    command = [sys.executable, "manage.py", "shell", "-c", RECORD_DECISION]
    done = subprocess.run(command, cwd=ROOT, env=mixed_app.env, check=True, capture_output=True)
    card = f"#decisions li[data-id='{done.stdout.decode().split()[-1]}']"
    alice.wait_for_selector(f"{card}.fresh", timeout=30000)  # added by live.js

    def head() -> tuple[str, str]:
        fields = [alice.locator(f"{card} [data-field={f}]").inner_text() for f in ("mix", "total")]
        return fields[0], fields[1]

    live = head()
    assert live == (
        "→ 1 \u00d7 A100-80GB + 2 \u00d7 A40-48GB",
        "policy total 24 → 8 L4-24GB-equivalents",
    )
    # Its marker on the replica chart says the same on hover.
    hover = alice.wait_for_function(
        """() => [...document.getElementById("chart-replicas").data]
            .flatMap((trace) => trace.hovertext || [])
            .find((text) => text.includes(" (policy v"))""",
        timeout=10000,
    ).json_value()
    assert (
        "→ 1 \u00d7 A100-80GB + 2 \u00d7 A40-48GB, policy total 24 → 8 L4-24GB-equivalents" in hover
    )
    alice.reload()
    alice.wait_for_selector(card, timeout=10000)
    assert alice.locator(f"{card}.fresh").count() == 0  # now the server's card
    assert head() == live
