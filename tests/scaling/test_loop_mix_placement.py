"""A workload on two GPU types whose A40 node holds fewer replicas than the mix wants there:
the pods the scheduler refuses are reported, charged to no quota and scaled away, and the mix
moves their demand to the A100s (simulator: its scheduler decides what fits)."""

import re
from typing import Any

import pytest
from kubernetes import client as k8s

from quotas.models import Quota
from scaling.models import Workload
from tests.scaling.test_loop import Clock, spec_replicas, ticks_until
from tests.scaling.test_loop_mix import a40, mixed, mixed_fleet, status_reason

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

__all__ = ["a40"]  # the fixture, used by name

A40_GPUS = 1  # the A40 node: fewer GPUs than the A40 replicas the mix wants (3 to 6)


def small_a40_node() -> dict[str, Any]:
    fleet = mixed_fleet()
    fleet["clusters"][0]["nodes"][1]["gpus_per_node"] = A40_GPUS
    return fleet


def unschedulable(url: str, deployment: str) -> int:
    core = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=f"{url}/east")))
    pods = core.list_namespaced_pod("team-a").items
    return sum(
        1
        for pod in pods
        if pod.metadata.name.startswith(f"{deployment}-")
        and any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in pod.status.conditions or []
        )
    )


REFUSED = re.compile(
    r"A40-48GB: (\d+) of (\d+) cannot be placed \((.*?)\), demand moved to A100-80GB"
)
MIX = re.compile(r"^(\d+) x A100-80GB(?: \+ (\d+) x A40-48GB)?: \$")


def test_a40_replicas_that_cannot_be_placed_move_to_the_a100s(
    start_simulator, gpu_type, a40, team_a
):
    Quota.objects.create(tenant=team_a, gpu_type=a40, nominal=8)
    url = start_simulator(small_a40_node(), speed=4.0)
    cluster, workload = mixed(url, gpu_type, a40, team_a)
    clock = Clock()
    # The mix asks for more A40s than the node holds: the scheduler refuses the rest.
    ticks_until(cluster, lambda: REFUSED.search(status_reason(workload)), clock=clock)
    found = REFUSED.search(status_reason(workload))
    assert found is not None
    stuck, pods = int(found[1]), int(found[2])
    assert pods - stuck == A40_GPUS and "nvidia.com/gpu" in found[3], found[0]
    # The refused pods hold no GPU: neither the workload's parts nor the A40 quota count them.
    parts = {p["deployment"]: p for p in Workload.objects.get(pk=workload.pk).loop_state["parts"]}
    assert parts["chat-a40"]["holding"] <= A40_GPUS
    assert Quota.objects.get(gpu_type=a40).used_gpus <= A40_GPUS

    # The A40s are cut back to what was placed, the rest of the demand is on the A100s, and
    # make before break lets the mix settle (it no longer waits for A40s that never come).
    def settled() -> bool:
        return (
            spec_replicas(url, "chat-a40") <= A40_GPUS
            and unschedulable(url, "chat-a40") == 0
            and "make before break" not in status_reason(workload)
        )

    ticks_until(cluster, settled, clock=clock)
    for _ in range(3):
        ticks_until(cluster, lambda: True, clock=clock)
    reason = status_reason(workload)
    mix = MIX.match(reason)
    assert mix is not None, reason
    a100s, a40s = int(mix[1]), int(mix[2] or 0)
    assert (spec_replicas(url), spec_replicas(url, "chat-a40")) == (a100s, a40s)
    assert a40s <= A40_GPUS and unschedulable(url, "chat-a40") == 0
    # The policy's total is unchanged (3 A100 replicas' worth), the A100s carry what the A40s
    # could not, and the reason still says why the A40s are held back.
    status = Workload.objects.get(pk=workload.pk).public_status
    assert status is not None and status.desired == 3
    assert "A40-48GB: " in reason and "could not be placed" in reason, reason
    assert "make before break" not in reason
