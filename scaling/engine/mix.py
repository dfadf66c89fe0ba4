"""`mix`: which GPU types serve a workload's demand, and how many replicas of each, at the least
cost per hour.

Why types differ in more than speed: a cheaper, slower GPU can carry short requests at a lower
price per request, while long prompts may meet a TTFT objective only on the faster type (a
prompt whose prefill alone takes longer than the objective is late however idle the replica).
So the demand is split into request classes by prompt length (``RequestClass``), and each
class may only go to the types that prefill its longest prompt within the objective. This is
the formulation of Mélange (Griggs et al., "Mélange: Cost Efficient Large Language Model
Serving by Exploiting GPU Heterogeneity", 2024), which AIBrix's GPU optimizer also uses: a
small integer program over replicas per type.

The program, for types t and classes k:

- variables: ``n_t`` replicas of type t (integer, within the option's min and max: the policy's
  bounds, the tenant's quota with borrowing, the GPUs that can still be placed), and
  ``x_tk`` >= 0 requests/s of class k served on type t (only where t meets k's TTFT);
- each class is served: ``sum_t x_tk = rate_k`` (less what no allowed count can carry);
- each type's replicas are busy at most ``utilization`` of the time:
  ``sum_k x_tk * work_tk <= utilization * n_t``, where ``work_tk`` = replica-seconds per
  request = prompt / prefill tokens/s + output / decode tokens/s (from ReplicaCapacity);
- minimise ``sum_t price_t * n_t`` (per replica-hour: GPU-hour price x GPUs per replica).

Solved exactly with HiGHS through ``scipy.optimize.milp`` in two passes: first the most demand
the bounds allow to serve (a linear program), then the cheapest integer mix serving that much.
A class no type can serve within the TTFT objective still needs serving: it may go to any type
and is reported in ``beyond_ttft`` (it must not make the pool grow for a latency no replica
can reach). Tests check the answer against an exhaustive search on small cases.

Around the program, the rules the live loop (scaling.variants) and the back-test
(scaling.backtest.mix) share, so that the same signals give the same mix in both:

- ``histogram_classes``: request classes from vLLM's ``vllm:request_prompt_tokens`` histogram
  (bucket counts and prompt sum over a window, ``prompt_buckets`` its 1-2-5 bounds);
- ``gpu_option``: a type's longest prompt is the one it prefills alone within
  ``TTFT_PREFILL_SHARE`` of the TTFT objective (the eligibility rule);
- ``routed``: the router guard, types the router reaches before the reference type is late;
- ``steady`` and ``dwell``: the hysteresis (one threshold, ``HYSTERESIS``) and the cold-start
  wait before a change of the types in use; ``next_mix`` applies all three in order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .types import ReplicaCapacity

DEFAULT_UTILIZATION = 0.8  # the busy share a replica is sized for: queueing needs slack
NO_LIMIT = 10_000  # scaling.models.MAX_REPLICAS
# A prompt's lone prefill may take this share of the TTFT objective on a type that serves its
# class; the rest is for queueing (predictive sizes the mean wait to 10 % of the objective, its
# wait_share; the quarter left covers the wait's tail).
TTFT_PREFILL_SHARE = 0.75
# A change of mix must save this share of the cost per hour, in the live loop and the
# back-test alike: moving replicas between types drains warm ones and pays cold starts, and
# the class shares move a little every tick. 10 %, not 5 %: at 5 % the back-test's conv trace
# moved replicas between types every few ticks (2 A100 + 21 A40 <-> 3 A100 + 19 A40), each a
# cold start; a saving under 10 % of the cost is within what the classes' noise moves.
HYSTERESIS = 0.1


@dataclass(frozen=True)
class GpuOption:
    """One GPU type the workload may run on, as the caller derived it."""

    name: str
    price_per_hour: float  # one replica: GPU-hour price x GPUs per replica
    capacity: ReplicaCapacity
    longest_prompt_tokens: int  # the longest prompt it prefills within the TTFT objective
    min_replicas: int = 0
    max_replicas: int = NO_LIMIT  # the tightest of policy, quota and placeable GPUs
    step_s: float = 0.0  # one decode step alone: what the router guard compares (``routed``)


@dataclass(frozen=True)
class RequestClass:
    """Requests of similar prompt length: their rate and mean sizes."""

    name: str
    rate_per_s: float
    prompt_tokens: float  # mean
    output_tokens: float  # mean
    longest_prompt_tokens: int
    shortest_prompt_tokens: int = 0  # prompts are over this (a histogram bucket's lower bound)

    def work_s(self, capacity: ReplicaCapacity) -> float:
        """Replica-seconds one request of this class takes on a replica of ``capacity``."""
        return (
            self.prompt_tokens / capacity.prefill_tokens_per_s
            + self.output_tokens / capacity.decode_tokens_per_s
        )


@dataclass(frozen=True)
class Mix:
    replicas: dict[str, int]  # by option name, every option listed
    cost_per_hour: float
    served: dict[tuple[str, str], float] = field(default_factory=dict)  # (class, type) -> req/s
    unserved_per_s: float = 0.0  # demand the bounds leave no room for
    beyond_ttft: tuple[str, ...] = ()  # classes no type serves within the TTFT objective

    def text(self) -> str:
        used = [f"{n} x {name}" for name, n in self.replicas.items() if n]
        return f"{' + '.join(used) or 'no replicas'}: ${self.cost_per_hour:,.2f}/h"


def plan(
    options: Sequence[GpuOption],
    classes: Sequence[RequestClass],
    *,
    utilization: float = DEFAULT_UTILIZATION,
    min_total: int = 0,
) -> Mix:
    """The cheapest replicas per type that serve ``classes`` (see the module docstring);
    ``min_total``: at least this many replicas in all (the policy's min_replicas)."""
    if not options:
        raise ValueError("no GPU type to choose from")
    if not 0 < utilization <= 1:
        raise ValueError("utilization must be in (0, 1]")
    classes = [c for c in classes if c.rate_per_s > 0]
    program = _Program(options, classes, utilization, min_total)
    return program.solve()


def alternatives(
    options: Sequence[GpuOption],
    classes: Sequence[RequestClass],
    *,
    utilization: float = DEFAULT_UTILIZATION,
    min_total: int = 0,
) -> dict[str, Mix]:
    """Each type alone, for the explanation: "all A100-80GB would be $y/h"."""
    return {
        o.name: plan([o], classes, utilization=utilization, min_total=min_total) for o in options
    }


def explain(chosen: Mix, singles: dict[str, Mix]) -> str:
    """One line: the mix, its cost, and the cheapest single type that serves as much as well
    (no more demand unserved, no more classes beyond the TTFT objective)."""
    text = chosen.text()
    if chosen.beyond_ttft:
        text += f" ({', '.join(chosen.beyond_ttft)}: beyond every type's TTFT, best effort)"
    if chosen.unserved_per_s > 0:
        text += f"; {chosen.unserved_per_s:.2f} req/s do not fit the bounds"
    rivals = [
        (m.cost_per_hour, name)
        for name, m in singles.items()
        if m.unserved_per_s <= chosen.unserved_per_s + 1e-9
        and set(m.beyond_ttft) <= set(chosen.beyond_ttft)
        and any(m.replicas.values())
    ]
    if rivals and sum(1 for n in chosen.replicas.values() if n) > 1:
        cost, name = min(rivals)
        text += f"; all {name} would be ${cost:,.2f}/h"
    return text


class ServingModel(Protocol):
    """What the eligibility rule and the router guard read of a replica's performance model
    (performance.ReplicaPerf)."""

    @property
    def kv_capacity_tokens(self) -> int: ...

    def lone_prefill_s(self, tokens: int) -> float: ...

    def step_s(self, batch: int) -> float: ...


def longest_prompt(perf: ServingModel, budget_s: float) -> int:
    """The longest prompt ``perf`` prefills alone within ``budget_s`` (and holds in its KV
    cache): a binary search on the performance model's lone prefill time."""
    low, high = 0, perf.kv_capacity_tokens
    while low < high:
        mid = (low + high + 1) // 2
        if perf.lone_prefill_s(mid) <= budget_s:
            low = mid
        else:
            high = mid - 1
    return low


def gpu_option(
    name: str,
    price_per_hour: float,
    capacity: ReplicaCapacity,
    perf: ServingModel,
    ttft_s: float,
    *,
    min_replicas: int = 0,
    max_replicas: int = NO_LIMIT,
) -> GpuOption:
    """A type as the program sees it: it serves the classes whose longest prompt it prefills
    alone within TTFT_PREFILL_SHARE of ``ttft_s`` (the eligibility rule)."""
    return GpuOption(
        name,
        price_per_hour,
        capacity,
        longest_prompt(perf, TTFT_PREFILL_SHARE * ttft_s),
        min_replicas,
        max_replicas,
        perf.step_s(1),
    )


def prompt_buckets(largest: int) -> tuple[int, ...]:
    """Upper bounds of vLLM's prompt-length histogram (``build_1_2_5_buckets``: 1, 2, 5, 10,
    20, 50, ... up to the model length), here up to ``largest`` tokens."""
    bounds: list[int] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > largest:
                return tuple(bounds)
            bounds.append(m * scale)
        scale *= 10


def histogram_classes(
    bounds: Sequence[int],
    counts: Sequence[float],
    prompt_sum: float | None,
    rate_per_s: float,
    output_tokens: float,
    top: int,
) -> list[RequestClass]:
    """Request classes from a prompt-length histogram: ``counts[i]`` prompts in
    (``bounds[i-1]``, ``bounds[i]``], the last count beyond the last bound (up to ``top``
    tokens), ``prompt_sum`` their total tokens. A histogram has no per-bucket mean: each
    bucket's is its midpoint, all scaled so they add up to ``prompt_sum`` (None: unknown, the
    midpoints as they are). ``rate_per_s`` is split by the counts; every class gets the same
    mean ``output_tokens``."""
    edges = [0, *bounds, max(top, bounds[-1] + 1 if bounds else top)]
    total = sum(counts)
    if total <= 0:
        return []
    mids = [(edges[i] + edges[i + 1]) / 2 for i in range(len(counts))]
    estimated = sum(n * m for n, m in zip(counts, mids, strict=True))
    scale = prompt_sum / estimated if prompt_sum is not None and estimated > 0 else 1.0
    return [
        RequestClass(
            f"<={edges[i + 1]}",
            rate_per_s * n / total,
            min(mids[i] * scale, edges[i + 1]),
            output_tokens,
            edges[i + 1],
            edges[i],
        )
        for i, n in enumerate(counts)
        if n > 0
    ]


def buckets_of(cumulative: Mapping[str, float]) -> tuple[list[int], list[float]]:
    """A Prometheus histogram's cumulative counts by ``le`` as (finite upper bounds, counts
    per bucket, the last one beyond the last bound): what ``histogram_classes`` takes."""
    ordered = sorted((float(le), n) for le, n in cumulative.items())
    bounds = [int(le) for le, _ in ordered if not math.isinf(le)]
    counts, below = [], 0.0
    for _, n in ordered:
        counts.append(max(n - below, 0.0))
        below = n
    if not ordered or not math.isinf(ordered[-1][0]):
        counts.append(0.0)
    return bounds, counts


def as_demand(
    shape: Sequence[RequestClass],
    reference: ReplicaCapacity,
    desired: int,
    utilization: float = DEFAULT_UTILIZATION,
) -> list[RequestClass]:
    """The policy's count as demand: ``shape``'s shares scaled so that, served on the
    reference type, they keep exactly ``desired`` replicas busy at ``utilization`` (so the
    reference type alone gets ``desired`` back). A hair under, so that float error never
    rounds the reference type's count up to ``desired + 1``."""
    work = sum(c.rate_per_s * c.work_s(reference) for c in shape)
    if desired <= 0 or work <= 0:
        return []
    rate = utilization * desired / work * (1 - 1e-6)
    return [replace(c, rate_per_s=c.rate_per_s * rate) for c in shape]


# Routing strategies that send a request where its expected end is soonest (prefix-aware is
# that, kept near a cached prefix; "" is the pool's default, which is that in the simulator
# and the back-test): the ones the router guard describes. Round robin and least-outstanding
# send a slower type work whatever its expected delay, so the guard does not apply to them.
EXPECTED_DELAY_ROUTING = ("", "shortest-expected-delay", "prefix-aware")


def routed(
    options: Sequence[GpuOption], reference: str, output_tokens: float, ttft_s: float
) -> list[GpuOption]:
    """The router guard: the types a shortest-expected-delay router sends work to before the
    reference type's requests are late.

    It sends a request to a slower type only when the reference replicas' queue exceeds the
    difference in expected end-to-end time, mostly decode: mean output x (step time there -
    step time on the reference). When that difference exceeds the TTFT left after prefill,
    the slower type gets work only once the reference's requests are late, so sizing on it
    buys idle replicas (31 A40s beside 6 A100s served 13 % of mixed-lengths in the
    back-test; bench/README.md "GPU mix"). A property of the router, so of the decision in
    both callers: ``MixRule.router_guard`` is on where the pool routes by expected delay
    (EXPECTED_DELAY_ROUTING)."""
    ref = next((o.step_s for o in options if o.name == reference), None)
    if ref is None:
        return list(options)
    room = (1 - TTFT_PREFILL_SHARE) * ttft_s
    return [o for o in options if output_tokens * (o.step_s - ref) <= room]


def restricted(options: Sequence[GpuOption], classes: Sequence[RequestClass]) -> str:
    """The prompts only some offered types serve within the TTFT objective, for the
    decision: "prompts over 20k tokens only on A100-80GB" ("" when every type serves every
    class; a class no type serves is ``Mix.beyond_ttft``)."""
    offered = [o for o in options if o.max_replicas > 0]
    groups: dict[tuple[str, ...], int] = {}
    for c in classes:
        able = tuple(o.name for o in offered if c.longest_prompt_tokens <= o.longest_prompt_tokens)
        if c.rate_per_s > 0 and able and len(able) < len(offered):
            groups[able] = min(groups.get(able, c.shortest_prompt_tokens), c.shortest_prompt_tokens)
    return "; ".join(
        f"prompts over {_tokens(low)} tokens only on {' and '.join(names)}"
        for names, low in sorted(groups.items(), key=lambda kv: kv[1])
    )


def _tokens(n: int) -> str:
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def steady(
    options: Sequence[GpuOption],
    classes: Sequence[RequestClass],
    current: Mapping[str, int],
    hysteresis: float = HYSTERESIS,
    *,
    direction: int = 0,
    utilization: float = DEFAULT_UTILIZATION,
    min_total: int = 0,
) -> Mix:
    """The mix to apply given the ``current`` one, against flapping: the first of these that
    serves as much as the optimum at most ``1 + hysteresis`` times its cost, else the optimum
    (a change worth its cold starts and drains):

    1. ``direction`` 0 (the policy's count did not change): the current counts;
       1 (it rose): the current counts plus replicas only; -1 (it fell): less replicas only;
    2. the cheapest on the types in use now.

    Without this the class shares, which move a little every tick, move replicas between
    types (2 A100 + 21 A40 <-> 3 A100 + 19 A40 every few ticks, each a cold start)."""
    best = plan(options, classes, utilization=utilization, min_total=min_total)
    in_use = {name for name, n in current.items() if n}
    if not in_use:
        return best
    have = [current.get(o.name, 0) for o in options]
    pinned = zip(options, have, strict=True)
    if direction == 0:
        first = [replace(o, min_replicas=n, max_replicas=n) for o, n in pinned]
    elif direction > 0:
        first = [
            replace(o, min_replicas=max(o.min_replicas, min(n, o.max_replicas))) for o, n in pinned
        ]
    else:
        first = [replace(o, max_replicas=min(n, o.max_replicas)) for o, n in pinned]
    # Counts the bounds no longer allow (a quota cut, a type the scheduler refuses) are not
    # kept: what they held moves to the other types.
    allowed = direction != 0 or all(
        o.min_replicas <= n <= o.max_replicas for o, n in zip(options, have, strict=True)
    )
    limit = best.cost_per_hour * (1 + hysteresis) + 1e-9
    for shape in ([first] if allowed else []) + [_only(options, in_use)]:
        try:
            near = plan(shape, classes, utilization=utilization, min_total=min_total)
        except ValueError:
            continue  # these counts cannot hold min_total
        if near.unserved_per_s <= best.unserved_per_s + 1e-9 and near.cost_per_hour <= limit:
            return near
    return best


def _only(options: Sequence[GpuOption], names: set[str]) -> list[GpuOption]:
    return [o if o.name in names else replace(o, min_replicas=0, max_replicas=0) for o in options]


@dataclass(frozen=True)
class MixMemory:
    """What the mix carries from tick to tick: the mix last chosen (``goal``, by type), the
    policy's count it was chosen for, and the types in use a change has wanted since when."""

    goal: dict[str, int] = field(default_factory=dict)
    desired: int | None = None
    wanted: tuple[str, ...] | None = None
    wanted_since: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "goal": self.goal,
            "desired": self.desired,
            "wanted": None if self.wanted is None else list(self.wanted),
            "wanted_since": self.wanted_since,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MixMemory:
        wanted = data.get("wanted")
        return cls(
            {str(k): int(v) for k, v in (data.get("goal") or {}).items()},
            data.get("desired"),
            None if wanted is None else tuple(wanted),
            float(data.get("wanted_since") or 0.0),
        )


def dwell(
    chosen: Mix,
    options: Sequence[GpuOption],
    classes: Sequence[RequestClass],
    memory: MixMemory,
    now: float,
    cold_start_s: float,
    *,
    utilization: float = DEFAULT_UTILIZATION,
    min_total: int = 0,
) -> tuple[Mix, tuple[str, ...] | None, float]:
    """A change of the types in use waits until it has been the choice for a cold start: a
    burst the policy holds for a minute made the program add 13 A40s beside 8 A100s on the
    code trace, drained before they served (+2.7 % cost in the back-test). A change that
    serves more (the types in use cannot hold the demand) does not wait. Returns the mix and
    the change wanted since when (None: no change of types)."""
    in_use = {t for t, n in memory.goal.items() if n}
    used = {t for t, n in chosen.replicas.items() if n}
    if not in_use or used == in_use:
        return chosen, None, 0.0
    wanted, since = tuple(sorted(used)), now
    if memory.wanted is not None and set(memory.wanted) == used:
        since = memory.wanted_since
    if now - since >= cold_start_s:
        return chosen, wanted, since
    try:
        stay = plan(_only(options, in_use), classes, utilization=utilization, min_total=min_total)
    except ValueError:
        return chosen, wanted, since
    return (stay if stay.unserved_per_s <= chosen.unserved_per_s + 1e-9 else chosen), wanted, since


@dataclass(frozen=True)
class MixRule:
    """How a workload's mix is chosen beyond the program: the reference type the policy
    counts in, the objectives, and the anti-flap settings."""

    reference: str
    ttft_s: float
    cold_start_s: float
    hysteresis: float = HYSTERESIS
    utilization: float = DEFAULT_UTILIZATION
    router_guard: bool = True  # the pool routes by expected delay (EXPECTED_DELAY_ROUTING)


def next_mix(
    options: Sequence[GpuOption],
    classes: Sequence[RequestClass],
    desired: int,
    memory: MixMemory,
    rule: MixRule,
    *,
    output_tokens: float,
    now: float,
    min_total: int = 0,
) -> tuple[Mix, MixMemory]:
    """The mix for the policy's ``desired`` count (``classes``: it as demand, ``as_demand``),
    the one path of the live loop and the back-test: the router guard (``routed``), the
    program with the hysteresis (``steady``, its direction the policy's count's move since
    the last tick), then the cold-start wait (``dwell``). Raises ValueError when no mix fits
    the bounds."""
    offered = list(options)
    if rule.router_guard:
        offered = routed(options, rule.reference, output_tokens, rule.ttft_s)
    last = desired if memory.desired is None else memory.desired
    chosen = steady(
        offered,
        classes,
        memory.goal,
        rule.hysteresis,
        direction=(desired > last) - (desired < last),
        utilization=rule.utilization,
        min_total=min_total,
    )
    chosen, wanted, since = dwell(
        chosen,
        offered,
        classes,
        memory,
        now,
        rule.cold_start_s,
        utilization=rule.utilization,
        min_total=min_total,
    )
    goal = {o.name: chosen.replicas.get(o.name, 0) for o in options}
    return chosen, MixMemory(goal, desired, wanted, since)


class _Program:
    def __init__(
        self,
        options: Sequence[GpuOption],
        classes: Sequence[RequestClass],
        utilization: float,
        min_total: int,
    ) -> None:
        self.options, self.classes = list(options), list(classes)
        self.utilization, self.min_total = utilization, min_total
        self.beyond = tuple(
            c.name
            for c in classes
            if not any(c.longest_prompt_tokens <= o.longest_prompt_tokens for o in options)
        )
        # (type index, class index) pairs a class may use: the types meeting its TTFT, or
        # every type for a class none meets.
        self.pairs = [
            (t, k)
            for k, c in enumerate(classes)
            for t, o in enumerate(options)
            if c.name in self.beyond or c.longest_prompt_tokens <= o.longest_prompt_tokens
        ]

    def solve(self) -> Mix:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp

        n_types, n_classes, n_pairs = len(self.options), len(self.classes), len(self.pairs)
        size = n_types + n_pairs + n_classes  # [n_t ..., x_tk ..., u_k ...]
        rates = np.array([c.rate_per_s for c in self.classes])
        serve = np.zeros((n_classes, size))  # sum_t x_tk + u_k = rate_k
        busy = np.zeros((n_types, size))  # sum_k work_tk x_tk - utilization n_t <= 0
        for j, (t, k) in enumerate(self.pairs):
            serve[k, n_types + j] = 1.0
            busy[t, n_types + j] = self.classes[k].work_s(self.options[t].capacity)
        for k in range(n_classes):
            serve[k, n_types + n_pairs + k] = 1.0
        for t in range(n_types):
            busy[t, t] = -self.utilization
        total = np.zeros((1, size))
        total[0, :n_types] = 1.0
        unserved = np.zeros((1, size))
        unserved[0, n_types + n_pairs :] = 1.0
        lower = np.concatenate([[o.min_replicas for o in self.options], np.zeros(size - n_types)])
        upper = np.concatenate(
            [[o.max_replicas for o in self.options], np.full(size - n_types, np.inf)]
        )
        constraints = [
            LinearConstraint(busy, -np.inf, 0.0),
            LinearConstraint(total, self.min_total, np.inf),
        ]
        if n_classes:
            constraints.append(LinearConstraint(serve, rates, rates))
        bounds = Bounds(lower, upper)
        # Pass 1: the least demand left unserved within the bounds (replicas continuous: the
        # integer optimum serves as much, since the bounds are integers).
        first = milp(unserved[0], constraints=constraints, bounds=bounds)
        if not first.success:
            raise ValueError(f"no mix satisfies the bounds: {first.message}")
        least = max(float(first.fun), 0.0)
        # Pass 2: the cheapest integer mix that leaves no more unserved.
        cost = np.zeros(size)
        cost[:n_types] = [o.price_per_hour for o in self.options]
        slack = least + 1e-9 * max(1.0, float(rates.sum()))
        second = milp(
            cost,
            constraints=[*constraints, LinearConstraint(unserved, 0.0, slack)],
            bounds=bounds,
            integrality=np.concatenate([np.ones(n_types), np.zeros(size - n_types)]),
        )
        if not second.success:
            raise ValueError(f"no integer mix found: {second.message}")
        return self._mix(second.x, least)

    def _mix(self, x: Sequence[float], least: float) -> Mix:
        n_types = len(self.options)
        replicas = {o.name: round(x[t]) for t, o in enumerate(self.options)}
        served = {
            (self.classes[k].name, self.options[t].name): float(x[n_types + j])
            for j, (t, k) in enumerate(self.pairs)
            if x[n_types + j] > 1e-9
        }
        cost = math.fsum(o.price_per_hour * replicas[o.name] for o in self.options)
        return Mix(replicas, cost, served, least if least > 1e-9 else 0.0, self.beyond)
