"""Requests too long for the TTFT objective, live: the control loop counts them from the
simulated vLLM's prompt-length histogram, shows them in the workload's status (the API's and
the dashboard's), and does not scale for them."""

import json
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from scaling.loop import tick_cluster
from scaling.models import Workload
from tests.scaling.test_loop import CHAT, fleet, register

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def sparse_long_prompts(path: Path) -> Path:
    """A 500-token request every 3 s and, every 24 s from the sixth second, a 30,000-token
    one (over the 19,232 tokens an A100 prefills for Llama-3.1-8B within 2 s; prefilled in
    about 3 s): no request waits for another, and the work is a fraction of one replica, so
    nothing here is capacity that more replicas would fix. One output token each, so that a
    request's TTFT and its queueing delay (recorded when it finishes) reach the same scrape.
    """
    lines = [{"timestamp": 6000 + 24_000 * k, "input_length": 30_000} for k in range(40)]
    lines += [{"timestamp": 3000 * k + 2500, "input_length": 500} for k in range(320)]
    lines.sort(key=lambda line: line["timestamp"])
    path.write_text("".join(json.dumps(line | {"output_length": 1}) + "\n" for line in lines))
    return path


def test_long_prompts_are_shown_in_the_status_and_their_latency_scales_nothing(
    start_simulator, gpu_type, team_a, make_user, tmp_path
):
    load = {"kind": "trace", "trace": str(sparse_long_prompts(tmp_path / "long.jsonl"))}
    url = start_simulator(fleet(CHAT | {"load": load}), speed=1.0)
    cluster, workload = register(
        url, gpu_type, team_a, algorithm="slo", slo_ttft_p95_s=2.0, target=None
    )
    counted, controller = [], []
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        tick_cluster(cluster.pk)
        status = Workload.objects.get(pk=workload.pk).public_status
        assert status is not None
        # The latency controller (slo's TTFT step); the offered-work sizing after it counts
        # the long prompts' prefill as the work it is, and may add a replica for it.
        steps = [s for s in status.steps if s.name == "controller"]
        if steps and status.current is not None:
            controller.append((steps[0].value, status.current, steps[0].note))
        if status.infeasible is not None and status.infeasible.requests:
            counted.append(status.infeasible)
        time.sleep(3.0)  # a 30,000-token prompt spread over 3 s of counter rate, not 1

    assert counted, "no tick counted the long prompts"
    first = counted[0]
    # 30,000 tokens lies in vLLM's (20,000, 50,000] bucket, above the limit's: exact.
    assert not first.at_least and first.limit_tokens == 19_232
    assert first.requests <= first.total
    assert "too long to meet a 2 s TTFT on A100-80GB" in first.text
    # TTFT p95 went over the objective (the long prompts' own prefill) and the latency
    # controller held: requests were not waiting, so more replicas would not help.
    assert any("but requests wait only" in note for _, _, note in controller), controller
    assert all(value <= current for value, current, _ in controller), controller

    # The same status through the API and on the workload's page, at the latest tick that
    # counted some.
    deadline = time.monotonic() + 30.0
    latest = None
    while latest is None or not latest.requests:
        assert time.monotonic() < deadline, "no tick counted them again"
        time.sleep(1.0)
        tick_cluster(cluster.pk)
        status = Workload.objects.get(pk=workload.pk).public_status
        latest = status.infeasible if status is not None else None
    client = APIClient()
    client.force_login(make_user("viewer", team_a))
    served = client.get(f"/api/v1/workloads/{workload.pk}/").json()["status"]["infeasible"]
    assert served["text"] == latest.text and served["requests"] == latest.requests >= 1
    page = client.get(f"/workloads/{workload.pk}/").content.decode()
    assert latest.text[1:] in page and "not scaled for" in page


def test_the_count_is_shown_for_an_algorithm_that_reads_no_latency(
    start_simulator, gpu_type, team_a, tmp_path
):
    """hpa reads neither offered work nor TTFT; the status still counts the requests no
    replica could serve in time (the tick reads the prompt-length histogram for every
    policy: one metric name per cluster, not per workload)."""
    load = {"kind": "trace", "trace": str(sparse_long_prompts(tmp_path / "long.jsonl"))}
    url = start_simulator(fleet(CHAT | {"load": load}), speed=1.0)
    cluster, workload = register(url, gpu_type, team_a, algorithm="hpa")
    deadline = time.monotonic() + 40.0
    counted = None
    while counted is None or not counted.requests:
        assert time.monotonic() < deadline, "no tick counted the long prompts"
        tick_cluster(cluster.pk)
        status = Workload.objects.get(pk=workload.pk).public_status
        counted = status.infeasible if status is not None else None
        time.sleep(2.0)
    assert counted.limit_tokens == 19_232 and not counted.at_least
    assert "too long to meet a 2 s TTFT on A100-80GB" in counted.text
