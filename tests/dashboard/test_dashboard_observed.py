"""The preview's observed load: a trace rebuilt from what a real Prometheus scraped off a real
simulator, and the preview replaying it beside the replicas that really served."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from dashboard import observed
from tests.dashboard.test_dashboard_pages import collect, form_data

RATE_RPS = 6.0
PROMPT, OUTPUT = 800.0, 120.0
FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 4, "name_prefix": "a100"}
            ],
            "namespaces": ["team-a"],
            "workloads": [
                {
                    "namespace": "team-a",
                    "name": "chat",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_type": "A100-80GB",
                    "replicas": 2,
                    "cold_start_s": 0.2,
                    "load": {
                        "kind": "constant",
                        "rate_rps": RATE_RPS,
                        "input_mean": PROMPT,
                        "input_sigma": 0.05,
                        "output_mean": OUTPUT,
                        "output_sigma": 0.05,
                    },
                }
            ],
        }
    ]
}


def test_a_trace_is_rebuilt_from_per_step_counts():
    # Steps end at 10 s and 20 s: 2.5 then 1.5 requests (the half carries), 100 / 50 tokens
    # per request.
    trace = observed.rebuild_trace(
        {10.0: 2.5, 20.0: 1.5, 30.0: 0.0},
        {10.0: 250.0, 20.0: 150.0},
        {10.0: 125.0, 20.0: 75.0},
        10.0,
        random.Random(7),
        name="t",
    )
    assert len(trace) == 4
    assert list(trace.inputs) == [100, 100, 100, 100]
    assert list(trace.outputs) == [50, 50, 50, 50]
    assert [0 <= t <= 10 for t in trace.times[:2]] == [True, True]
    assert all(10 <= t <= 20 for t in trace.times[2:])
    assert list(trace.times) == sorted(trace.times)
    again = observed.rebuild_trace(
        {10.0: 2.5, 20.0: 1.5}, {10.0: 250.0}, {10.0: 125.0}, 10.0, random.Random(7), name="t"
    )
    assert list(again.times) == list(trace.times)  # same seed, same hour: same preview


@pytest.fixture(scope="module")
def prometheus(
    start_module_simulator: Any, tmp_path_factory: Any, need_binary: Any, free_port: Any
) -> Iterator[str]:
    """A real Prometheus scraping a simulator every second, with ~15 s of data."""
    binary = need_binary("prometheus", "apt-get install prometheus")
    sim = start_module_simulator(FLEET)
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: simulator\n"
        "    metrics_path: /east/metrics\n"
        # Prometheus' own namespace label makes it rename the exporter's to exported_*.
        f"    static_configs: [{{targets: ['{sim.removeprefix('http://')}'], "
        "labels: {namespace: monitoring}}]\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while not _has_series(url):
            if time.monotonic() - started > 30 or process.poll() is not None:
                raise RuntimeError("Prometheus scraped nothing")
            time.sleep(0.5)
        time.sleep(15)  # some history to rebuild
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _has_series(url: str) -> bool:
    query = urllib.parse.urlencode({"query": "vllm:request_success_total"})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=2) as response:
            return bool(json.load(response)["data"]["result"])
    except OSError:
        return False


def query(url: str, deployment: str = "chat", **changes: Any) -> observed.ObservedQuery:
    fields = {
        "prometheus_url": url,
        "namespace": "team-a",
        "deployment": deployment,
        "seed": 1,
        "end": time.time(),
        "window_s": 60.0,
        "step_s": 2.0,
    }
    return observed.ObservedQuery(**{**fields, **changes})


@pytest.mark.integration
def test_observed_load_matches_what_the_workload_served(prometheus):
    # Ending a few seconds ago: a scrape still in flight at "now" would land between the
    # reads below and change their last step.
    asked = query(prometheus, end=time.time() - 3)
    load = observed.read_observed_load(asked)
    # Asked for a minute, Prometheus holds ~15 s: what it holds is replayed.
    assert 10 <= load.duration_s <= 50
    trace = load.trace
    # Checked against Prometheus' own sums of the counters over the same steps.
    first, last = load.start, load.start + load.duration_s
    served = counter_growth(prometheus, observed.REQUESTS, first, last)
    assert len(trace) == served  # integer counters: every finished request, once
    prompt = counter_growth(prometheus, observed.PROMPT, first, last)
    assert sum(trace.inputs) == pytest.approx(prompt, rel=0.1)
    assert all(0 <= t <= load.duration_s for t in trace.times)
    # The simulator's configured load, loosely (within half: a unit or double-counting slip
    # would show): over seconds its completions come in bunches.
    assert len(trace) / load.duration_s == pytest.approx(RATE_RPS, rel=0.5)
    assert sum(trace.inputs) / len(trace) == pytest.approx(PROMPT, rel=0.5)
    assert sum(trace.outputs) / len(trace) == pytest.approx(OUTPUT, rel=0.5)
    assert {n for _, n in load.actual} == {2}  # two replicas served all along
    again = observed.read_observed_load(asked)
    assert list(again.trace.times) == list(trace.times)


def counter_growth(url: str, metric: str, first: float, last: float) -> float:
    """How much the workload's counter grew between two instants, by PromQL's own sum."""
    promql = f'sum({{__name__="{metric}", exported_namespace="team-a", pod=~"chat-.+"}})'
    values = []
    for at in (first, last):
        params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=5) as response:
            values.append(float(json.load(response)["data"]["result"][0]["value"][1]))
    return values[1] - values[0]


@pytest.mark.integration
def test_a_workload_prometheus_never_saw_has_no_observed_load(prometheus):
    with pytest.raises(observed.ObservedLoadError, match="no requests of team-a/other"):
        observed.read_observed_load(query(prometheus, deployment="other"))
    with pytest.raises(observed.ObservedLoadError, match="Could not read"):
        observed.read_observed_load(query("http://127.0.0.1:9"))


@pytest.mark.integration
@pytest.mark.django_db
def test_preview_replays_the_observed_hour_beside_what_served(
    prometheus, client, team_a, gpu_type, make_workload, make_user, monkeypatch
):
    from clusters.models import Cluster

    cluster = Cluster.objects.create(
        name="east", api_url="http://127.0.0.1:9/east", metrics_url=prometheus
    )
    workload = make_workload(team_a, cluster, gpu_type, "chat")
    client.force_login(make_user("olive", team_a, role="operator"))
    page = client.get(f"/workloads/{workload.pk}/").content.decode()
    assert '<option value="observed">' in page  # offered, and first: the default
    monkeypatch.setattr(observed, "STEP_S", 2.0)  # Prometheus holds seconds, not an hour
    url = f"/workloads/{workload.pk}/preview/"
    response = client.post(url, form_data(workload.policy, target=4, trace="observed"))
    assert response.status_code == 200
    body = asyncio.run(collect(response.streaming_content))
    lines = [json.loads(line) for line in body.splitlines()]
    result = lines[-1]["result"]
    actual = result["actual"]
    assert actual["requests"] > 0 and {p["replicas"] for p in actual["timeline"]} == {2}
    assert result["edited"]["timeline"] and result["stored"]["timeline"]
    assert result["edited"]["timeline"][0]["ready"] == 2  # starts warm with what served
    assert result["edited"]["requests"] == actual["requests"]


@pytest.mark.parametrize(
    ("namespace", "pod", "owned"),
    [
        ("team-a", "chat-7c5b8d9f4q-x2kzp", True),  # a pod of one of chat's ReplicaSets
        ("team-b", "chat-7c5b8d9f4q-x2kzp", False),  # another namespace's chat
        ("team-a", "chat-v2-7c5b8d9f4q-x2kzp", False),  # Deployment chat-v2's
        ("team-a", "chat-canary-0", False),  # StatefulSet chat-canary's
        ("team-a", "chat-canary-x2kzp", False),  # a bare pod generated from "chat-canary-"
    ],
)
def test_the_observed_load_counts_only_pods_named_as_the_deployments_replicasets_name_them(
    namespace, pod, owned
):
    labels = {"namespace": namespace, "pod": pod}
    assert query("http://prometheus.invalid").owns(labels) is owned
