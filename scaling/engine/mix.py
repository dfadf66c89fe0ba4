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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .types import ReplicaCapacity

DEFAULT_UTILIZATION = 0.8  # the busy share a replica is sized for: queueing needs slack
NO_LIMIT = 10_000  # scaling.models.MAX_REPLICAS


@dataclass(frozen=True)
class GpuOption:
    """One GPU type the workload may run on, as the caller derived it."""

    name: str
    price_per_hour: float  # one replica: GPU-hour price x GPUs per replica
    capacity: ReplicaCapacity
    longest_prompt_tokens: int  # the longest prompt it prefills within the TTFT objective
    min_replicas: int = 0
    max_replicas: int = NO_LIMIT  # the tightest of policy, quota and placeable GPUs


@dataclass(frozen=True)
class RequestClass:
    """Requests of similar prompt length: their rate and mean sizes."""

    name: str
    rate_per_s: float
    prompt_tokens: float  # mean
    output_tokens: float  # mean
    longest_prompt_tokens: int

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
