"""Where a replica can still go: free GPUs per node, the largest replica that fits, and GPUs
stranded by fragmentation. Pure functions over the synced inventory (clusters.inventory).

A replica's pod needs all its GPUs on one node (the device plugin hands out a node's devices),
so twelve free GPUs spread 3 + 3 + 3 + 3 over four nodes place no 4-GPU replica at all: for
that replica size all twelve are stranded. The fleet page shows, per cluster and GPU type, the
largest replica that still fits and what is stranded for the largest replica its workloads
run, which is the first question when a scale-up stays Pending.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """One cluster's GPUs of one type, as the last inventory sync saw them."""

    nodes: int
    ready_nodes: int
    gpus: int  # capacity, every node
    allocatable: int  # every node
    free: int  # allocatable minus what pods hold, on ready nodes
    largest: int  # most GPUs free on one ready node: the largest replica that still fits
    replica_gpus: int  # the replica size `placeable` and `stranded` are counted for (0: none)
    placeable: int  # how many more replicas of `replica_gpus` fit
    stranded: int  # free GPUs that no replica of `replica_gpus` can use


@dataclass(frozen=True)
class NodeGpus:
    capacity: int
    allocatable: int
    requested: int
    ready: bool

    @property
    def free(self) -> int:
        return max(self.allocatable - self.requested, 0) if self.ready else 0


def placement(nodes: Iterable[NodeGpus], replica_gpus: int) -> Placement:
    """Free GPUs, the largest fit, and what ``replica_gpus``-GPU replicas can still use."""
    nodes = list(nodes)
    free = [n.free for n in nodes]
    placeable = sum(f // replica_gpus for f in free) if replica_gpus > 0 else 0
    return Placement(
        nodes=len(nodes),
        ready_nodes=sum(n.ready for n in nodes),
        gpus=sum(n.capacity for n in nodes),
        allocatable=sum(n.allocatable for n in nodes),
        free=sum(free),
        largest=max(free, default=0),
        replica_gpus=replica_gpus,
        placeable=placeable,
        stranded=sum(free) - placeable * replica_gpus if replica_gpus > 0 else 0,
    )
