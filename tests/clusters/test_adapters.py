"""Contract tests of the cluster adapters against a running simulator (and a real Prometheus
server scraping it): the same code that talks to a production cluster."""

import json
import subprocess
import threading
import time
import urllib.request

import pytest

from clusters import kubernetes, metrics, pool
from clusters.inventory import sync_inventory
from clusters.kubernetes import ClusterError
from clusters.models import Cluster, GpuNode

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 2, "gpus_per_node": 4, "name_prefix": "a100"},
                {"gpu_type": "L4-24GB", "count": 1, "gpus_per_node": 2, "name_prefix": "l4"},
            ],
            "namespaces": ["team-a", "team-b"],
            "workloads": [
                {
                    "namespace": "team-a",
                    "name": "chat",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_type": "A100-80GB",
                    "replicas": 1,
                    "cold_start_s": 0.5,
                    "load": {"kind": "constant", "rate_rps": 3.0},
                }
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def simulator_url(start_module_simulator):
    return start_module_simulator(FLEET, speed=4.0)


@pytest.fixture
def east(simulator_url):
    base = f"{simulator_url}/east"
    return Cluster.objects.create(
        name="east",
        api_url=base,
        metrics_source="exporter",
        metrics_url=f"{base}/metrics",
        pool_url=f"{base}/pool",
    )


def faults(url, body=None):
    method = "POST" if body is not None else "DELETE"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}/_faults", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=5).close()


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def test_inventory_lists_gpu_nodes_by_product(east):
    assert sync_inventory(east) == 3
    products = sorted(GpuNode.objects.values_list("gpu_product", "gpu_capacity"))
    assert products == [("NVIDIA-A100-SXM4-80GB", 4)] * 2 + [("NVIDIA-L4", 2)]
    assert all(GpuNode.objects.values_list("ready", flat=True))


def test_scale_up_and_down_is_idempotent(east):
    assert kubernetes.set_scale(east, "team-a", "chat", 3) is True
    assert kubernetes.set_scale(east, "team-a", "chat", 3) is False  # already there
    assert kubernetes.read_scale(east, "team-a", "chat") == 3
    wait_for(lambda: kubernetes.list_deployments(east)[("team-a", "chat")].ready_replicas == 3)
    assert kubernetes.set_scale(east, "team-a", "chat", 1) is True
    state = kubernetes.list_deployments(east)[("team-a", "chat")]
    assert state.spec_replicas == 1 and state.selector == {"app": "chat"}
    pods = [p for p in kubernetes.list_pods(east) if p.labels.get("app") == "chat"]
    assert pods and all(p.namespace == "team-a" for p in pods)


def test_a_conflict_is_retried_from_a_fresh_read(east, simulator_url, monkeypatch):
    monkeypatch.setattr(kubernetes, "CONFLICT_BACKOFF_S", 0.5)  # retries at 0.5, 1.5, 3.5 s
    faults(simulator_url, {"cluster": "east", "error_rate": 1.0, "error_codes": [409]})
    threading.Timer(0.2, faults, args=(simulator_url,)).start()
    try:
        assert kubernetes.set_scale(east, "team-a", "chat", 2) is True
    finally:
        faults(simulator_url)
    assert kubernetes.read_scale(east, "team-a", "chat") == 2


def test_persistent_conflicts_and_server_errors_are_transient(east, simulator_url, monkeypatch):
    monkeypatch.setattr(kubernetes, "CONFLICT_BACKOFF_S", 0.01)
    faults(simulator_url, {"cluster": "east", "error_rate": 1.0, "error_codes": [409]})
    try:
        with pytest.raises(ClusterError) as conflict:
            kubernetes.set_scale(east, "team-a", "chat", 4)
        faults(simulator_url, {"cluster": "east", "error_codes": [503]})
        with pytest.raises(ClusterError) as unavailable:
            kubernetes.list_deployments(east)
    finally:
        faults(simulator_url)
    assert conflict.value.transient and conflict.value.status == 409
    assert unavailable.value.transient and unavailable.value.status == 503


def test_a_missing_deployment_is_a_permanent_error(east):
    with pytest.raises(ClusterError) as missing:
        kubernetes.set_scale(east, "team-a", "no-such-deployment", 2)
    assert missing.value.status == 404 and not missing.value.transient


def test_a_timeout_is_a_transient_error(east, simulator_url, settings):
    settings.KUBERNETES_TIMEOUT_S = 0.5
    faults(simulator_url, {"cluster": "east", "hang_rate": 1.0, "hang_seconds": 3})
    started = time.monotonic()
    try:
        with pytest.raises(ClusterError) as hung:
            kubernetes.list_pods(east)
    finally:
        faults(simulator_url)
    assert hung.value.transient
    assert time.monotonic() - started < 2.5


def test_resource_quota_is_created_kept_and_drift_corrected(east):
    kubernetes.ensure_namespace(east, "team-b")
    created = kubernetes.ensure_resource_quota(east, "team-b", "gpu-quota", 4)
    assert created.action == "created"
    assert kubernetes.ensure_resource_quota(east, "team-b", "gpu-quota", 4).action == "ok"
    drift = kubernetes.ensure_resource_quota(east, "team-b", "gpu-quota", 6)
    assert (drift.action, drift.previous_hard, drift.hard) == ("updated", 4, 6)


def test_quota_admission_failure_is_surfaced_on_the_deployment(east):
    kubernetes.ensure_resource_quota(east, "team-a", "gpu-quota", 2)
    try:
        kubernetes.set_scale(east, "team-a", "chat", 4)
        wait_for(lambda: kubernetes.list_deployments(east)[("team-a", "chat")].failure)
        state = kubernetes.list_deployments(east)[("team-a", "chat")]
        assert "exceeded quota: gpu-quota" in (state.failure or "")
        assert "limited: requests.nvidia.com/gpu=2" in (state.failure or "")
        assert state.replicas == 2 and state.spec_replicas == 4
    finally:
        kubernetes.ensure_resource_quota(east, "team-a", "gpu-quota", 64)
        kubernetes.set_scale(east, "team-a", "chat", 1)


def test_exporter_metrics_map_to_pods(east):
    wait_for(lambda: kubernetes.list_deployments(east)[("team-a", "chat")].ready_replicas >= 1)
    names = ["vllm:num_requests_running", "DCGM_FI_DEV_GPU_UTIL", "vllm:prompt_tokens_total"]
    samples = metrics.read_samples(east, names, time.time())
    running = samples["vllm:num_requests_running"]
    assert running and all(s.label("namespace") == "team-a" for s in running)
    assert all(s.label("pod").startswith("chat-") for s in running)
    assert any(s.label("Hostname") for s in samples["DCGM_FI_DEV_GPU_UTIL"])
    assert samples["vllm:prompt_tokens_total"]


def test_metrics_down_is_an_error_not_zero(east, simulator_url):
    faults(simulator_url, {"cluster": "east", "metrics_down": True})
    try:
        with pytest.raises(metrics.MetricsError):
            metrics.read_samples(east, ["vllm:num_requests_running"], time.time())
    finally:
        faults(simulator_url)


def test_pool_settings_read_and_set(east):
    current = pool.list_pool_settings(east.pool_url)
    assert ("team-a", "chat") in current
    wanted = pool.PoolSettings(max_concurrency=32, routing="round-robin")
    pool.set_pool_settings(east.pool_url, "team-a", "chat", wanted)
    assert pool.list_pool_settings(east.pool_url)[("team-a", "chat")] == wanted
    with pytest.raises(pool.PoolError) as invalid:
        pool.set_pool_settings(east.pool_url, "team-a", "chat", pool.PoolSettings(0, "nope"))
    assert not invalid.value.transient


def test_prometheus_source_reads_what_a_real_prometheus_scraped(
    east, simulator_url, need_binary, free_port, tmp_path
):
    binary = need_binary("prometheus", "apt-get install prometheus")
    port = free_port()
    host = simulator_url.removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: simulator\n"
        "    metrics_path: /east/metrics\n"
        f"    static_configs: [{{targets: ['{host}'], labels: {{namespace: monitoring}}}}]\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        east.metrics_source, east.metrics_url = "prometheus", f"http://127.0.0.1:{port}"

        def scraped():
            try:
                found = metrics.read_samples(east, ["vllm:num_requests_running"], time.time())
            except metrics.MetricsError:
                return False
            return bool(found["vllm:num_requests_running"])

        wait_for(scraped, timeout=30)
        now = time.time()
        samples = metrics.read_samples(east, ["vllm:num_requests_running"], now)
        sample = samples["vllm:num_requests_running"][0]
        # The exporter's namespace wins over the scrape's own (Prometheus renamed it).
        assert sample.label("namespace") == "team-a"
        assert sample.label("pod").startswith("chat-")
        assert now - 10 < sample.timestamp <= now  # the scrape time, not the query time
        # A name that would close the string literal and add a matcher of its own reads the
        # series of that literal name (none), not every vllm:num_requests_running series.
        hostile = 'vllm:num_requests_running",__name__!="'
        assert metrics.read_samples(east, [hostile], now) == {hostile: []}
        for name in ('x"} or vector(1) or {a="', "back\\slash", "new\nline"):
            assert metrics.read_samples(east, [name], now) == {name: []}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_promql_selectors_escape_the_name_as_a_string_literal():
    from clusters.prometheus import selector

    assert selector("vllm:num_requests_running") == '{__name__="vllm:num_requests_running"}'
    assert selector('a"b') == '{__name__="a\\"b"}'
    assert selector("a\\b") == '{__name__="a\\\\b"}'
    assert selector("a\nb\rc") == '{__name__="a\\nb\\rc"}'
    assert selector('x"} or vector(1) or {a="') == '{__name__="x\\"} or vector(1) or {a=\\""}'
