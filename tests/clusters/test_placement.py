"""Where a replica can still go: free GPUs per node, the largest fit, fragmentation; and how a
pod's GPUs are read from its spec (clusters.kubernetes.pod_gpus)."""

from __future__ import annotations

import pytest

from clusters.kubernetes import pod_gpus
from clusters.placement import NodeGpus, placement


def nodes(*free: int, size: int = 8) -> list[NodeGpus]:
    return [NodeGpus(size, size, size - f, True) for f in free]


def test_free_gpus_spread_over_nodes_place_no_large_replica() -> None:
    found = placement(nodes(3, 3, 3, 3), replica_gpus=4)
    assert (found.free, found.largest, found.placeable, found.stranded) == (12, 3, 0, 12)


def test_stranded_counts_only_the_remainders() -> None:
    found = placement(nodes(8, 5, 2, 0), replica_gpus=4)
    assert (found.free, found.largest, found.placeable, found.stranded) == (15, 8, 3, 3)
    one = placement(nodes(8, 5, 2, 0), replica_gpus=1)
    assert (one.placeable, one.stranded) == (15, 0)


def test_a_node_that_is_not_ready_or_overcommitted_offers_nothing() -> None:
    found = placement(
        [NodeGpus(8, 8, 0, False), NodeGpus(8, 6, 7, True), NodeGpus(4, 4, 1, True)],
        replica_gpus=2,
    )
    assert (found.nodes, found.ready_nodes, found.gpus, found.allocatable) == (3, 2, 20, 18)
    assert (found.free, found.largest, found.placeable, found.stranded) == (3, 3, 1, 1)


def test_without_workloads_nothing_is_called_stranded() -> None:
    found = placement(nodes(3, 1), replica_gpus=0)
    assert (found.free, found.largest, found.placeable, found.stranded) == (4, 3, 0, 0)
    assert placement([], replica_gpus=4).largest == 0


def gpu(requests: str | None = None, limits: str | None = None) -> dict[str, object]:
    resources: dict[str, dict[str, str]] = {}
    if requests is not None:
        resources["requests"] = {"nvidia.com/gpu": requests, "cpu": "4"}
    if limits is not None:
        resources["limits"] = {"nvidia.com/gpu": limits}
    return {"name": "c", "resources": resources}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": [gpu("4", "4")]}, 4),
        ({"containers": [gpu(limits="2")]}, 2),  # a request defaults to the limit
        ({"containers": [gpu("1", "1"), gpu("2", "2"), {"name": "sidecar"}]}, 3),
        ({"containers": [gpu("1", "1")], "initContainers": [gpu("4", "4")]}, 4),
        ({"containers": [gpu("2", "2")], "initContainers": [gpu("1", "1")]}, 2),
        ({"containers": [{"name": "cpu-only", "resources": {"requests": {"cpu": "1"}}}]}, 0),
        ({}, 0),
    ],
)
def test_pod_gpus_are_what_the_scheduler_reserves(spec: dict[str, object], expected: int) -> None:
    assert pod_gpus(spec) == expected
