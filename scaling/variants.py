"""A workload on several GPU types in the live loop: its variants observed as one pool, and the
policy's demand split across them at the least cost per hour (scaling.engine.mix).

The policy decides the total as for any workload, in replicas of the primary type (its own
metric, bounds and rate limits over the pods of every variant). This module turns that total
into request classes and asks ``mix.next_mix`` (the back-test's path too, so the same signals
give the same mix) for the cheapest replicas per type within each type's bounds (the
variant's min/max, the tenant's quota for the type, the GPUs still placeable on the cluster),
and explains the answer with ``mix.explain``. The loop then has the quota allocation check
each type's count (scaling.allocation, one wish per type) and applies each variant's
Deployment.

Request classes come from vLLM's prompt-length histogram (``vllm:request_prompt_tokens``):
each tick's bucket deltas over the policy's signal history (``prompt_window``, the window the
back-test keeps), with the prompt sum from the mean prompt the token counters give. Without
a histogram (vLLM V0) one class of the observed means stands in (``mean_class``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from clusters.kubernetes import DeploymentState, PodState, missing_deployment
from clusters.models import GpuNode
from clusters.placement import NodeGpus, placement
from performance import ModelDoesNotFit, ReplicaPerf, model_spec, replica_perf
from quotas.maths import available
from quotas.models import GpuType, Quota
from scaling import observe
from scaling.allocation import variant_key
from scaling.backtest.slo import DEFAULT_SLO_TTFT_S
from scaling.capacity import replica_capacity
from scaling.engine import ReplicaCapacity, history_s, mix
from scaling.models import ScalingPolicy, Workload

# What the mix is sized by, read for every workload with variants: the counters the mean
# request sizes are taken from, and the prompt-length histogram its classes come from (the
# same reading as the loop's count of infeasible prompts: one query for both).
MIX_METRICS = (
    observe.PROMPT_TOKENS,
    observe.GENERATION_TOKENS,
    observe.REQUESTS_FINISHED,
    observe.PROMPT_LENGTH_BUCKETS,
)


@dataclass(frozen=True)
class Part:
    """One GPU type of a workload as this tick observed it (the primary first)."""

    gpu_type: GpuType
    deployment: DeploymentState
    min_replicas: int
    max_replicas: int
    variant: int | None  # the WorkloadVariant's id; None for the primary
    pods: tuple[PodState, ...] = ()  # its Deployment's pods

    @property
    def name(self) -> str:
        return self.gpu_type.name

    @property
    def unplaced(self) -> list[PodState]:
        """Its pods the scheduler reports it cannot place (PodScheduled False)."""
        return [pod for pod in self.pods if pod.unschedulable]

    @property
    def holding(self) -> int:
        """Its replicas that hold GPUs or will once warm (``observe.placed``)."""
        return observe.placed(self.deployment, self.pods).replicas

    @property
    def warming(self) -> int:
        """Of ``holding``, the ones not ready yet."""
        return observe.placed(self.deployment, self.pods).warming_replicas


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
    shape: Sequence[mix.RequestClass] | None,
    stored_mix: Any = None,
) -> Pool | str:
    """The workload's variants as one pool; why not, when a variant's Deployment is gone.

    The policy decides in replicas of the primary type, so the pool's replicas are counted
    in them too (``combined``): each type's replicas weighted by the work one of them does
    beside a primary replica, for the last known request classes (1 before any is known).
    Counted as plain replicas, a rate limit's floor (Knative: at most halve per step) would
    keep a pool of slower replicas from ever shrinking to what the policy wants.

    While the Deployments run the mix last chosen (``stored_mix``, the loop's memory of it),
    or more where make before break keeps a type up, the policy's current count is the total
    it asked for, as in the back-test: the replicas kept up for a change of types are the
    mix's doing, and counted in, they would read as the policy's own and a scale-down
    stabilisation window would hold on to them."""
    parts = [
        Part(
            workload.gpu_type,
            primary,
            0,
            policy.max_replicas,
            None,
            tuple(observe.pods_of(primary, pods)),
        )
    ]
    for variant in workload.variants.all():
        found = deployments.get((workload.namespace, variant.deployment))
        if found is None:
            return missing_deployment(workload.cluster, workload.namespace, variant.deployment)
        mine = tuple(observe.pods_of(found, pods))
        parts.append(
            Part(
                variant.gpu_type,
                found,
                variant.min_replicas,
                variant.max_replicas,
                variant.pk,
                mine,
            )
        )
    weights = _weights(workload, policy, parts, shape)

    def count(field: str) -> int:  # pods the scheduler refuses count as no replica
        placed = [(observe.placed(p.deployment, p.pods), weights[p.name]) for p in parts]
        return round(sum(getattr(d, field) * weight for d, weight in placed))

    asked = _asked(parts, stored_mix)
    combined = replace(
        primary,
        spec_replicas=count("spec_replicas") if asked is None else asked,
        replicas=count("replicas"),
        ready_replicas=count("ready_replicas"),
    )
    every = [pod for p in parts for pod in p.pods]
    return Pool(tuple(parts), every, combined)


def _asked(parts: list[Part], stored_mix: Any) -> int | None:
    """The total the mix was last chosen for, while every type runs its share of that mix
    (or more, kept up for make before break); None otherwise (a quota cut, a hand edit)."""
    if not isinstance(stored_mix, dict):
        return None
    memory = mix.MixMemory.from_dict(stored_mix)
    goal = memory.goal
    specs = {p.name: p.deployment.spec_replicas for p in parts}
    if memory.desired is None or set(goal) != set(specs):
        return None
    if all(specs[n] >= goal[n] for n in specs) and any(specs[n] == goal[n] for n in specs):
        return memory.desired
    return None


def _weights(
    workload: Workload,
    policy: ScalingPolicy,
    parts: list[Part],
    shape: Sequence[mix.RequestClass] | None,
) -> dict[str, float]:
    """Primary replicas one replica of each type is worth (1 where it cannot be told): the
    primary's work on the classes over the type's, as the back-test's MixSizer counts."""
    capacities = {p.name: _capacity(workload, policy, p) for p in parts}
    primary = capacities[parts[0].name]
    if not shape or primary is None:
        return {p.name: 1.0 for p in parts}

    def work(capacity: ReplicaCapacity) -> float:
        return sum(c.rate_per_s * c.work_s(capacity) for c in shape)

    return {
        name: 1.0 if capacity is None else work(primary) / work(capacity)
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


def mean_class(sizes: RequestSizes) -> mix.RequestClass:
    """One class of the observed means: the classes without a prompt-length histogram."""
    return mix.RequestClass(
        "all", 1.0, sizes.prompt_tokens, sizes.output_tokens, math.ceil(sizes.prompt_tokens)
    )


def prompt_window(
    window: Any,
    before: Any,
    reading: dict[str, Any],
    prompt_mean: float | None,
    window_s: float,
) -> list[list[Any]]:
    """The prompt-length histogram's deltas over the last ``window_s``: ``window`` (the
    previous tick's, as stored) with this tick's delta from ``before`` to ``reading`` (the
    loop's readings of ``vllm:request_prompt_tokens``: ``{"at", "buckets"}``, cumulative by
    ``le``) added, entries older than the window dropped. Each entry is ``[at, {le:
    requests in that bucket}, prompt tokens]``, empty buckets left out (the bounds are the
    reading's: ``window_classes``), tokens None when no mean prompt is known. No entry for a
    tick with no reading, no earlier one or a bucket gone down (a restart): an unknown count
    is not zero."""
    now = float(reading["at"])
    kept = [e for e in (window or []) if isinstance(e, list) and e[0] >= now - window_s]
    buckets = reading.get("buckets") or {}
    earlier = before.get("buckets") if isinstance(before, dict) else None
    if not buckets or not isinstance(earlier, dict) or not set(buckets) <= set(earlier):
        return kept
    deltas = {le: n - earlier[le] for le, n in buckets.items()}
    if any(d < 0 for d in deltas.values()):
        return kept
    total = max(deltas.values(), default=0.0)  # the +Inf bucket: every request
    if total <= 0:
        return kept
    ordered = sorted(deltas, key=float)
    _, counts = mix.buckets_of(deltas)  # one more when no +Inf was read: always 0
    per_bucket = {le: n for le, n in zip(ordered, counts[: len(ordered)], strict=True) if n}
    tokens = None if prompt_mean is None else prompt_mean * total
    return [*kept, [now, per_bucket, tokens]]


def window_classes(
    window: Any, output_tokens: float, top: int, bounds: Mapping[str, Any] | None = None
) -> list[mix.RequestClass]:
    """Request classes of the window's histogram (mix.histogram_classes), their shares of
    requests as ``rate_per_s``; [] for an empty window. ``bounds``: the latest reading's
    buckets, whose ``le`` keys are every bound (an empty bucket is in no entry, and a bound
    missing would merge its bucket into the next one up)."""
    entries = [e for e in (window or []) if isinstance(e, list)]
    if not entries:
        return []
    named = {float(le) for e in entries for le in e[1]} | {float(le) for le in bounds or {}}
    finite = sorted(le for le in named if not math.isinf(le))
    counts = [0.0] * (len(finite) + 1)
    for _, per_bucket, _ in entries:
        for le, n in per_bucket.items():
            bound = float(le)
            counts[len(finite) if math.isinf(bound) else finite.index(bound)] += n
    sums = [e[2] for e in entries]
    prompt_sum = None if any(t is None for t in sums) else math.fsum(sums)
    edges = [int(b) for b in finite]
    return mix.histogram_classes(edges, counts, prompt_sum, 1.0, output_tokens, top)


def classes_of(
    workload: Workload, policy: ScalingPolicy, counters: dict[str, Any]
) -> list[mix.RequestClass] | None:
    """The demand's shape from what the loop keeps (``counters``): the window's histogram
    classes, else one class of the mean sizes (no histogram: vLLM V0), else None."""
    sizes = counters.get("mix_sizes")
    perf = _perf(workload, workload.gpu_type)
    if sizes and perf is not None:
        reading = counters.get("prompt_len")
        found = window_classes(
            counters.get("mix_prompt_window"),
            sizes[1],
            perf.kv_capacity_tokens,
            reading.get("buckets") if isinstance(reading, dict) else None,
        )
        if found:
            return found
    return [mean_class(RequestSizes(*sizes))] if sizes else None


def window_s(policy: ScalingPolicy) -> float:
    """The classes' window: the policy's signal history, as the back-test's MixSizer."""
    return history_s(policy.engine_params())


@dataclass(frozen=True)
class Choice:
    replicas: dict[str, int]  # by GPU type name, every part
    reason: str
    memory: mix.MixMemory | None = None  # what next tick's choice starts from (None: kept)


# How long a GPU type the scheduler refused stays bounded at the replicas it placed once its
# unschedulable pods are gone (the mix scales them away: none is left to tell when capacity
# comes back). Then it is offered again, and bounded again if its new pods are refused: the
# order of the cluster autoscaler's back-off after a failed scale-up (5 minutes).
UNPLACED_RETRY_S = 300.0


@dataclass(frozen=True)
class Refused:
    """A GPU type some of whose pods the scheduler could not place: the mix gives it at most
    the replicas it placed, whatever the inventory says still fits (it may not see a taint,
    a nodeSelector the nodes lack or another tenant's pods landing first)."""

    placed: int  # its pods the scheduler placed (or has not refused)
    pods: int  # its pods then
    message: str  # the scheduler's, e.g. "0/2 nodes are available: ..."
    at: float  # when last refused; offered again UNPLACED_RETRY_S later

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Refused | None:
        """As ``to_dict`` stored it; None for anything else (a loop state from before)."""
        try:
            return cls(
                int(data["placed"]), int(data["pods"]), str(data["message"]), float(data["at"])
            )
        except (KeyError, TypeError, ValueError):
            return None

    def clause(self, name: str, now: float, moved_to: list[str]) -> str:
        """One clause for the decision's reason, in the operator's words."""
        stuck = self.pods - self.placed
        if self.at >= now:
            said = f"{name}: {stuck} of {self.pods} cannot be placed ({self.message})"
        else:
            left = self.at + UNPLACED_RETRY_S - now
            said = (
                f"{name}: {stuck} of {self.pods} could not be placed ({self.message}), "
                f"kept at most {self.placed} for {left:.0f} s more"
            )
        where = " + ".join(moved_to) if moved_to else "no other type can take it"
        return f"{said}, demand moved to {where}" if moved_to else f"{said}; {where}"


def refusals(pool: Pool, stored: Any, now: float) -> dict[str, Refused]:
    """The GPU types the scheduler refuses pods of this tick, and those it refused within
    UNPLACED_RETRY_S (``stored``: the loop's memory, ``Refused.to_dict`` by type name) that
    placed no more replicas since (more placed: capacity came back). By GPU type name."""
    kept = stored if isinstance(stored, dict) else {}
    found: dict[str, Refused] = {}
    for part in pool.parts:
        stuck = part.unplaced
        if stuck:
            message = stuck[0].unschedulable
            found[part.name] = Refused(part.holding, part.deployment.replicas, message, now)
            continue
        old = Refused.from_dict(kept.get(part.name))
        if old is not None and now < old.at + UNPLACED_RETRY_S and part.holding <= old.placed:
            found[part.name] = old
    return found


def bounds(
    workload: Workload,
    pool: Pool,
    quota: dict[int, int | None],
    placeable: Mapping[tuple[int, int], int],
    refused: Mapping[str, Refused],
) -> dict[int, int | None]:
    """Most replicas of each type (by GPU type id; None: unbounded): the least of its quota
    room, what its nodes can still place (``placement_room``) and, for a type the scheduler
    refuses, the replicas it placed."""
    room = dict(quota)
    for part in pool.parts:
        limits = [
            n
            for n in (
                quota.get(part.gpu_type.pk),
                placeable.get((workload.pk, part.gpu_type.pk)),
                refused[part.name].placed if part.name in refused else None,
            )
            if n is not None
        ]
        room[part.gpu_type.pk] = min(limits) if limits else None
    return room


def memory_of(pool: Pool, stored: Any) -> mix.MixMemory:
    """The mix's memory as the loop kept it, or, before any, the pool as it runs: its counts
    per type and its total in primary replicas."""
    if isinstance(stored, dict):
        return mix.MixMemory.from_dict(stored)
    goal = {p.name: p.deployment.spec_replicas for p in pool.parts}
    return mix.MixMemory(goal, pool.combined.spec_replicas)


def choose(
    workload: Workload,
    policy: ScalingPolicy,
    pool: Pool,
    desired: int,
    shape: Sequence[mix.RequestClass] | None,
    room: dict[int, int | None],
    memory: mix.MixMemory,
    now: float,
) -> Choice:
    """Replicas per type for the policy's ``desired`` total (in primary replicas).

    1. Each type's option from the performance catalogue (``mix.gpu_option``: capacity, and
       the longest prompt it prefills within the TTFT objective's share); a type with no
       profile for the model is left out (0 replicas).
    2. ``shape``'s shares scaled so that, served on the primary type, they keep exactly
       ``desired`` replicas busy: the policy's demand as a rate (``mix.as_demand``).
    3. ``mix.next_mix`` within each type's bounds (the variant's, and ``room``: quota and
       placement, by GPU type id): the router guard, the hysteresis against the mix last
       chosen (``memory``) and the cold-start wait before a change of types.
    """
    capacities = {p.name: _capacity(workload, policy, p) for p in pool.parts}
    primary = capacities[pool.parts[0].name]
    current = {p.name: p.deployment.spec_replicas for p in pool.parts}
    if primary is None or not shape:
        # Nothing to weigh the types by: the other types keep their replicas and the
        # primary takes the difference, so no replica moves before sizes are known.
        head, rest = (
            pool.parts[0].name,
            {p.name: _within(current[p.name], p, room) for p in pool.parts[1:]},
        )
        keep = {head: max(desired - sum(rest.values()), 0)} | rest
        why = f"no performance profile of {head}" if primary is None else "no request sizes yet"
        return Choice(keep, f"mix held, the change on {head} ({why} to choose a mix from)")
    demand = mix.as_demand(shape, primary, desired)
    ttft_s = policy.slo_ttft_p95_s or DEFAULT_SLO_TTFT_S
    options = [
        _option(workload, policy, p, capacities[p.name], room.get(p.gpu_type.pk), ttft_s)
        for p in pool.parts
    ]
    # The policy's minimum in all, as far as the types' bounds reach (quota may cut below).
    least = min(policy.min_replicas, sum(o.max_replicas for o in options))
    guard = policy.routing in mix.EXPECTED_DELAY_ROUTING
    rule = mix.MixRule(pool.parts[0].name, ttft_s, policy.cold_start_s, router_guard=guard)
    output = shape[0].output_tokens
    chosen, memory = mix.next_mix(
        options, demand, desired, memory, rule, output_tokens=output, now=now, min_total=least
    )
    routed = mix.routed(options, rule.reference, output, ttft_s) if guard else options
    reason = mix.explain(chosen, _singles(routed, demand, least))
    forced = mix.restricted(routed, demand)
    return Choice(
        chosen.replicas | memory.goal, f"{reason}; {forced}" if forced else reason, memory
    )


def _within(count: int, part: Part, room: dict[int, int | None]) -> int:
    most = room.get(part.gpu_type.pk)
    return min(count, part.max_replicas, part.max_replicas if most is None else most)


def with_refusals(choice: Choice, refused: Mapping[str, Refused], now: float) -> Choice:
    """The choice's reason with a clause per type the scheduler refuses (``refused``, bounded
    in the choice's room already): how many of its pods, why, and where its demand went."""
    if not refused:
        return choice
    moved_to = [n for n, k in choice.replicas.items() if k > 0 and n not in refused]
    clauses = [r.clause(name, now, moved_to) for name, r in refused.items()]
    return replace(choice, reason="; ".join([choice.reason, *clauses]))


def make_before_break(pool: Pool, choice: Choice) -> Choice:
    """The mix as it may be set this tick: no type shrinks while another type's replicas
    the mix moves to are not all ready (its ready replicas, as observed, below its count),
    as the back-test's ``MixSizer.apply``. Setting every type at once would drain warm
    replicas a cold start before their replacements serve. The held types keep their
    replicas but their unschedulable pods (those serve nothing: keeping them makes nothing
    before the break); the reason says which and what they wait for. A quota cut still
    applies after this (the loop's grant): a reclaim is not held."""
    waiting = {
        part.name: (choice.replicas[part.name], part.deployment.ready_replicas)
        for part in pool.parts
        if choice.replicas[part.name] > part.deployment.ready_replicas
    }
    keep = {p.name: p.deployment.spec_replicas - len(p.unplaced) for p in pool.parts}
    held = {
        part.name: keep[part.name]
        for part in pool.parts
        if choice.replicas[part.name] < keep[part.name] and set(waiting) - {part.name}
    }
    if not held:
        return choice
    kept = ", ".join(f"{name} kept at {n}" for name, n in held.items())
    until = ", ".join(
        f"{name}'s {wanted} ({ready} ready)" for name, (wanted, ready) in waiting.items()
    )
    reason = f"{choice.reason}; make before break: {kept} until {until} are ready"
    return replace(choice, replicas=choice.replicas | held, reason=reason)


def parts_state(workload: Workload, pool: Pool, wanted: Mapping[str, int]) -> list[dict[str, Any]]:
    """What the loop stores of each GPU type of the workload (``loop_state["parts"]``) for
    the other clusters' quota allocation: the type, the key its demand is under, its
    Deployment, the replicas it holds (running or warming) and wants. The workload's own
    replica columns count the pool in primary replicas, which no quota can be charged in."""
    return [
        {
            "gpu_type": part.gpu_type.pk,
            "key": workload.pk if part.variant is None else variant_key(part.variant),
            "deployment": part.deployment.name,
            "holding": part.holding,
            "warming": part.warming,
            "wanted": wanted[part.name],
        }
        for part in pool.parts
    ]


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


def _perf(workload: Workload, gpu_type: GpuType) -> ReplicaPerf | None:
    """The performance model of one replica on ``gpu_type`` (None: no datasheet, or the
    model does not fit): its prefill time by prompt length, KV cache and decode step."""
    profile = gpu_type.profile
    if profile is None:
        return None
    try:
        return replica_perf(profile, model_spec(workload.model_name), workload.gpus_per_replica)
    except ModelDoesNotFit:
        return None


def _option(
    workload: Workload,
    policy: ScalingPolicy,
    part: Part,
    capacity: ReplicaCapacity | None,
    room: int | None,
    ttft_s: float,
) -> mix.GpuOption:
    most = part.max_replicas if room is None else min(part.max_replicas, room)
    price = float(part.gpu_type.hourly_cost) * workload.gpus_per_replica
    perf = _perf(workload, part.gpu_type)
    if capacity is None or perf is None:  # the model does not fit, or no datasheet: never chosen
        return mix.GpuOption(part.name, price, ReplicaCapacity(1.0, 1.0, 1), 0, 0, 0)
    return mix.gpu_option(
        part.name,
        price,
        capacity,
        perf,
        ttft_s,
        min_replicas=min(part.min_replicas, most),
        max_replicas=most,
    )


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
        holding = part.holding * workload.gpus_per_replica
        free = available(limit, cohort, usage) + min(holding, usage.get(tenant, 0))
        room[part.gpu_type.pk] = free // workload.gpus_per_replica
    return room


def placement_room(
    cluster_id: int, pools: list[tuple[Workload, Pool]]
) -> dict[tuple[int, int], int]:
    """Most replicas of each (workload, GPU type id) the cluster's nodes can hold: the ones it
    runs (its pods but those the scheduler refused: the inventory never adds them back) plus
    those still placeable on one node each, as the last inventory sync saw them
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
                room[(workload.pk, part.gpu_type.pk)] = part.holding + fits
    return room
