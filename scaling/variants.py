"""A workload on several GPU types in the live loop: its variants observed as one pool, and the
policy's demand split across them at the least cost per hour (scaling.engine.mix).

The policy decides the total as for any workload, in replicas of the primary type (its own
metric, bounds and rate limits over the pods of every variant). This module turns that total
into request classes, asks ``mix.plan`` for the cheapest replicas per type within each type's
bounds (the variant's min/max, the tenant's quota for the type, the GPUs still placeable on
the cluster), and explains the answer with ``mix.explain``. The loop then has the quota
allocation check each type's count (scaling.allocation, one wish per type) and applies each
variant's Deployment.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from clusters.kubernetes import DeploymentState, PodState, missing_deployment
from clusters.models import GpuNode
from clusters.placement import NodeGpus, placement
from quotas.maths import available
from quotas.models import GpuType, Quota
from scaling import observe
from scaling.capacity import replica_capacity
from scaling.engine import ReplicaCapacity, mix
from scaling.models import ScalingPolicy, Workload

# Counters the mean request sizes are taken from (read for every workload with variants).
MIX_METRICS = (observe.PROMPT_TOKENS, observe.GENERATION_TOKENS, observe.REQUESTS_FINISHED)
# Replicas do not move between types for a saving under this share of the cost: a move
# costs a cold start on the new type, and noise in the observed sizes must not flap the mix.
HYSTERESIS = 0.05
NO_TTFT_LIMIT = 10**9  # prompt tokens: without a TTFT objective every type serves every prompt


@dataclass(frozen=True)
class Part:
    """One GPU type of a workload as this tick observed it (the primary first)."""

    gpu_type: GpuType
    deployment: DeploymentState
    min_replicas: int
    max_replicas: int
    variant: int | None  # the WorkloadVariant's id; None for the primary

    @property
    def name(self) -> str:
        return self.gpu_type.name


@dataclass(frozen=True)
class Pool:
    """Every variant of a workload, and what the policy sees of them together."""

    parts: tuple[Part, ...]
    pods: list[PodState]
    combined: DeploymentState  # summed replicas, so the policy decides the total


@dataclass(frozen=True)
class RequestSizes:
    """Mean tokens per request, from the counters' rates over one tick."""

    prompt_tokens: float
    output_tokens: float


def observe_pool(
    workload: Workload,
    policy: ScalingPolicy,
    primary: DeploymentState,
    deployments: dict[tuple[str, str], DeploymentState],
    pods: dict[str, list[PodState]],
    sizes: RequestSizes | None,
) -> Pool | str:
    """The workload's variants as one pool; why not, when a variant's Deployment is gone.

    The policy decides in replicas of the primary type, so the pool's replicas are counted
    in them too (``combined``): each type's replicas weighted by the work one of them does
    beside a primary replica, for the last known request sizes (1 before any is known).
    Counted as plain replicas, a rate limit's floor (Knative: at most halve per step) would
    keep a pool of slower replicas from ever shrinking to what the policy wants."""
    parts = [Part(workload.gpu_type, primary, 0, policy.max_replicas, None)]
    for variant in workload.variants.all():
        found = deployments.get((workload.namespace, variant.deployment))
        if found is None:
            return missing_deployment(workload.cluster, workload.namespace, variant.deployment)
        parts.append(
            Part(variant.gpu_type, found, variant.min_replicas, variant.max_replicas, variant.pk)
        )
    weights = _weights(workload, policy, parts, sizes)

    def count(field: str) -> int:
        return round(sum(getattr(p.deployment, field) * weights[p.name] for p in parts))

    combined = replace(
        primary,
        spec_replicas=count("spec_replicas"),
        replicas=count("replicas"),
        ready_replicas=count("ready_replicas"),
    )
    every = [pod for p in parts for pod in observe.pods_of(p.deployment, pods)]
    return Pool(tuple(parts), every, combined)


def _weights(
    workload: Workload, policy: ScalingPolicy, parts: list[Part], sizes: RequestSizes | None
) -> dict[str, float]:
    """Primary replicas one replica of each type is worth (1 where it cannot be told)."""
    capacities = {p.name: _capacity(workload, policy, p) for p in parts}
    primary = capacities[parts[0].name]
    if sizes is None or primary is None:
        return {p.name: 1.0 for p in parts}
    request = request_classes(sizes)[0]
    return {
        name: 1.0 if capacity is None else request.work_s(primary) / request.work_s(capacity)
        for name, capacity in capacities.items()
    }


def read_sizes(
    namespace: str,
    pods: list[PodState],
    samples: dict[str, observe.PodIndex],
    counters: dict[str, Any],
) -> tuple[RequestSizes | None, dict[str, Any]]:
    """Mean prompt and output tokens per request over the last tick (None when no request
    finished or a counter is unknown: the last known sizes are kept by the caller), and the
    counter readings to take the next rates against."""
    names = {p.name for p in pods}
    rates: dict[str, float | None] = {}
    kept: dict[str, Any] = {}
    for key, metric in MIX_METRICS_BY_KEY.items():
        current = observe.per_pod(samples.get(metric, {}), namespace, names)
        rates[key], kept[key] = observe.counter_rate(counters.get(key) or {}, current)
    requests, prompt, output = rates["mix_requests"], rates["mix_prompt"], rates["mix_output"]
    if not requests or prompt is None or output is None:
        return None, kept
    return RequestSizes(prompt / requests, output / requests), kept


MIX_METRICS_BY_KEY = {
    "mix_requests": observe.REQUESTS_FINISHED,
    "mix_prompt": observe.PROMPT_TOKENS,
    "mix_output": observe.GENERATION_TOKENS,
}


def request_classes(sizes: RequestSizes) -> list[mix.RequestClass]:
    """The demand's request classes, each with its share of requests as ``rate_per_s`` (the
    caller scales them to the policy's total). One class of the observed means until a
    prompt-length histogram is read; more classes plug in here."""
    return [
        mix.RequestClass(
            "all",
            1.0,
            sizes.prompt_tokens,
            sizes.output_tokens,
            math.ceil(sizes.prompt_tokens),
        )
    ]


@dataclass(frozen=True)
class Choice:
    replicas: dict[str, int]  # by GPU type name, every part
    reason: str


def choose(
    workload: Workload,
    policy: ScalingPolicy,
    pool: Pool,
    desired: int,
    classes: Sequence[mix.RequestClass] | None,
    room: dict[int, int | None],
) -> Choice:
    """Replicas per type for the policy's ``desired`` total (in primary replicas).

    1. Each type's capacity from the performance catalogue; a type with no profile for the
       model is left out (0 replicas).
    2. The classes' shares scaled so that, served on the primary type, they keep exactly
       ``desired`` replicas busy: the policy's demand as a rate.
    3. ``mix.plan`` within each type's bounds (the variant's, and ``room``: quota and
       placement, by GPU type id), then the hysteresis against moving replicas between types.
    """
    capacities = {p.name: _capacity(workload, policy, p) for p in pool.parts}
    primary = capacities[pool.parts[0].name]
    current = {p.name: p.deployment.spec_replicas for p in pool.parts}
    if primary is None or not classes:
        # Nothing to weigh the types by: the other types keep their replicas and the
        # primary takes the difference, so no replica moves before sizes are known.
        head, rest = (
            pool.parts[0].name,
            {p.name: min(current[p.name], p.max_replicas) for p in pool.parts[1:]},
        )
        keep = {head: max(desired - sum(rest.values()), 0)} | rest
        why = f"no performance profile of {head}" if primary is None else "no request sizes yet"
        return Choice(keep, f"mix held, the change on {head} ({why} to choose a mix from)")
    busy = sum(c.rate_per_s * c.work_s(primary) for c in classes)
    scale = desired * mix.DEFAULT_UTILIZATION / busy
    demand = [replace(c, rate_per_s=c.rate_per_s * scale * (1 - 1e-9)) for c in classes]
    options = [
        _option(workload, policy, p, capacities[p.name], room.get(p.gpu_type.pk))
        for p in pool.parts
    ]
    # The policy's minimum in all, as far as the types' bounds reach (quota may cut below).
    least = min(policy.min_replicas, sum(o.max_replicas for o in options))
    chosen = mix.plan(options, demand, min_total=least)
    chosen = _without_small_moves(options, demand, current, chosen, least)
    return Choice(chosen.replicas, mix.explain(chosen, _singles(options, demand, least)))


def _singles(
    options: list[mix.GpuOption], demand: list[mix.RequestClass], least: int
) -> dict[str, mix.Mix]:
    """Each type alone within its bounds, for the explanation (mix.alternatives), leaving out
    a type whose bounds cannot hold the policy's minimum on their own."""
    singles = {}
    for option in options:
        try:
            singles[option.name] = mix.plan([option], demand, min_total=least)
        except ValueError:
            continue
    return singles


def _capacity(workload: Workload, policy: ScalingPolicy, part: Part) -> ReplicaCapacity | None:
    return replica_capacity(
        part.gpu_type.profile,
        workload.model_name,
        workload.gpus_per_replica,
        policy.max_concurrency,
    )


def _option(
    workload: Workload,
    policy: ScalingPolicy,
    part: Part,
    capacity: ReplicaCapacity | None,
    room: int | None,
) -> mix.GpuOption:
    most = part.max_replicas if room is None else min(part.max_replicas, room)
    if capacity is None:  # the model does not fit this type, or no datasheet: never chosen
        capacity, most = ReplicaCapacity(1.0, 1.0, 1), 0
    longest = NO_TTFT_LIMIT
    if policy.slo_ttft_p95_s is not None:
        longest = int(capacity.prefill_tokens_per_s * policy.slo_ttft_p95_s)
    return mix.GpuOption(
        name=part.name,
        price_per_hour=float(part.gpu_type.hourly_cost) * workload.gpus_per_replica,
        capacity=capacity,
        longest_prompt_tokens=longest,
        min_replicas=min(part.min_replicas, most),
        max_replicas=most,
    )


def _without_small_moves(
    options: list[mix.GpuOption],
    demand: list[mix.RequestClass],
    current: dict[str, int],
    chosen: mix.Mix,
    min_total: int,
) -> mix.Mix:
    """The cheapest mix that moves no replica between types (only grows, or only shrinks,
    from ``current``) instead of ``chosen`` when it serves as much and ``chosen`` saves less
    than HYSTERESIS of its cost."""
    after = chosen.replicas
    moves = any(after[n] < current[n] for n in current) and any(
        after[n] > current[n] for n in current
    )
    if not moves:
        return chosen
    stays = []
    for grow_only in (True, False):
        held = [_held(o, current[o.name], grow_only) for o in options]
        try:
            stays.append(mix.plan(held, demand, min_total=min_total))
        except ValueError:  # bounds no mix satisfies (min_total over the held maxima)
            continue
    fits = [m for m in stays if m.unserved_per_s <= chosen.unserved_per_s + 1e-9]
    if not fits:
        return chosen
    stay = min(fits, key=lambda m: m.cost_per_hour)
    return stay if chosen.cost_per_hour > stay.cost_per_hour * (1 - HYSTERESIS) else chosen


def _held(option: mix.GpuOption, current: int, grow_only: bool) -> mix.GpuOption:
    """``option`` kept from shrinking (``grow_only``) or from growing, from ``current``."""
    held = min(max(current, option.min_replicas), option.max_replicas)
    if grow_only:
        return replace(option, min_replicas=held)
    return replace(option, max_replicas=held)


def quota_room(workload: Workload, pool: Pool, rows: list[Quota]) -> dict[int, int | None]:
    """Most replicas of each type the tenant's quota allows this workload (None: no quota),
    by GPU type id: what the quota maths says is still available to the tenant (with
    borrowing from its cohort), plus the GPUs this workload holds of the type already.
    Usage is the quota's last observed (the allocation writes it every tick); the tick's
    allocation then checks each type's final count against this tick's demands."""
    tenant = workload.tenant.slug
    by_type: dict[int, list[Quota]] = defaultdict(list)
    for row in rows:
        by_type[row.gpu_type_id].append(row)
    room: dict[int, int | None] = {}
    for part in pool.parts:
        quotas = {q.tenant.slug: q for q in by_type.get(part.gpu_type.pk, [])}
        mine = quotas.get(tenant)
        if mine is None:
            room[part.gpu_type.pk] = None
            continue
        limit = mine.as_limit()
        cohort = [q.as_limit() for q in quotas.values() if q.as_limit().cohort == limit.cohort]
        usage = {slug: q.used_gpus for slug, q in quotas.items()}
        holding = part.deployment.replicas * workload.gpus_per_replica
        free = available(limit, cohort, usage) + min(holding, usage.get(tenant, 0))
        room[part.gpu_type.pk] = free // workload.gpus_per_replica
    return room


def placement_room(
    cluster_id: int, pools: list[tuple[Workload, Pool]]
) -> dict[tuple[int, int], int]:
    """Most replicas of each (workload, GPU type id) the cluster's nodes can hold: the ones it
    runs plus those still placeable on one node each, as the last inventory sync saw them
    (clusters.placement). Types with no synced node are left out (not bounded). One query."""
    nodes: dict[str, list[NodeGpus]] = defaultdict(list)
    rows = GpuNode.objects.filter(cluster_id=cluster_id).values_list(
        "gpu_product", "gpu_capacity", "gpu_allocatable", "gpu_requested", "ready"
    )
    for product, capacity, allocatable, requested, ready in rows:
        nodes[product].append(NodeGpus(capacity, allocatable, requested, ready))
    room: dict[tuple[int, int], int] = {}
    for workload, pool in pools:
        for part in pool.parts:
            found = nodes.get(part.gpu_type.node_label)
            if found is not None:
                fits = placement(found, workload.gpus_per_replica).placeable
                room[(workload.pk, part.gpu_type.pk)] = part.deployment.replicas + fits
    return room
