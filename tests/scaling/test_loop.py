"""The control loop against a running simulator: real Kubernetes API, real exporter text."""

import json
import socket
import time
import urllib.request
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from kubernetes import client as k8s

from clusters.models import Cluster
from quotas.models import Quota
from scaling import loop
from scaling.loop import claim, tick_cluster
from scaling.models import ControlLoopState, Decision, ScalingPolicy, Workload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHAT: dict[str, Any] = {
    "namespace": "team-a",
    "name": "chat",
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "gpu_type": "A100-80GB",
    "replicas": 1,
    "cold_start_s": 2.0,
}


def fleet(*workloads):
    return {
        "clusters": [
            {
                "name": "east",
                "nodes": [{"gpu_type": "A100-80GB", "count": 2, "gpus_per_node": 8}],
                "workloads": list(workloads),
            }
        ]
    }


def register(url, gpu_type, tenant, name="chat", **policy):
    base = f"{url}/east"
    cluster, _ = Cluster.objects.get_or_create(
        name="east",
        defaults={
            "api_url": base,
            "metrics_source": "exporter",
            "metrics_url": f"{base}/metrics",
            "pool_url": f"{base}/pool",
        },
    )
    workload = Workload.objects.create(
        tenant=tenant,
        cluster=cluster,
        namespace="team-a",
        deployment=name,
        model_name=CHAT["model"],
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
    ScalingPolicy.objects.create(workload=workload, **fields)
    return cluster, workload


def spec_replicas(url, name="chat"):
    configuration = k8s.Configuration(host=f"{url}/east")
    apps = k8s.AppsV1Api(k8s.ApiClient(configuration))
    return apps.read_namespaced_deployment_scale(name, "team-a").spec.replicas


class Clock:
    """The control plane's clock for tick_cluster(now=...): the wall clock, moved ahead by
    ``skip``. The simulator keeps real time; only the control plane's clocks (engine windows,
    metric ages, grace periods, quota clocks) jump, so a test waits for them without sleeping.
    (Exporter samples carry no timestamps: they are stamped with the tick's clock.)"""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def skip(self, seconds: float) -> None:
        self.offset += seconds


def ticks_until(cluster, condition, timeout=30.0, every=1.0, clock=None):
    """Tick until ``condition``; ``every`` s apart on the wall clock, or, with a ``clock``,
    on the control plane's clock alone (a short real pause still lets the simulator run)."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        tick_cluster(cluster.pk, now=clock.now() if clock else None)
        count += 1
        if condition():
            return count
        if clock is None:
            time.sleep(every)
        else:
            clock.skip(every)
            time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_a_load_step_scales_up_within_two_ticks_and_down_after_stabilisation(
    start_simulator, gpu_type, team_a
):
    # Step load: 12 s quiet, 12 s busy, 12 s quiet (96 simulated seconds per period at 4x).
    load = {
        "kind": "step",
        "rate_rps": 0.5,
        "high_rps": 30.0,
        "period_s": 96.0,
        "output_mean": 200,
        "input_mean": 300,
    }
    url = start_simulator(fleet(CHAT | {"load": load}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, scale_down_stabilization_s=6.0)

    def over_target():
        workload.refresh_from_db()
        values = [m["value"] for m in workload.status.get("metrics", [])]
        return bool(values) and sum(values) / len(values) > 8 * 1.1

    ticks_until(cluster, over_target, timeout=40)
    seen_busy = time.monotonic()
    ticks_until(
        cluster, lambda: Decision.objects.filter(outcome="applied").exists(), timeout=3, every=1.0
    )
    assert time.monotonic() - seen_busy <= 3, "scale-up took more than two ticks"
    up = Decision.objects.filter(outcome="applied").order_by("at").first()
    assert up is not None
    assert up.final_replicas > up.current_replicas
    assert spec_replicas(url) >= up.final_replicas
    assert up.steps and up.reason

    # Tick until the load has dropped and the loop scales down; remember when the algorithm
    # last recommended the peak count: the scale-down must wait out the 6 s window from then.
    peak, last_peak_at = spec_replicas(url), time.monotonic()
    deadline = time.monotonic() + 60
    # A scale-down, not an earlier partial scale-up (1 -> 2 before 2 -> 4 also ends below peak).
    scaled_down = Decision.objects.filter(
        outcome="applied", final_replicas__lt=peak, current_replicas__gt=F("final_replicas")
    )
    while not scaled_down.exists():
        assert time.monotonic() < deadline, "never scaled down"
        tick_cluster(cluster.pk)
        workload.refresh_from_db()
        raw = workload.status.get("raw_desired")
        if raw is not None and raw >= peak:
            last_peak_at = time.monotonic()
        time.sleep(1.0)
    waited = time.monotonic() - last_peak_at
    assert waited >= 6.0 - 1.0, f"scaled down {waited:.1f} s after the peak, inside the window"
    assert spec_replicas(url) < peak


def test_dry_run_records_and_applies_nothing(start_simulator, gpu_type, team_a):
    busy = {"kind": "constant", "rate_rps": 30.0, "output_mean": 200, "input_mean": 300}
    url = start_simulator(fleet(CHAT | {"load": busy}), speed=4.0)
    cluster, _ = register(url, gpu_type, team_a, mode="dry-run")
    ticks_until(cluster, lambda: Decision.objects.filter(outcome="dry-run").exists())
    decision = Decision.objects.get(outcome="dry-run")
    assert decision.final_replicas > 1
    assert spec_replicas(url) == 1
    before = Decision.objects.count()
    for _ in range(3):  # the same would-be decision each tick: no new rows
        tick_cluster(cluster.pk)
    assert Decision.objects.count() == before


def test_a_saved_policy_shows_its_first_decision_even_when_it_holds(
    start_simulator, gpu_type, team_a
):
    steady = {"kind": "constant", "rate_rps": 2.0, "output_mean": 50, "input_mean": 100}
    url = start_simulator(fleet(CHAT | {"load": steady}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, target=1000, max_replicas=1)
    clock = Clock()
    for _ in range(3):  # held at 1: one Decision, then repeats counted on the status
        tick_cluster(cluster.pk, now=clock.now())
        clock.skip(5)
    assert Decision.objects.count() == 1
    status = Workload.objects.get(pk=workload.pk).public_status
    assert status is not None and (status.outcome, status.evaluations) == ("held", 3)
    assert status.since == Decision.objects.get().at
    policy = ScalingPolicy.objects.get(workload=workload)
    policy.target = 900  # still a hold at the same count
    policy.save()
    tick_cluster(cluster.pk, now=clock.now())
    latest = Decision.objects.latest("at")
    assert (latest.policy_version, latest.outcome, latest.final_replicas) == (2, "held", 1)
    assert latest.reason.startswith("first decision of policy v2: ")
    clock.skip(5)
    tick_cluster(cluster.pk, now=clock.now())  # the next hold under v2 adds nothing
    assert Decision.objects.count() == 2


def test_pods_the_scheduler_cannot_place_are_reported_in_the_status_and_a_decision(
    start_simulator, gpu_type, team_a
):
    small = fleet(CHAT | {"load": {"kind": "constant", "rate_rps": 1.0}})
    small["clusters"][0]["nodes"] = [{"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 4}]
    url = start_simulator(small, speed=4.0)
    # min 6 one-GPU replicas on one 4-GPU node: two pods stay Pending.
    cluster, workload = register(url, gpu_type, team_a, min_replicas=6, max_replicas=8)
    clock = Clock()

    def reported() -> bool:
        status = Workload.objects.get(pk=workload.pk).public_status
        return status is not None and "2 pods cannot be placed" in status.failure

    ticks_until(cluster, reported, clock=clock, every=5.0)
    status = Workload.objects.get(pk=workload.pk).public_status
    assert status is not None
    assert "cannot be placed: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu" in (
        status.failure
    )
    latest = Decision.objects.filter(workload=workload).latest("at")
    assert "2 pods cannot be placed" in latest.reason
    # The two Pending pods hold no GPU: counted against nothing (not warming, not in the
    # GPUs the tenant's quota is charged; issue 17 item 4). Once the 4 placed pods are ready:
    ticks_until(
        cluster,
        lambda: Workload.objects.get(pk=workload.pk).ready_replicas == 4,
        clock=clock,
        every=5.0,
    )
    stored = Workload.objects.get(pk=workload.pk)
    assert (stored.ready_replicas, stored.warming_replicas, stored.gpus_in_use) == (4, 0, 4)


def test_a_per_replica_series_keeps_how_many_pods_each_point_averaged(
    start_simulator, gpu_type, team_a
):
    busy = {"kind": "constant", "rate_rps": 30.0, "output_mean": 200, "input_mean": 300}
    url = start_simulator(fleet(CHAT | {"load": busy, "replicas": 2}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, algorithm="kpa", mode="dry-run")

    def history():
        workload.refresh_from_db()
        return workload.loop_state.get("history") or {}

    ticks_until(cluster, lambda: len(history().get("pods", [])) >= 3, clock=Clock())
    points = history()
    # kpa turns each point into a pool total with its own pod count (Knative's scraper
    # multiplies each scrape's average by the ready pods then), not with the count now.
    assert [t for t, _ in points["pods"]] == [t for t, _ in points["metric"]]
    assert {n for _, n in points["pods"]} == {2.0}


def test_missing_metrics_hold_instead_of_scaling_to_the_minimum(start_simulator, gpu_type, team_a):
    quiet = {"kind": "constant", "rate_rps": 0.2}
    url = start_simulator(fleet(CHAT | {"replicas": 3, "load": quiet}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a)
    request = urllib.request.Request(
        f"{url}/_faults",
        data=b'{"cluster": "east", "metrics_down": true}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()
    for _ in range(3):
        tick_cluster(cluster.pk)
    workload.refresh_from_db()
    assert workload.status["outcome"] == "held"
    assert "metrics source" in workload.status["reason"]
    assert spec_replicas(url) == 3
    assert not Decision.objects.filter(outcome="applied").exists()


def test_an_unreachable_cluster_holds_every_workload_and_says_why(gpu_type, team_a):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}/east"
    cluster, workload = register(base.removesuffix("/east"), gpu_type, team_a)
    second = Workload.objects.create(
        tenant=team_a,
        cluster=cluster,
        namespace="team-a",
        deployment="other",
        model_name=CHAT["model"],
        gpu_type=gpu_type,
    )
    report = tick_cluster(cluster.pk)
    assert report is not None and "list deployments" in report.error
    for w in (workload, second):
        w.refresh_from_db()
        assert w.status["outcome"] == "error" and "list deployments" in w.status["reason"]
        assert w.observed_at is None  # never observed: nothing was written as if it had been
    assert Decision.objects.get(workload=workload).outcome == "error"
    assert not Decision.objects.filter(workload=second).exists()  # no policy, no decision


def test_quota_caps_growth_and_says_why(start_simulator, gpu_type, team_a, team_b):
    busy = {"kind": "constant", "rate_rps": 40.0, "output_mean": 200, "input_mean": 300}
    url = start_simulator(fleet(CHAT | {"load": busy}), speed=4.0)
    Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=1, borrowing_limit=1)
    Quota.objects.create(tenant=team_b, gpu_type=gpu_type, nominal=4)  # lends what it idles
    cluster, _ = register(url, gpu_type, team_a)
    ticks_until(cluster, lambda: Decision.objects.filter(outcome="applied").exists())
    decision = Decision.objects.get(outcome="applied")
    assert decision.final_replicas == 2  # nominal 1 + borrowing 1, one GPU per replica
    expected = (
        "quota: team-a uses 2 A100-80GB GPUs of its nominal 1 plus borrowing limit 1: at its "
        "limit; room for 1 more replica → 2 replicas (wanted "
    )
    assert decision.reason.startswith(expected)
    assert spec_replicas(url) == 2


def test_one_writer_per_cluster(start_simulator, gpu_type, team_a):
    url = start_simulator(fleet(CHAT | {"load": {"kind": "constant"}}), speed=4.0)
    cluster, _ = register(url, gpu_type, team_a)
    assert claim(cluster.pk, "other-worker")
    assert tick_cluster(cluster.pk) is None  # the lease is held: the tick is skipped
    ControlLoopState.objects.filter(cluster=cluster).update(lease_until=None)
    report = tick_cluster(cluster.pk)
    assert report is not None and report.error == ""


def test_a_dead_workers_lease_blocks_its_cluster_for_loop_lease_s_only(
    start_simulator, gpu_type, team_a, settings
):
    settings.LOOP_LEASE_S = 0.5
    url = start_simulator(fleet(CHAT | {"load": {"kind": "constant"}}), speed=4.0)
    cluster, _ = register(url, gpu_type, team_a)
    assert claim(cluster.pk, "killed-mid-tick")  # and never renewed nor released
    assert tick_cluster(cluster.pk) is None
    time.sleep(0.6)
    report = tick_cluster(cluster.pk)
    assert report is not None and report.error == ""


def test_a_tick_that_lost_its_lease_writes_nothing_more(
    start_simulator, gpu_type, team_a, settings, monkeypatch
):
    busy = {"kind": "constant", "rate_rps": 30.0, "output_mean": 200, "input_mean": 300}
    url = start_simulator(fleet(CHAT | {"load": busy}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a)
    ticks_until(cluster, lambda: Decision.objects.exists())  # busy: it has scaled
    before = (spec_replicas(url), Decision.objects.count())
    settings.LOOP_LEASE_S = 0.01  # every keep() renews
    original = loop.kubernetes.list_pods

    def observed_while_another_worker_takes_over(*args, **kwargs):
        pods = original(*args, **kwargs)
        ControlLoopState.objects.filter(cluster=cluster).update(lease_owner="the-other-worker")
        return pods

    monkeypatch.setattr(loop.kubernetes, "list_pods", observed_while_another_worker_takes_over)
    status = Workload.objects.get(pk=workload.pk).status
    report = tick_cluster(cluster.pk, now=time.time() + 600)  # would scale down, long after
    assert report is not None and "lease of cluster" in report.error
    assert (spec_replicas(url), Decision.objects.count()) == before
    assert Workload.objects.get(pk=workload.pk).status == status
    state = ControlLoopState.objects.get(cluster=cluster)
    assert state.lease_owner == "the-other-worker"  # its lease, untouched


def test_a_tick_uses_a_constant_number_of_queries(start_simulator, gpu_type, team_a, team_b):
    quiet = {"kind": "constant", "rate_rps": 0.5}
    workloads = [CHAT | {"name": f"chat-{i}", "load": quiet} for i in range(6)]
    url = start_simulator(fleet(*workloads), speed=4.0)
    Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=8)
    Quota.objects.create(tenant=team_b, gpu_type=gpu_type, nominal=8)
    cluster, _ = register(url, gpu_type, team_a, name="chat-0")
    tick_cluster(cluster.pk)
    tick_cluster(cluster.pk)  # steady state: no new Decision rows in the measured ticks
    with CaptureQueriesContext(connection) as one:
        tick_cluster(cluster.pk)
    for i in range(1, 6):
        register(url, gpu_type, team_a, name=f"chat-{i}")
    tick_cluster(cluster.pk)
    tick_cluster(cluster.pk)
    with CaptureQueriesContext(connection) as six:
        report = tick_cluster(cluster.pk)
    assert report is not None and report.workloads == 6

    # Decision rows, quota usage and ResourceQuota results are written in one statement each
    # (in its own transaction), only when something changed; everything else runs on every
    # tick, whatever the fleet size.
    def steady(queries):
        return [
            q["sql"][:40]
            for q in queries.captured_queries
            if not q["sql"].startswith(
                (
                    'INSERT INTO "scaling_decision"',
                    'UPDATE "scaling_controlloopstate" SET "resource',
                    'UPDATE "quotas_quota"',
                    "BEGIN",
                    "COMMIT",
                    "SAVEPOINT",
                    "RELEASE SAVEPOINT",
                )
            )
        ]

    assert steady(six) == steady(one)
    assert len(six) <= len(steady(six)) + 3 * 3


def set_faults(url, **faults):
    body = json.dumps({"cluster": "east", **faults}).encode()
    request = urllib.request.Request(
        f"{url}/_faults", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=5).close()


def tick_for(cluster, clock, seconds, every=1.0):
    """Tick every `every` s of the control plane's clock for `seconds`, without sleeping;
    the Deployment's replicas after each tick."""
    seen = []
    for _ in range(round(seconds / every)):
        tick_cluster(cluster.pk, now=clock.now())
        seen.append(Workload.objects.get(cluster=cluster).status.get("current"))
        clock.skip(every)
    return seen


def test_a_metrics_outage_neither_scales_to_zero_nor_right_after(start_simulator, gpu_type, team_a):
    # kpa, min 0, no traffic: it would scale to zero after its grace. The metrics endpoint
    # goes silent for longer than max_metric_age_s: the grace must not run on remembered
    # samples, and after the outage a stable window of fresh data comes first.
    idle = {"kind": "constant", "rate_rps": 0.0}
    url = start_simulator(fleet(CHAT | {"replicas": 1, "load": idle}))
    cluster, _ = register(
        url,
        gpu_type,
        team_a,
        algorithm="kpa",
        aggregation="total",
        min_replicas=0,
        max_metric_age_s=3,
        stable_window_s=8,
        scale_to_zero_grace_s=4,
    )

    def seen_no_traffic():
        return bool(Workload.objects.get(cluster=cluster).loop_state["history"]["metric"])

    # The replica is up and reports 0 (the simulator's time); from then on nothing changes in
    # the cluster but the metrics fault, and the control plane's clock jumps.
    clock = Clock()
    ticks_until(cluster, seen_no_traffic, timeout=15.0, clock=clock)
    tick_for(cluster, clock, 1)  # the grace has started
    assert spec_replicas(url) == 1
    set_faults(url, metrics_down=True)
    tick_for(cluster, clock, 6)  # twice max_metric_age_s without a sample
    assert spec_replicas(url) == 1
    set_faults(url, metrics_down=False)
    first_window = clock.now()
    tick_for(cluster, clock, 7)  # inside the 8 s recovery window
    assert spec_replicas(url) == 1
    assert not Decision.objects.filter(outcome="applied").exists()
    # Afterwards the grace runs on fresh evidence only, and ends.
    ticks_until(cluster, lambda: spec_replicas(url) == 0, timeout=20.0, clock=clock)
    assert clock.now() - first_window >= 8.0
    applied = Decision.objects.get(outcome="applied")
    assert applied.final_replicas == 0


def test_a_hanging_cluster_api_is_one_error_decision_with_a_growing_count(
    start_simulator, gpu_type, team_a, settings
):
    settings.KUBERNETES_TIMEOUT_S = 0.5
    url = start_simulator(fleet(CHAT | {"replicas": 2}))
    cluster, workload = register(url, gpu_type, team_a)
    tick_cluster(cluster.pk)
    set_faults(url, hang_rate=1.0, hang_seconds=5)
    for _ in range(4):
        tick_cluster(cluster.pk)
    errors = Decision.objects.filter(workload=workload, outcome="error")
    assert errors.count() == 1
    assert errors.get().reason == (
        "held: cluster east's API did not answer within 0.5 s (list deployments)"
    )
    workload.refresh_from_db()
    assert workload.status["error"]["count"] == 4
    assert workload.status["error"]["cause"] == ["timeout", "list deployments"]
    # The engine's clocks stopped: its first fresh readings after this will scale nothing down.
    assert workload.loop_state["memory"]["outage_since"] is not None
    state = ControlLoopState.objects.get(cluster=cluster)
    assert state.errors["timeout / list deployments"]["count"] == 4
    assert state.last_error == "cluster east's API did not answer within 0.5 s (list deployments)"


# One replica more per minute (hpa): one scale event uses up the period.
ONE_PER_MINUTE = {"scale_up_max_pods": 1, "scale_up_max_percent": 1, "scale_up_period_s": 60}
BUSY = {"kind": "constant", "rate_rps": 30.0, "output_mean": 200, "input_mean": 300}


def scale_events(workload):
    workload.refresh_from_db()
    return workload.loop_state["memory"]["scale_events"]


def test_a_failed_apply_does_not_use_up_the_rate_limit(start_simulator, gpu_type, team_a):
    url = start_simulator(fleet(CHAT | {"load": BUSY}), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, target=2, max_replicas=10, **ONE_PER_MINUTE)
    clock = Clock()
    set_faults(url, error_rate=1.0, error_codes=[500], match_methods=["PUT"], match_path="/scale")
    ticks_until(cluster, lambda: Decision.objects.filter(outcome="error").exists(), clock=clock)
    failed = Decision.objects.get(outcome="error")
    assert (failed.current_replicas, failed.final_replicas) == (1, 2)
    assert "apply failed" in failed.reason
    assert spec_replicas(url) == 1
    assert scale_events(workload) == []

    # The next tick may still take its one replica: the failed write did not count.
    set_faults(url, error_rate=0.0)
    clock.skip(1.0)
    tick_cluster(cluster.pk, now=clock.now())
    applied = Decision.objects.get(outcome="applied")
    assert (applied.current_replicas, applied.final_replicas) == (1, 2)
    assert spec_replicas(url) == 2

    # The applied one does count, from the tick that asked for it: no more this minute.
    clock.skip(1.0)
    tick_cluster(cluster.pk, now=clock.now())
    assert [change for _, change in scale_events(workload)] == [1]
    workload.refresh_from_db()
    assert (workload.status["outcome"], workload.status["desired"]) == ("held", 2)
    assert "rate limit" in workload.status["reason"]
    assert spec_replicas(url) == 2


def test_a_dry_run_does_not_use_up_the_rate_limit(start_simulator, gpu_type, team_a):
    url = start_simulator(fleet(CHAT | {"load": BUSY}), speed=4.0)
    cluster, workload = register(
        url, gpu_type, team_a, target=2, max_replicas=10, mode="dry-run", **ONE_PER_MINUTE
    )
    clock = Clock()
    ticks_until(cluster, lambda: Decision.objects.filter(outcome="dry-run").exists(), clock=clock)
    assert Decision.objects.get(outcome="dry-run").final_replicas == 2
    assert scale_events(workload) == []

    # Enforced from the next tick, which takes its one replica at once.
    ScalingPolicy.objects.filter(workload=workload).update(mode="enforce")
    clock.skip(1.0)
    tick_cluster(cluster.pk, now=clock.now())
    applied = Decision.objects.get(outcome="applied")
    assert (applied.current_replicas, applied.final_replicas) == (1, 2)
    assert spec_replicas(url) == 2


def test_a_missing_deployment_is_said_in_words_and_bannered_on_its_page(
    start_simulator, gpu_type, team_a, client, make_user
):
    # Saved while the cluster could not check it, say: the loop finds it missing.
    url = start_simulator(fleet(CHAT), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, name="gone")
    tick_cluster(cluster.pk)
    workload.refresh_from_db()
    why = "Deployment gone not found in namespace team-a on cluster east"
    assert workload.status["outcome"] == "error" and workload.status["reason"] == why
    client.force_login(make_user("watcher", team_a, "viewer"))
    page = client.get(f"/workloads/{workload.pk}/").content.decode()
    banner = page.split('id="workload-problem">')[1].split("</div>")[0]
    assert why in banner
