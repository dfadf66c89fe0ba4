"""A workload on two GPU types: the control loop splits the policy's total across them at the
least cost per hour, within each type's quota, and says so in one decision (simulator)."""

import json
import re
import urllib.request
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from quotas.models import GpuType, Quota
from scaling.loop import tick_cluster
from scaling.models import Decision, ScalingPolicy, Workload, WorkloadVariant
from tests.scaling.test_loop import CHAT, Clock, register, spec_replicas, ticks_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BUSY = {"kind": "constant", "rate_rps": 4.0}


def mixed_fleet() -> dict[str, Any]:
    return {
        "clusters": [
            {
                "name": "east",
                "nodes": [
                    {"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 8},
                    {"gpu_type": "A40-48GB", "count": 1, "gpus_per_node": 8},
                ],
                "workloads": [
                    CHAT | {"load": BUSY},
                    CHAT | {"name": "chat-a40", "gpu_type": "A40-48GB", "replicas": 0},
                ],
            }
        ]
    }


@pytest.fixture
def a40(db: Any) -> GpuType:
    return GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.30", node_label="NVIDIA-A40"
    )


def mixed(url: str, gpu_type: GpuType, a40: GpuType, tenant: Any) -> tuple[Any, Workload]:
    # The policy wants 3 A100 replicas (its minimum: the target is never reached). An A40
    # does a third to a fifth of an A100's work on these requests for under a seventh of its
    # price; at most 6 A40s may run, so the cheapest mix holds both kinds.
    # Least-outstanding routing: the A40s get work whatever their longer decode (under a
    # shortest-expected-delay router mix.routed would leave them idle at these outputs);
    # the simulator's replicas start in 2 s, so a change of types waits that (mix.dwell).
    cluster, workload = register(
        url,
        gpu_type,
        tenant,
        target=1000,
        min_replicas=3,
        routing="least-outstanding",
        cold_start_s=2.0,
    )
    WorkloadVariant.objects.create(
        workload=workload, gpu_type=a40, deployment="chat-a40", max_replicas=6
    )
    return cluster, workload


def latest_reason(workload: Workload) -> str:
    return Decision.objects.filter(workload=workload).latest("at", "pk").reason


def status_reason(workload: Workload) -> str:
    """The latest evaluation's reason (a steady hold updates it, not the Decision log)."""
    status = Workload.objects.get(pk=workload.pk).public_status
    return status.reason if status is not None else ""


def test_a_workload_with_a100_and_a40_variants_gets_the_cheaper_mix(
    start_simulator, gpu_type, a40, team_a
):
    url = start_simulator(mixed_fleet(), speed=4.0)
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    clock = Clock()
    ticks_until(cluster, lambda: spec_replicas(url, "chat-a40") > 0, clock=clock)
    # The A100s shrink once the A40s are ready (make before break, test_loop_mix_quota).
    ticks_until(cluster, lambda: spec_replicas(url) < 3, clock=clock)

    reason = latest_reason(workload)
    found = MIX.match(reason)
    assert found, reason
    a100s, a40s, cost = int(found[1]), int(found[2]), float(found[3])
    assert (spec_replicas(url), spec_replicas(url, "chat-a40")) == (a100s, a40s)
    # The Decision keeps each type's count as set (the dashboard's cards read them).
    recorded = Decision.objects.filter(workload=workload).latest("at", "pk").metrics["types"]
    assert [(t["gpu_type"], t["desired"]) for t in recorded] == [
        ("A100-80GB", a100s),
        ("A40-48GB", a40s),
    ]
    assert 1 <= a100s < 3 and cost == pytest.approx(2.20 * a100s + 0.30 * a40s)
    assert cost < 6.60  # three A100s, what the policy asked for
    status = Workload.objects.get(pk=workload.pk).public_status
    # The policy's total stays in A100 replicas; the reason says how it is made up.
    assert status is not None and status.outcome == "applied" and status.desired == 3
    # Its classes came from the prompt-length histogram (an hpa policy reads it for the mix
    # alone), and the mix it chose is remembered for the next tick's hysteresis.
    counters = Workload.objects.get(pk=workload.pk).loop_state["counters"]
    assert counters["mix_prompt_window"] and counters["mix"]["goal"]["A40-48GB"] == a40s


MIX = re.compile(
    r"(\d+) x A100-80GB \+ (\d+) x A40-48GB: \$([\d.]+)/h; all A100-80GB would be \$6\.60/h"
)


def test_a_quota_of_no_a40_puts_everything_on_the_a100s(start_simulator, gpu_type, a40, team_a):
    Quota.objects.create(tenant=team_a, gpu_type=a40, nominal=0)
    url = start_simulator(mixed_fleet(), speed=4.0)
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    clock = Clock()
    # Long enough for the mean request sizes to be known (two counter readings) and a mix
    # to be chosen from them.
    ticks_until(
        cluster,
        lambda: status_reason(workload).startswith("3 x A100-80GB: $6.60/h"),
        clock=clock,
    )
    for _ in range(3):
        ticks_until(cluster, lambda: True, clock=clock)
    assert spec_replicas(url, "chat") == 3
    assert spec_replicas(url, "chat-a40") == 0
    assert "A40" not in status_reason(workload).split(";")[0]


def pool_routing(url: str, name: str) -> str:
    with urllib.request.urlopen(f"{url}/east/pool/workloads/team-a/{name}") as response:
        return str(json.loads(response.read())["routing"])


def test_the_policys_pool_settings_reach_every_gpu_types_deployment(
    start_simulator, gpu_type, a40, team_a
):
    url = start_simulator(mixed_fleet(), speed=4.0)
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    ScalingPolicy.objects.filter(workload=workload).update(routing="least-outstanding")
    tick_cluster(cluster.pk)
    assert (pool_routing(url, "chat"), pool_routing(url, "chat-a40")) == ("least-outstanding",) * 2


def test_a_tick_of_mixed_workloads_uses_a_constant_number_of_queries(
    start_simulator, gpu_type, a40, team_a
):
    quiet = {"kind": "constant", "rate_rps": 0.5}
    pairs = [
        deployment
        for i in range(4)
        for deployment in (
            CHAT | {"name": f"chat-{i}", "load": quiet},
            CHAT | {"name": f"chat-{i}-a40", "gpu_type": "A40-48GB", "replicas": 0},
        )
    ]
    fleet = mixed_fleet()
    fleet["clusters"][0]["workloads"] = pairs
    url = start_simulator(fleet, speed=4.0)
    Quota.objects.create(tenant=team_a, gpu_type=a40, nominal=8)

    def add(i: int) -> Any:
        cluster, workload = register(url, gpu_type, team_a, name=f"chat-{i}", target=1000)
        WorkloadVariant.objects.create(workload=workload, gpu_type=a40, deployment=f"chat-{i}-a40")
        return cluster

    def measured(cluster: Any) -> list[str]:
        for _ in range(2):  # steady state: no new Decision rows in the measured tick
            tick_cluster(cluster.pk)
        with CaptureQueriesContext(connection) as queries:
            tick_cluster(cluster.pk)
        return [
            q["sql"][:40] for q in queries.captured_queries if not q["sql"].startswith(SOMETIMES)
        ]

    cluster = add(0)
    one = measured(cluster)
    for i in range(1, 4):
        add(i)
    assert measured(cluster) == one


# Written only when something changed (see test_loop's query count).
SOMETIMES = (
    'INSERT INTO "scaling_decision"',
    'UPDATE "scaling_controlloopstate" SET "resource',
    'UPDATE "quotas_quota"',
    "BEGIN",
    "COMMIT",
    "SAVEPOINT",
    "RELEASE SAVEPOINT",
)
