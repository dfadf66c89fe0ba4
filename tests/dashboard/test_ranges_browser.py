"""Longer ranges in a real browser: picking 6 h draws the workload's stored signal history
behind the live points, with the decisions of the window. Chromium (Debian's) driven by
Playwright against uvicorn on the demo; six hours of history are written into the app's
database before it starts (the store's own row format, ``signal_store.line``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from bench.servers import demo_app
from tests.dashboard.test_dashboard_browser import browser, log_in, shoot  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Six hours ending a minute ago (the page streams the last minute itself): 4 replicas, then
# 6 from three hours ago, a tick every 10 s; one applied decision three hours ago.
SEED = """
import time
from datetime import UTC, datetime
from scaling import signal_store
from scaling.models import Decision, Workload
from scaling.signal_store import SignalChunk
from scaling.signals import SignalTick
w = Workload.objects.get(deployment="chat-llama-8b")
now = time.time() - 60
ticks = [SignalTick(now=now - 21600 + k * 10, current=4 if k < 1080 else 6,
                    ready=4 if k < 1080 else 6, metric=(now - 21600 + k * 10, 7.0),
                    ttft_p95_s=0.3) for k in range(2160)]
SignalChunk.objects.bulk_create(SignalChunk(workload=w, resolution="tick", start_s=c[0].now,
    end_s=c[-1].now, ticks=len(c), data="".join(signal_store.line(t) for t in c))
    for c in (ticks[i:i + 30] for i in range(0, len(ticks), 30)))
Decision.objects.create(workload=w, policy=w.policy, policy_version=w.policy.version,
    at=datetime.fromtimestamp(now - 10800, UTC), algorithm=w.policy.algorithm, metrics={},
    current_replicas=4, raw_desired_replicas=6, final_replicas=6, steps=[],
    outcome="applied", reason="seeded: scale up for the range test")
Workload.objects.create(tenant=w.tenant, cluster=w.cluster, namespace=w.namespace,
    deployment="ghost", model_name=w.model_name, gpu_type=w.gpu_type)  # nothing to observe
"""


@pytest.fixture(scope="module")
def seeded_app(
    start_module_simulator: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    sim = start_module_simulator(None, speed=10.0)
    seed = [sys.executable, "manage.py", "shell", "-c", SEED]
    env = {"SIMULATOR_PORT": sim.rsplit(":", 1)[1]}
    with demo_app(tmp_path_factory.mktemp("var"), seed=seed, env=env) as (url, _):
        yield url


STORED = """id => { const d = document.getElementById(id).data.find(t => t.stored);
                    return d ? d.y.filter(v => v !== null) : []; }"""


def test_picking_six_hours_draws_the_stored_history_and_its_decisions(
    seeded_app,
    browser,  # noqa: F811 (the imported fixture)
):
    alice = log_in(browser, seeded_app, "alice")
    alice.click("#workloads >> text=acme-chat/chat-llama-8b")
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    alice.wait_for_selector("#chart-replicas .main-svg", timeout=30000)
    with alice.expect_response(lambda r: "/history/?since=" in r.url) as answer:
        alice.click("#range-picker >> text=6 h")
    assert answer.value.status == 200
    asked = parse_qs(urlparse(answer.value.url).query)
    assert float(asked["until"][0]) - float(asked["since"][0]) > 5 * 3600
    alice.wait_for_function(f"() => ({STORED})('chart-replicas').length > 500", timeout=10000)
    replicas = alice.evaluate(STORED, "chart-replicas")
    assert len(replicas) <= 900 and {4, 6} <= set(replicas)
    assert set(alice.evaluate(STORED, "chart-metric")) == {7.0}
    assert set(alice.evaluate(STORED, "chart-ttft")) == {0.3}
    # The seeded decision of three hours ago is a marker, its reason on hover.
    hovers = alice.evaluate(
        """() => document.getElementById('chart-replicas').data
                 .flatMap(t => t.hovertext || [])"""
    )
    assert any("seeded: scale up for the range test" in h for h in hovers), hovers
    # Charts of series the store does not keep say so.
    for chart in ("chart-gpu-util", "chart-gpu-mem", "chart-queue"):
        notes = alice.evaluate(
            "id => (document.getElementById(id).layout.annotations || []).map(a => a.text)", chart
        )
        assert any(n.startswith("not stored: drawn from") for n in notes), (chart, notes)
    assert "stored signal history" in alice.inner_text("#range-note")
    shoot(alice, "workload-6h-stored")


def test_a_workload_with_no_data_says_so_on_every_chart(
    seeded_app,
    browser,  # noqa: F811 (the imported fixture)
):
    alice = log_in(browser, seeded_app, "alice")
    alice.click("#workloads >> text=acme-chat/ghost")
    alice.wait_for_url("**/workloads/*/", timeout=10000)
    alice.wait_for_selector("#chart-gpu-mem .main-svg", timeout=30000)
    year = alice.evaluate("() => String(new Date().getUTCFullYear())")
    for chart in ("chart-replicas", "chart-metric", "chart-ttft", "chart-queue", "chart-gpu-util"):
        layout = alice.evaluate("id => document.getElementById(id).layout", chart)
        notes = [a["text"] for a in layout.get("annotations", [])]
        assert "No data yet in this range" in notes, (chart, notes)
        assert str(layout["xaxis"]["range"][0]).startswith(year), (chart, layout["xaxis"])
    shoot(alice, "workload-no-data")
