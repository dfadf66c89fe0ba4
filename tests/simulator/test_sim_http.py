"""The simulator as a real subprocess, driven through the official Kubernetes client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "clusters": [
        {
            "name": "east",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 4, "name_prefix": "a100"},
                {"gpu_type": "H100-80GB", "count": 1, "gpus_per_node": 8, "name_prefix": "h100"},
            ],
            "namespaces": ["team-a", "team-b", "team-c"],
            "workloads": [
                {
                    "namespace": "team-a",
                    "name": "chat",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_type": "A100-80GB",
                    "replicas": 1,
                    "cold_start_s": 1.0,
                    "load": {
                        "kind": "constant",
                        "rate_rps": 4.0,
                        "input_mean": 200,
                        "output_mean": 200,
                    },
                },
                {
                    "namespace": "team-b",
                    "name": "big",
                    "model": "meta-llama/Llama-3.1-70B-Instruct",
                    "gpu_type": "H100-80GB",
                    "gpus_per_replica": 4,
                    "replicas": 1,
                    "cold_start_s": 1.0,
                    "load": {"kind": "constant", "rate_rps": 0.5},
                },
            ],
        },
        {
            "name": "faulty",
            "nodes": [{"gpu_type": "L4-24GB", "count": 2, "gpus_per_node": 2, "name_prefix": "l4"}],
            "workloads": [
                {
                    "namespace": "ml",
                    "name": "phi",
                    "model": "microsoft/Phi-3-mini-4k-instruct",
                    "gpu_type": "L4-24GB",
                    "replicas": 2,
                    "cold_start_s": 0.5,
                    "load": {"kind": "constant", "rate_rps": 1.0},
                },
            ],
        },
    ]
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("sim") / "fleet.json"
    config.write_text(json.dumps(CONFIG))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(port),
            "--config",
            str(config),
            "--speed",
            "4",
            "--tick",
            "0.05",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http("GET", f"{url}/healthz")[0] == 200, timeout=15)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def http(
    method: str, url: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read().decode()
            return response.status, _decode(raw, response.headers.get_content_type())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read().decode(), exc.headers.get_content_type())
    except OSError:
        return 0, None


def _decode(raw: str, content_type: str) -> Any:
    return json.loads(raw) if content_type == "application/json" else raw


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def api(base_url: str, cluster: str = "east") -> client.ApiClient:
    return client.ApiClient(client.Configuration(host=f"{base_url}/{cluster}"))


def deployment_body(name: str, replicas: int, gpus: int = 1) -> dict[str, Any]:
    labels = {"app": name, "tier": "serving"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"simulator.gpu/cold-start-seconds": "2"},
                },
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai",
                            "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct"],
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def test_version_and_index(base_url: str) -> None:
    version = client.VersionApi(api(base_url)).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    status, index = http("GET", f"{base_url}/")
    assert status == 200
    assert [c["name"] for c in index["clusters"]] == ["east", "faulty"]


def test_nodes_report_gpu_capacity_and_product_labels(base_url: str) -> None:
    nodes = client.CoreV1Api(api(base_url)).list_node().items
    by_name = {n.metadata.name: n for n in nodes}
    assert set(by_name) == {"a100-0", "h100-0"}
    a100 = by_name["a100-0"]
    assert a100.status.capacity["nvidia.com/gpu"] == "4"
    assert a100.status.allocatable["nvidia.com/gpu"] == "4"
    assert a100.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert a100.metadata.labels["nvidia.com/gpu.count"] == "4"
    assert [c.type for c in a100.status.conditions if c.status == "True"] == ["Ready"]
    selected = client.CoreV1Api(api(base_url)).list_node(
        label_selector="nvidia.com/gpu.product in (NVIDIA-H100-80GB-HBM3)"
    )
    assert [n.metadata.name for n in selected.items] == ["h100-0"]


def test_namespaces_list_get_create(base_url: str) -> None:
    core = client.CoreV1Api(api(base_url))
    assert {"team-a", "team-b"} <= {n.metadata.name for n in core.list_namespace().items}
    core.create_namespace({"metadata": {"name": "fresh"}})
    assert core.read_namespace("fresh").status.phase == "Active"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespace({"metadata": {"name": "fresh"}})
    assert exc.value.status == 409


def test_scaling_a_deployment_creates_pending_pods_that_become_running(base_url: str) -> None:
    apps, core = client.AppsV1Api(api(base_url)), client.CoreV1Api(api(base_url))
    created = apps.create_namespaced_deployment("team-c", deployment_body("svc", 1))
    assert created.metadata.resource_version
    scale = apps.patch_namespaced_deployment_scale("svc", "team-c", {"spec": {"replicas": 3}})
    assert (scale.kind, scale.api_version, scale.spec.replicas) == ("Scale", "autoscaling/v1", 3)
    assert scale.status.selector == "app=svc"
    pods = core.list_namespaced_pod("team-c", label_selector="app=svc").items
    assert len(pods) == 3
    assert {p.status.phase for p in pods} == {"Pending"}  # cold start of 2 s at 4x speed
    assert all(p.spec.node_name == "h100-0" for p in pods)
    assert all(p.metadata.labels["app"] == "svc" for p in pods)

    def all_running() -> bool:
        pods = core.list_namespaced_pod("team-c", label_selector="app=svc").items
        return len(pods) == 3 and {p.status.phase for p in pods} == {"Running"}

    wait_for(all_running, timeout=10)
    deployment = apps.read_namespaced_deployment("svc", "team-c")
    assert deployment.status.ready_replicas == 3
    assert deployment.status.available_replicas == 3
    assert deployment.status.observed_generation == deployment.metadata.generation

    current = apps.read_namespaced_deployment_scale("svc", "team-c")
    current.spec.replicas = 1
    scaled = apps.replace_namespaced_deployment_scale("svc", "team-c", current)
    assert scaled.spec.replicas == 1
    wait_for(lambda: len(core.list_namespaced_pod("team-c", label_selector="app=svc").items) == 1)
    apps.delete_namespaced_deployment("svc", "team-c")


def test_unschedulable_pods_stay_pending_with_the_scheduler_reason(base_url: str) -> None:
    apps, core = client.AppsV1Api(api(base_url)), client.CoreV1Api(api(base_url))
    apps.create_namespaced_deployment("team-c", deployment_body("huge", 1, gpus=16))
    (pod,) = core.list_namespaced_pod("team-c", label_selector="app=huge").items
    assert pod.status.phase == "Pending"
    (scheduled,) = [c for c in pod.status.conditions if c.type == "PodScheduled"]
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in scheduled.message
    apps.delete_namespaced_deployment("huge", "team-c")


def test_a_stale_resource_version_is_a_conflict(base_url: str) -> None:
    apps = client.AppsV1Api(api(base_url))
    apps.create_namespaced_deployment("team-c", deployment_body("rv", 0))
    stale = apps.read_namespaced_deployment_scale("rv", "team-c")
    apps.patch_namespaced_deployment(
        "rv",
        "team-c",
        {
            "metadata": {
                "labels": {"x": "1"},
            }
        },
    )
    stale.spec.replicas = 2
    with pytest.raises(client.ApiException) as exc:
        apps.replace_namespaced_deployment_scale("rv", "team-c", stale)
    assert exc.value.status == 409
    status = json.loads(exc.value.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Conflict", 409)
    fresh = apps.read_namespaced_deployment("rv", "team-c")
    fresh.spec.replicas = 0
    apps.replace_namespaced_deployment("rv", "team-c", fresh)
    apps.delete_namespaced_deployment("rv", "team-c")


def test_missing_objects_are_not_found(base_url: str) -> None:
    apps = client.AppsV1Api(api(base_url))
    with pytest.raises(client.ApiException) as exc:
        apps.read_namespaced_deployment("nope", "team-a")
    assert exc.value.status == 404
    status = json.loads(exc.value.body)
    assert status["reason"] == "NotFound"
    assert status["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    with pytest.raises(client.ApiException) as exc:
        apps.read_namespaced_deployment_scale("chat", "no-such-namespace")
    assert exc.value.status == 404


def test_negative_replicas_are_invalid(base_url: str) -> None:
    apps = client.AppsV1Api(api(base_url))
    with pytest.raises(client.ApiException) as exc:
        apps.patch_namespaced_deployment_scale("chat", "team-a", {"spec": {"replicas": -1}})
    assert exc.value.status == 422
    status = json.loads(exc.value.body)
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "spec.replicas"
    with pytest.raises(client.ApiException) as exc:
        apps.create_namespaced_deployment("team-c", deployment_body("neg", -2))
    assert exc.value.status == 422


def test_json_patch_and_unsupported_verbs(base_url: str) -> None:
    apps = client.AppsV1Api(api(base_url))
    patch = [{"op": "replace", "path": "/spec/replicas", "value": 1}]
    assert apps.patch_namespaced_deployment_scale("chat", "team-a", patch).spec.replicas == 1
    status, body = http("DELETE", f"{base_url}/east/api/v1/nodes/a100-0")
    assert status == 405 and body["reason"] == "MethodNotAllowed"


def test_a_gpu_quota_stops_scale_up_with_the_real_admission_message(base_url: str) -> None:
    apps, core = client.AppsV1Api(api(base_url)), client.CoreV1Api(api(base_url))
    quota = core.create_namespaced_resource_quota(
        "team-b",
        {"metadata": {"name": "gpu-quota"}, "spec": {"hard": {"requests.nvidia.com/gpu": "4"}}},
    )
    assert quota.status.used["requests.nvidia.com/gpu"] == "4"
    apps.patch_namespaced_deployment_scale("big", "team-b", {"spec": {"replicas": 2}})
    deployment = apps.read_namespaced_deployment("big", "team-b")
    assert deployment.status.replicas == 1
    (failure,) = [c for c in deployment.status.conditions if c.type == "ReplicaFailure"]
    assert (failure.status, failure.reason) == ("True", "FailedCreate")
    assert failure.message.startswith('pods "big-')
    assert failure.message.endswith(
        "is forbidden: exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=4, "
        "used: requests.nvidia.com/gpu=4, limited: requests.nvidia.com/gpu=4"
    )
    # Refused every step with the same message: the resourceVersion stays put.
    time.sleep(0.3)
    again = apps.read_namespaced_deployment("big", "team-b")
    assert again.metadata.resource_version == deployment.metadata.resource_version
    # Raising the quota lets the controller create the pod; lowering it kills nothing.
    core.patch_namespaced_resource_quota(
        "gpu-quota", "team-b", {"spec": {"hard": {"requests.nvidia.com/gpu": "8"}}}
    )
    assert apps.read_namespaced_deployment("big", "team-b").status.replicas == 2
    core.patch_namespaced_resource_quota(
        "gpu-quota", "team-b", {"spec": {"hard": {"requests.nvidia.com/gpu": "0"}}}
    )
    assert len(core.list_namespaced_pod("team-b").items) == 2
    listed = core.list_resource_quota_for_all_namespaces().items
    assert [q.metadata.name for q in listed] == ["gpu-quota"]
    core.delete_namespaced_resource_quota("gpu-quota", "team-b")
    apps.patch_namespaced_deployment_scale("big", "team-b", {"spec": {"replicas": 1}})


def test_label_selectors_on_lists(base_url: str) -> None:
    apps, core = client.AppsV1Api(api(base_url)), client.CoreV1Api(api(base_url))
    names = lambda items: sorted(i.metadata.name for i in items)  # noqa: E731
    every = apps.list_deployment_for_all_namespaces()
    assert names(every.items) == ["big", "chat"]
    assert every.metadata.resource_version
    assert names(apps.list_deployment_for_all_namespaces(label_selector="app=chat").items) == [
        "chat"
    ]
    assert names(apps.list_deployment_for_all_namespaces(label_selector="app!=chat").items) == [
        "big"
    ]
    assert names(
        apps.list_deployment_for_all_namespaces(
            label_selector="app in (chat,big),app notin (big)"
        ).items
    ) == ["chat"]
    pods = core.list_pod_for_all_namespaces(label_selector="app=chat").items
    assert pods and all(p.metadata.namespace == "team-a" for p in pods)


def test_metrics_parse_with_the_exporters_names_and_labels(base_url: str) -> None:
    core = client.CoreV1Api(api(base_url))
    wait_for(
        lambda: any(p.status.phase == "Running" for p in core.list_namespaced_pod("team-a").items)
    )
    time.sleep(0.5)  # let a few requests complete
    status, text = http("GET", f"{base_url}/east/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    ):
        samples = families[name].samples
        assert len(samples) == 12  # 4 A100 + 8 H100
        assert {"gpu", "UUID", "device", "modelName", "Hostname"} <= set(samples[0].labels)
    held = [s for s in families["DCGM_FI_DEV_FB_USED"].samples if s.labels.get("pod")]
    assert held and all(s.labels["container"] == "vllm" for s in held)
    assert {s.labels["namespace"] for s in held} >= {"team-a"}
    models = {s.labels["modelName"] for s in families["DCGM_FI_DEV_GPU_UTIL"].samples}
    assert models == {"NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"}
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    ):
        assert families[name].type == "gauge"
    for name in ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:request_success"):
        assert families[name].type == "counter"
    for name in (
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:inter_token_latency_seconds",
    ):
        assert families[name].type == "histogram"
        suffixes = {s.name[len(name) :] for s in families[name].samples}
        assert suffixes == {"_bucket", "_sum", "_count"}
    chat = [
        s
        for s in families["vllm:prompt_tokens"].samples
        if s.labels["model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
    ]
    assert chat and chat[0].labels["namespace"] == "team-a"
    assert chat[0].labels["pod"].startswith("chat-")
    assert sum(s.value for s in chat) > 0
    buckets = [
        s
        for s in families["vllm:time_to_first_token_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert {"0.001", "2560.0", "+Inf"} <= {s.labels["le"] for s in buckets}


def test_pool_settings_get_set_validate(base_url: str) -> None:
    url = f"{base_url}/east/pool/workloads/team-a/chat"
    status, settings = http("GET", url)
    assert status == 200
    assert settings["routing"] == "shortest-expected-delay"  # the length-aware default
    assert settings["max_concurrency"] == 256
    assert "prefix-aware" in settings["routing_strategies"]
    wanted = {"max_concurrency": 64, "routing": "prefix-aware"}
    first = http("PUT", url, wanted)
    second = http("PUT", url, wanted)
    assert first == second and first[0] == 200
    assert (first[1]["max_concurrency"], first[1]["routing"]) == (64, "prefix-aware")
    status, error = http("PUT", url, {"max_concurrency": -3, "routing": "random"})
    assert status == 422
    assert set(error["errors"]) == {"max_concurrency", "routing"}
    assert http("GET", url)[1]["max_concurrency"] == 64  # nothing applied
    assert http("GET", f"{base_url}/east/pool/workloads/team-a/nope")[0] == 404
    status, listing = http("GET", f"{base_url}/east/pool/workloads")
    assert {w["deployment"] for w in listing["workloads"]} == {"chat", "big"}


def test_pool_replicas_and_drain(base_url: str) -> None:
    core = client.CoreV1Api(api(base_url))
    url = f"{base_url}/east/pool/workloads/team-a/chat/replicas"
    wait_for(lambda: any(r["state"] == "ready" for r in http("GET", url)[1]["replicas"]))
    replica = next(r for r in http("GET", url)[1]["replicas"] if r["state"] == "ready")
    assert {"name", "in_flight", "running", "waiting", "node"} <= set(replica)
    status, body = http("POST", f"{url}/{replica['name']}/drain")
    assert status == 202 and body["state"] in ("draining", "gone")
    # The drained pod leaves once idle; the Deployment controller replaces it.
    wait_for(
        lambda: replica["name"]
        not in {p.metadata.name for p in core.list_namespaced_pod("team-a").items}
    )
    assert len(core.list_namespaced_pod("team-a").items) >= 1
    assert http("POST", f"{url}/no-such-pod/drain")[0] == 404


def test_fault_injection_errors_metrics_down_and_node_failure(base_url: str) -> None:
    core = client.CoreV1Api(api(base_url, "faulty"))
    status, _ = http(
        "POST",
        f"{base_url}/_faults",
        {"cluster": "faulty", "error_rate": 1.0, "error_codes": [500]},
    )
    assert status == 200
    with pytest.raises(client.ApiException) as exc:
        core.list_node()
    assert exc.value.status == 500
    assert client.CoreV1Api(api(base_url, "east")).list_node().items  # other clusters fine
    assert http("POST", f"{base_url}/_faults", {"error_rate": 3})[0] == 422
    http(
        "POST",
        f"{base_url}/_faults",
        {"cluster": "faulty", "error_rate": 0.0, "metrics_down": True},
    )
    assert http("GET", f"{base_url}/faulty/metrics")[0] == 503
    http(
        "POST",
        f"{base_url}/_faults",
        {"cluster": "faulty", "metrics_down": False, "fail_node": "l4-0"},
    )
    node = core.read_node("l4-0")
    assert node.status.conditions[0].status == "Unknown"
    pods = core.list_namespaced_pod("ml").items
    assert all(p.spec.node_name != "l4-0" for p in pods)
    assert len(pods) == 2  # recreated on the healthy node
    status, text = http("GET", f"{base_url}/faulty/metrics")
    assert status == 200 and 'Hostname="l4-0"' not in text
    assert http("DELETE", f"{base_url}/_faults")[0] == 200
    assert core.read_node("l4-0").status.conditions[0].status == "True"


def test_merge_patch_and_json_patch_on_a_deployment(base_url: str) -> None:
    url = f"{base_url}/east/apis/apps/v1/namespaces/team-a/deployments/chat"
    status, body = http(
        "PATCH", url, {"metadata": {"labels": {"team": "a"}}}, "application/merge-patch+json"
    )
    assert status == 200 and body["metadata"]["labels"]["team"] == "a"
    ops = [
        {"op": "test", "path": "/metadata/labels/team", "value": "a"},
        {"op": "remove", "path": "/metadata/labels/team"},
    ]
    status, body = http("PATCH", url, ops, "application/json-patch+json")
    assert status == 200 and "team" not in body["metadata"]["labels"]
    status, body = http("PATCH", url, {"spec": {}}, "application/apply-patch+yaml")
    assert status == 415 and body["kind"] == "Status"


def test_hangs_delay_answers(base_url: str) -> None:
    http(
        "POST", f"{base_url}/_faults", {"cluster": "faulty", "hang_rate": 1.0, "hang_seconds": 0.3}
    )
    started = time.monotonic()
    assert http("GET", f"{base_url}/faulty/version")[0] == 200
    assert time.monotonic() - started >= 0.3
    http("DELETE", f"{base_url}/_faults")


def test_without_a_config_the_demo_fleet_is_served() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http("GET", f"{url}/healthz")[0] == 200, timeout=15)
        index = http("GET", f"{url}/")[1]
        assert [c["name"] for c in index["clusters"]] == ["east", "west"]
        deployments = client.AppsV1Api(api(url, "west")).list_deployment_for_all_namespaces()
        assert len(deployments.items) == 6
        assert len(client.CoreV1Api(api(url, "east")).list_node().items) == 6
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_port_already_taken_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "simulator", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"simulator: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
