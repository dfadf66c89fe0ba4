"""The control loop: one level-triggered tick per cluster (the imperative shell around the
pure engine in scaling.engine).

Like a Kubernetes controller's reconcile, a tick recomputes desired state from observed state
and never acts on a message like "scale up by 2"; running it twice, or after a crash, is safe.

A tick of one cluster:

1. Claims the cluster's lease (a conditional UPDATE): one writer per cluster, and so per
   workload, at a time; a tick that finds the lease held is skipped, not queued.
2. Loads the cluster's workloads with their policies, tenants and GPU types (one query).
3. Observes: every Deployment and every pod in one list call each; one metrics read per
   metric name for all workloads.
4. Decides each workload with the engine, then has the quota maths allocate what the
   engines want across each cohort and GPU type (scaling.allocation: two queries): growth
   that does not fit is cut, and borrowers may be reclaimed from. Where the grant binds,
   the engine decides again with it as its quota input (the final decision). A workload
   on several GPU types has its total split into the cheapest mix first (scaling.variants)
   and wishes once per type.
5. Applies changed replica counts in enforce mode ("set replicas to N"), and pool settings
   that differ from the pool's.
6. Records in bulk: each workload's latest evaluation as its public status
   (scaling.status.WorkloadStatus), what the loop remembers for next tick as its loop_state,
   and a Decision for every apply, every change of outcome or reason, and the first
   evaluation under a new policy version (a steady hold adds no row).
7. Keeps each tenant namespace's ResourceQuota at its effective limit (quotas.sync).

A tick has one clock: ``now`` (Unix seconds), read once at its start unless the caller passes
it, and every time the tick reads or stamps comes from it (observation, status, decisions,
engine clocks, quota grace clocks, the ResourceQuota full-sync timer). Tests pass it to move
the control plane's clocks without sleeping. Only the lease and the liveness stamp stay on
the wall clock: they are about this worker process, which other workers judge by theirs.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Prefetch, Q
from django.utils import timezone

from clusters import kubernetes, metrics, pool
from clusters.kubernetes import ClusterError, DeploymentState, PodState
from clusters.metrics import MetricsError
from clusters.models import Cluster
from quotas.maths import Grant
from quotas.sync import sync_resource_quotas
from scaling import observe, signal_store, variants
from scaling.allocation import Wish, grant_all, namespace_limits, quota_rows, variant_key
from scaling.backtest.result import infeasible_sentence
from scaling.backtest.slo import DEFAULT_SLO_TTFT_S, prompt_limit
from scaling.bulk_writes import update_columns
from scaling.capacity import replica_capacity
from scaling.engine import Decision as EngineDecision
from scaling.engine import (
    Memory,
    Observation,
    PodSample,
    PolicyParams,
    QuotaHeadroom,
    decide,
    note_outage,
)
from scaling.engine import PodState as EnginePod
from scaling.models import ControlLoopState, Decision, ScalingPolicy, Workload, WorkloadVariant
from scaling.signals import SignalHistory, SignalTick
from scaling.status import (
    ErrorIncident,
    Infeasible,
    MetricValue,
    StatusStep,
    TypeStatus,
    WorkloadStatus,
)
from tenants.models import Namespace

log = logging.getLogger(__name__)

# The status counts the requests too long for the TTFT objective over this long (the
# dashboard's "in the last 10 min"): long enough to hold still, short enough to be news.
INFEASIBLE_WINDOW_S = 600.0


@dataclass
class TickReport:
    cluster: str
    workloads: int = 0
    decisions: int = 0
    applied: int = 0
    apply_errors: int = 0
    metric_queries: int = 0
    error: str = ""
    error_cause: tuple[str, str] | None = None  # (kind, failing call), one incident per cause
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class Observed:
    """What one tick saw of the cluster."""

    now: float
    deployments: dict[tuple[str, str], DeploymentState]
    pods: dict[str, list[PodState]]  # by namespace
    samples: dict[str, observe.PodIndex]  # by metric name, then (namespace, pod)
    metrics_error: str = ""


def tick_cluster(cluster_id: int, now: float | None = None) -> TickReport | None:
    """Run one tick of ``cluster_id`` at ``now`` (Unix seconds; the wall clock when None);
    None when another worker holds its lease."""
    if now is None:
        now = time.time()
    lease = Lease(cluster_id, uuid.uuid4().hex)
    if not lease.claim():
        return None
    started = time.perf_counter()
    cluster = Cluster.objects.get(pk=cluster_id)
    report = TickReport(cluster=cluster.name)
    try:
        with _cyclic_gc_paused():
            _tick(cluster, report, now, lease)
    except LeaseLost as exc:  # another worker ticks this cluster now: write nothing more
        log.warning("tick of cluster %s stopped: %s", cluster, exc)
        report.error = str(exc)
    except Exception as exc:  # a tick must never take the worker down; the next one retries
        log.exception("tick of cluster %s failed", cluster)
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        _release(cluster_id, lease.owner, report, time.perf_counter() - started, now)
    return report


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A tick of 1,000 workloads allocates a few hundred thousand containers (samples, pod and
    Deployment JSON, statuses, rows) that live until its end; the cyclic collector's young
    generations re-scan them every few hundred allocations: ~40 % of such a tick's CPU.
    Reference counting frees them all the same; any cycles wait for the collector's next
    pass after the tick."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class LeaseLost(Exception):
    """The tick's lease expired and another worker claimed the cluster."""


class Lease:
    """One writer per cluster: a worker ticks a cluster only while it holds the cluster's
    lease (``ControlLoopState.lease_owner``/``lease_until``), claimed by a conditional UPDATE
    and renewed during the tick, so a worker killed mid-tick blocks its cluster for at most
    ``LOOP_LEASE_S`` (not the tick's time limit). Before each write to the cluster and the
    database the tick calls ``keep``: it renews the lease once a third of it has passed, and
    raises LeaseLost if someone else holds it now, so two workers never write one cluster."""

    def __init__(self, cluster_id: int, owner: str) -> None:
        self.cluster_id, self.owner = cluster_id, owner
        self.duration = timedelta(seconds=float(settings.LOOP_LEASE_S))
        self.renewed = 0.0  # time.monotonic() of the last claim or renewal

    def claim(self) -> bool:
        ControlLoopState.objects.get_or_create(cluster_id=self.cluster_id)
        return self._take(Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now()))

    def keep(self) -> None:
        if time.monotonic() - self.renewed < self.duration.total_seconds() / 3:
            return
        if not self._take(Q(lease_owner=self.owner)):
            raise LeaseLost(f"lease of cluster {self.cluster_id} lost: another worker holds it")

    def _take(self, condition: Q) -> bool:
        taken = ControlLoopState.objects.filter(condition, cluster_id=self.cluster_id).update(
            lease_owner=self.owner, lease_until=timezone.now() + self.duration
        )
        if taken:
            self.renewed = time.monotonic()
        return taken == 1


def claim(cluster_id: int, owner: str) -> bool:
    """Claim ``cluster_id``'s lease for ``owner`` (what a tick does first)."""
    return Lease(cluster_id, owner).claim()


def _release(cluster_id: int, owner: str, report: TickReport, seconds: float, now: float) -> None:
    state = ControlLoopState.objects.filter(cluster_id=cluster_id, lease_owner=owner).first()
    if state is None:  # the lease expired and someone else holds it now: touch nothing
        return
    counts = dict(state.decisions)
    for outcome, n in report.outcomes.items():
        counts[outcome] = counts.get(outcome, 0) + n
    errors = state.errors
    if report.error:
        cause = report.error_cause or ("error", "tick")
        errors = state.count_error(cause, report.error, _at(now).isoformat())
    ControlLoopState.objects.filter(pk=state.pk, lease_owner=owner).update(
        errors=errors,
        lease_owner="",
        lease_until=None,
        ticks=F("ticks") + 1,
        tick_seconds_total=F("tick_seconds_total") + seconds,
        last_tick_at=timezone.now(),
        last_tick_seconds=seconds,
        last_error=report.error,
        apply_errors=F("apply_errors") + report.apply_errors,
        decisions=counts,
    )


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _tick(cluster: Cluster, report: TickReport, now: float, lease: Lease) -> None:
    workloads = list(
        Workload.objects.filter(cluster=cluster)
        .select_related("policy", "tenant", "gpu_type", "cluster")
        .prefetch_related(
            Prefetch("variants", queryset=WorkloadVariant.objects.select_related("gpu_type"))
        )
        .order_by("pk")
    )
    report.workloads = len(workloads)
    if not workloads:
        return
    # Defence in depth: a workload saved before namespaces were owned, or whose namespace was
    # mapped away since, holds; nothing of it is written to the cluster.
    ownership = Namespace.objects.ownership(cluster.pk)
    owned = [w for w in workloads if ownership.owns(w.tenant, w.namespace)]
    try:
        observed = _observe(cluster, owned, report, now)
    except ClusterError as exc:
        report.error, report.error_cause = exc.sentence(cluster.name), exc.cause
        unobservable = [_unobservable(w, report.error, now, exc.cause) for w in workloads]
        lease.keep()
        _record(workloads, unobservable, report, now)
        return
    proposals = [
        _propose(w, observed) if ownership.owns(w.tenant, w.namespace) else _not_owned(w, now)
        for w in workloads
    ]
    rows = quota_rows(workloads)
    _choose_mixes(cluster, [p for p in proposals if isinstance(p, Proposal)], rows)
    wishes = [w for p in proposals if isinstance(p, Proposal) for w in _wishes(p)]
    grants = grant_all(cluster, wishes, observed.now, rows)
    evaluations: list[Evaluation] = []
    for p in proposals:
        if isinstance(p, Proposal):
            lease.keep()  # before each write to the cluster
            evaluations.append(_finish(cluster, p, grants, observed, report))
        else:
            evaluations.append(p)
    _apply_pool_settings(cluster, owned)
    lease.keep()
    _record(workloads, evaluations, report, now)
    lease.keep()
    sync_quotas(cluster, namespace_limits(cluster, owned, rows), now)


def sync_quotas(cluster: Cluster, limits: dict[str, int], now: float) -> None:
    """Keep the namespaces' ResourceQuotas at their effective ``limits``: changed limits
    every tick, and every INVENTORY_SYNC_INTERVAL (by the tick's clock ``now``) a full read
    that finds hand edits (drift)."""
    state = ControlLoopState.objects.get(cluster=cluster)
    known = state.resource_quotas or {}
    full = now - float(known.get("full_sync_at", 0.0)) >= settings.INVENTORY_SYNC_INTERVAL
    namespaces = sync_resource_quotas(
        cluster, limits, known.get("namespaces", {}), full=full, at=_at(now)
    )
    synced = {"namespaces": namespaces, "full_sync_at": now if full else known["full_sync_at"]}
    if synced != known:
        ControlLoopState.objects.filter(pk=state.pk).update(resource_quotas=synced)


def _observe(
    cluster: Cluster, workloads: list[Workload], report: TickReport, now: float
) -> Observed:
    deployments = kubernetes.list_deployments(cluster)
    pods = kubernetes.list_pods(cluster)
    names: set[str] = set()
    for workload in workloads:
        policy = workload.policy_or_none
        if policy is None or policy.mode == ScalingPolicy.Mode.OFF:
            continue
        names.add(policy.metric)
        # Offered work and latency for every algorithm, whichever it reads: the signal
        # history keeps them, so the what-if can replay a switch to predictive or slo and
        # estimate SLO attainment; the prompt-length buckets give the infeasible count.
        names.update(observe.OFFERED_WORK_METRICS)
        if workload.variants.all():  # the mean request sizes its mix is sized by
            names.update(variants.MIX_METRICS)
    observed = Observed(now, deployments, observe.pods_by_namespace(pods), {})
    report.metric_queries = len(names)
    try:
        read = metrics.read_samples(cluster, names, now) if names else {}
        observed.samples = {name: observe.index_by_pod(found) for name, found in read.items()}
    except MetricsError as exc:
        # Every metric is missing this tick: the engine holds, it never reads zero.
        observed.metrics_error = str(exc)
    return observed


# --- one workload --------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """The outcome of one workload this tick, before it is written: its public status, what
    the loop keeps for next tick (scaling.status.LOOP_STATE_KEYS), and a Decision row."""

    status: WorkloadStatus
    loop_state: dict[str, Any]
    decision: Decision | None
    observed: DeploymentState | None
    signals: SignalTick | None = None  # what was observed, for the signal history


@dataclass
class Proposal:
    """A workload observed and decided without quota, waiting for its grant."""

    workload: Workload
    policy: ScalingPolicy
    deployment: DeploymentState
    obs: Observation
    memory: Memory
    history: dict[str, Any]
    counters: dict[str, Any]
    engine: EngineDecision
    metrics_missing: bool
    failure: str  # what keeps the Deployment from its replicas (observe.failure_of), or ""
    unplaced: str  # the part of it that is pods the scheduler cannot place, or ""
    tick: SignalTick
    pool: variants.Pool | None = None  # a workload on several GPU types: all of them
    choice: variants.Choice | None = None  # and the mix chosen for the policy's total


def _propose(workload: Workload, observed: Observed) -> Proposal | Evaluation:
    deployment = observed.deployments.get((workload.namespace, workload.deployment))
    policy = workload.policy_or_none
    if deployment is None:
        why = kubernetes.missing_deployment(
            workload.cluster, workload.namespace, workload.deployment
        )
        return _unobservable(workload, why, observed.now)
    if policy is None or policy.mode == ScalingPolicy.Mode.OFF:
        at = _at(observed.now)
        status = WorkloadStatus(
            at=at,
            outcome="off",
            reason="no active policy",
            current=deployment.spec_replicas,
            failure=observe.failure_of(deployment, observe.pods_of(deployment, observed.pods)),
            observed_at=at,
        )
        return Evaluation(status, {}, None, deployment)
    pods = observe.pods_of(deployment, observed.pods)
    pool = None
    if workload.variants.all():  # the policy decides the total over every GPU type's pods
        kept = (workload.loop_state or {}).get("counters") or {}
        found = variants.observe_pool(
            workload,
            policy,
            deployment,
            observed.deployments,
            observed.pods,
            variants.classes_of(workload, policy, kept),
            kept.get("mix"),
        )
        if isinstance(found, str):
            return _unobservable(workload, found, observed.now)
        pool, deployment, pods = found, found.combined, found.pods
    else:
        deployment = observe.placed(deployment, pods)  # as quota and the engine count it
    state = workload.loop_state or {}
    params = policy.engine_params()
    tick, counters = _signal_tick(workload, policy, params, deployment, pods, observed, state)
    if pool is not None:
        counters = _mix_counters(workload, policy, pods, observed, state, counters)
    history = SignalHistory(params, state.get("history"))
    history.record(tick)
    obs = history.observation(tick)
    stored = state.get("memory")
    memory = Memory.from_dict(stored if isinstance(stored, dict) else None)
    engine = decide(params, obs, memory)
    metrics_missing = bool(observed.metrics_error) and not obs.samples
    return Proposal(
        workload,
        policy,
        deployment,
        obs,
        memory,
        history.to_json(),
        counters,
        engine,
        metrics_missing,
        observe.failure_of(deployment, pods),
        observe.unplaced(pods),
        tick,
        pool,
    )


def _finish(
    cluster: Cluster,
    p: Proposal,
    grants: dict[int, Grant],
    observed: Observed,
    report: TickReport,
) -> Evaluation:
    """Decide with the quota's grant, act, and describe the result."""
    if p.pool is not None:
        engine, outcome, error = _act_mix(cluster, p, grants, report)
    else:
        quota = _quota_input(grants.get(p.workload.pk), p.deployment.spec_replicas)
        # The wish was decide() without a quota; where the grant binds, the final decision
        # is decide() again from the same memory with it (pure: same inputs, same answer).
        engine = (
            p.engine if quota is None else decide(p.policy.engine_params(), p.obs, p.memory, quota)
        )
        outcome, error = _act(cluster, p.workload, p.policy, p.deployment, engine, report)
    reason = engine.reason if not error else f"{engine.reason}; apply failed: {error}"
    if p.metrics_missing:
        reason = f"{reason} (metrics source: {observed.metrics_error})"
    if p.unplaced:
        reason = f"{reason}; {p.unplaced}"
    previous = p.workload.loop_state or {}
    # The quota allocation's clocks (scaling.allocation reads them back, for every cluster).
    quota_state: dict[str, float] = {"wanted": p.engine.desired}
    if p.engine.desired > p.deployment.replicas:
        quota_state["waiting_since"] = previous.get("waiting_since", observed.now)
    if outcome == Decision.Outcome.APPLIED and engine.desired > p.deployment.spec_replicas:
        quota_state["grown_at"] = observed.now
    else:
        quota_state["grown_at"] = previous.get("grown_at", 0.0)
    evaluation = _evaluation(p, engine, outcome, reason, observed.now)
    if p.pool is not None and p.choice is not None:
        types, mix_line = _type_statuses(p, grants), p.choice.reason
        evaluation.status = replace(evaluation.status, types=types, mix=mix_line)
        if evaluation.decision is not None:  # each type's count, as the dashboard shows it
            evaluation.decision.metrics["types"] = [t.to_dict() for t in types]
    evaluation.loop_state.update(
        memory=engine.memory.to_dict(), history=p.history, counters=p.counters, **quota_state
    )
    if p.pool is not None and p.choice is not None:  # each type's own, for other clusters
        evaluation.loop_state["parts"] = variants.parts_state(p.workload, p.pool, p.choice.replicas)
    evaluation.signals = p.tick
    return evaluation


# --- a workload on several GPU types (scaling.variants) -----------------------------------------


def _choose_mixes(cluster: Cluster, proposals: list[Proposal], rows: list[Any]) -> None:
    """The mix of each workload with variants for its policy's total: within each type's
    quota room and the replicas its nodes can still place (one query for the nodes)."""
    pooled = [(p.workload, p.pool) for p in proposals if p.pool is not None]
    if not pooled:
        return
    placeable = variants.placement_room(cluster.pk, pooled)
    for p in proposals:
        if p.pool is None:
            continue
        refused = variants.refusals(p.pool, p.counters.get("mix_unplaced"), p.tick.now)
        p.counters["mix_unplaced"] = {name: r.to_dict() for name, r in refused.items()}
        quota = variants.quota_room(p.workload, p.pool, rows)
        room = variants.bounds(p.workload, p.pool, quota, placeable, refused)
        shape = variants.classes_of(p.workload, p.policy, p.counters)
        memory = variants.memory_of(p.pool, p.counters.get("mix"))
        try:
            chosen = variants.choose(
                p.workload, p.policy, p.pool, p.engine.desired, shape, room, memory, p.tick.now
            )
            p.choice = variants.with_refusals(chosen, refused, p.tick.now)
        except ValueError as exc:  # no mix within the bounds: hold every type, say why
            held = {part.name: part.deployment.spec_replicas for part in p.pool.parts}
            p.choice = variants.Choice(held, f"mix held: {exc}")
        p.choice = variants.make_before_break(p.pool, p.choice)
        if p.choice.memory is not None:  # the hysteresis and the wait start from it next tick
            p.counters["mix"] = p.choice.memory.to_dict()


def _part_key(workload: Workload, part: variants.Part) -> int:
    return workload.pk if part.variant is None else variant_key(part.variant)


def _wishes(p: Proposal) -> list[Wish]:
    """What the quota allocation checks: the workload's total, or one wish per GPU type."""
    if p.pool is None or p.choice is None:
        d = p.deployment
        return [Wish(p.workload, d.replicas, d.warming_replicas, p.engine.desired)]
    return [
        Wish(
            p.workload,
            part.holding,
            part.warming,
            p.choice.replicas[part.name],
            gpu_type_id=part.gpu_type.pk,
            key=_part_key(p.workload, part),
        )
        for part in p.pool.parts
    ]


def _mix_counters(
    workload: Workload,
    policy: ScalingPolicy,
    pods: list[PodState],
    observed: Observed,
    state: dict[str, Any],
    counters: dict[str, Any],
) -> dict[str, Any]:
    """The counters with the mix's own readings: the last known mean request sizes (kept
    while no request finishes, so a pause in traffic does not reshuffle the mix), and the
    prompt-length histogram's window its classes come from (variants.prompt_window), from
    the tick's reading of it (the one _infeasible keeps)."""
    before = state.get("counters") or {}
    sizes, readings = variants.read_sizes(workload.namespace, pods, observed.samples, before)
    found = [sizes.prompt_tokens, sizes.output_tokens] if sizes else before.get("mix_sizes")
    reading = counters["prompt_len"]  # _signal_tick's reading of this tick
    window = variants.prompt_window(
        before.get("mix_prompt_window"),
        before.get("prompt_len"),
        reading,
        found[0] if found else None,
        variants.window_s(policy),
    )
    mine = {"prompt_len": reading, "mix_prompt_window": window, "mix": before.get("mix")}
    mine["mix_unplaced"] = before.get("mix_unplaced")  # the scheduler's refusals (variants)
    return counters | readings | mine | ({"mix_sizes": found} if found else {})


def _act_mix(
    cluster: Cluster, p: Proposal, grants: dict[int, Grant], report: TickReport
) -> tuple[EngineDecision, str, str]:
    """Set each GPU type's Deployment to the mix, cut where its quota grant binds; one
    decision for the workload: the mix's explanation, then the policy's reason."""
    assert p.pool is not None and p.choice is not None
    targets, cuts = _mix_targets(p, grants)
    reason = "; ".join([p.choice.reason, *cuts, f"policy: {p.engine.reason}"])
    outcome = "blocked_by_quota" if cuts else p.engine.outcome
    # Current and desired stay in primary replicas (variants.observe_pool): the reason
    # names each type's count.
    engine = replace(p.engine, reason=reason, outcome=outcome)
    changed = [(part, n) for part, n in targets if n != part.deployment.spec_replicas]
    if not changed:
        return engine, (Decision.Outcome.BLOCKED_BY_QUOTA if cuts else Decision.Outcome.HELD), ""
    if p.policy.mode == ScalingPolicy.Mode.DRY_RUN:
        return engine, Decision.Outcome.DRY_RUN, ""
    for part, n in changed:
        try:
            kubernetes.set_scale(cluster, p.workload.namespace, part.deployment.name, n)
        except ClusterError as exc:
            report.apply_errors += 1
            return engine, Decision.Outcome.ERROR, exc.sentence(cluster.name)
    report.applied += 1
    return engine, Decision.Outcome.APPLIED, ""


def _mix_targets(
    p: Proposal, grants: dict[int, Grant]
) -> tuple[list[tuple[variants.Part, int]], list[str]]:
    """Each GPU type's count in the mix, cut where its quota grant binds, and the cuts."""
    assert p.pool is not None and p.choice is not None
    targets: list[tuple[variants.Part, int]] = []
    cuts = []
    for part in p.pool.parts:
        want = p.choice.replicas[part.name]
        grant = grants.get(_part_key(p.workload, part))
        if grant is not None and grant.kind != "ok" and grant.replicas < want:
            want = grant.replicas
            cuts.append(f"{part.name} quota: {grant.reason}")
        targets.append((part, want))
    return targets, cuts


def _type_statuses(p: Proposal, grants: dict[int, Grant]) -> tuple[TypeStatus, ...]:
    """What the status shows of each GPU type (and whether its Deployment is pinned)."""
    if p.pool is None or p.choice is None:
        return ()
    return tuple(
        TypeStatus.of(part.name, part.gpu_type.node_label, part.deployment, n)
        for part, n in _mix_targets(p, grants)[0]
    )


def _quota_input(grant: Grant | None, current: int) -> QuotaHeadroom | None:
    """The quota allocation's grant (quotas.maths) as the engine's input; None when it does
    not bind (no quota, or all the growth wanted fits)."""
    if grant is None or grant.kind == "ok":
        return None
    if grant.kind == "reclaimed":
        return QuotaHeadroom(0, grant.reason, reclaim_to=grant.replicas)
    return QuotaHeadroom(grant.replicas - current, grant.reason)


def _signal_tick(
    workload: Workload,
    policy: ScalingPolicy,
    params: PolicyParams,
    deployment: DeploymentState,
    pods: list[PodState],
    observed: Observed,
    state: dict[str, Any],
) -> tuple[SignalTick, dict[str, Any]]:
    """What this tick observed of the workload: its policy's metric, and offered work and
    latency whatever its algorithm reads (the signal history keeps them for the what-if);
    and the counter readings the next tick's rates are taken against."""
    pod_names = {p.name for p in pods}
    ns, now = workload.namespace, observed.now
    values = observe.per_pod(observed.samples.get(policy.metric, {}), ns, pod_names)
    aggregated = observe.aggregate(values, policy.aggregation)
    tick = SignalTick(
        now=now,
        current=deployment.spec_replicas,
        ready=deployment.ready_replicas,
        warming=deployment.warming_replicas,
        metric=None if aggregated is None else (aggregated[1], aggregated[0]),
        # how many pods an "average" point averaged over (engine: Observation.series_pods)
        metric_pods=float(len(values)) if policy.aggregation == "average" else None,
        pods=tuple(EnginePod(p.name, p.ready) for p in pods),
        samples=tuple(PodSample(pod, s.timestamp, s.value) for pod, s in sorted(values.items())),
    )
    counters = dict(state.get("counters") or {})
    # Counted and shown whatever the algorithm reads; no algorithm scales for them.
    infeasible, counters["prompt_len"] = _infeasible(
        workload, policy, observed, pod_names, counters
    )
    tick = replace(tick, infeasible=infeasible)
    counters.pop("prompt", None)  # whole prompt tokens, read before the prefix cache's hits
    rates: dict[str, float | None] = {}
    samples = observed.samples
    prompt = observe.uncached_prompt(
        observe.per_pod(samples.get(observe.PROMPT_TOKENS, {}), ns, pod_names),
        observe.per_pod(samples.get(observe.PREFIX_CACHE_HITS, {}), ns, pod_names),
    )
    generation = observe.per_pod(samples.get(observe.GENERATION_TOKENS, {}), ns, pod_names)
    for key, current in (("uncached_prompt", prompt), ("generation", generation)):
        rates[key], counters[key] = observe.counter_rate(counters.get(key) or {}, current)
    buckets = observe.bucket_counts(observed.samples.get(observe.TTFT_BUCKETS, {}), ns, pod_names)
    p95 = observe.histogram_quantile(0.95, counters.get("ttft") or {}, buckets)
    counters["ttft"] = buckets
    waits = observe.bucket_counts(observed.samples.get(observe.QUEUE_BUCKETS, {}), ns, pod_names)
    queue_p95 = observe.histogram_quantile(0.95, counters.get("queue") or {}, waits)
    counters["queue"] = waits
    capacity = replica_capacity(
        workload.gpu_type.profile,
        workload.model_name,
        workload.gpus_per_replica,
        policy.max_concurrency,
    )
    tick = replace(
        tick,
        prompt_tokens_per_s=rates["uncached_prompt"],
        generation_tokens_per_s=rates["generation"],
        ttft_p95_s=p95,
        queue_p95_s=queue_p95,
        capacity=capacity,
    )
    return tick, counters


def _infeasible(
    workload: Workload,
    policy: ScalingPolicy,
    observed: Observed,
    pod_names: set[str],
    counters: dict[str, Any],
) -> tuple[Infeasible | None, dict[str, Any]]:
    """The requests finished in the last INFEASIBLE_WINDOW_S whose prompt no replica
    prefills within the policy's TTFT objective (the back-test's default without one), from
    the prompt-length histogram's change since the previous tick, summed over the window's
    ticks (``counters["infeasible_recent"]``); and this reading, for the next tick. Counted
    and shown, never scaled for: the latency signals the engine reads are the queueing
    delay (which a long prompt's own prefill does not enter) and TTFT, read as late only
    with requests waiting (scaling.engine.slo)."""
    buckets = observe.bucket_counts(
        observed.samples.get(observe.PROMPT_LENGTH_BUCKETS, {}), workload.namespace, pod_names
    )
    reading = {"at": observed.now, "buckets": buckets}
    ttft_s = policy.slo_ttft_p95_s or DEFAULT_SLO_TTFT_S
    limit = prompt_limit(
        workload.gpu_type.profile, workload.model_name, workload.gpus_per_replica, ttft_s
    )
    before = counters.get("prompt_len")
    if (
        limit is None
        or not isinstance(before, dict)
        or not isinstance(before.get("at"), int | float)
    ):
        return None, reading
    over = observe.requests_over(limit, before.get("buckets") or {}, buckets)
    # Each tick's count is kept for INFEASIBLE_WINDOW_S and shown summed, so the operator
    # reads a number that holds still (a tick's 5 s flickers between 0 and a few). Summed per
    # tick, not one delta over the window: a pod that goes away takes its counts with it.
    # Entries: [start, requests, total, at_least, limit]; a new objective starts afresh.
    recent = [
        entry
        for entry in counters.get("infeasible_recent") or []
        if isinstance(entry, list)
        and len(entry) == 5
        and entry[4] == limit
        and entry[0] > observed.now - INFEASIBLE_WINDOW_S
    ]
    if over is not None:
        recent.append([float(before["at"]), over.requests, over.total, over.at_least, limit])
    counters["infeasible_recent"] = recent
    if not recent:
        return None, reading
    requests, total = sum(e[1] for e in recent), sum(e[2] for e in recent)
    at_least = any(e[3] for e in recent)
    share = requests / total if total else None
    gpu = workload.gpu_type.name
    text = infeasible_sentence(requests, share, ttft_s, gpu, workload.gpus_per_replica, at_least)
    window_s = observed.now - min(e[0] for e in recent)
    return Infeasible(requests, total, at_least, window_s, ttft_s, limit, text), reading


def _act(
    cluster: Cluster,
    workload: Workload,
    policy: ScalingPolicy,
    deployment: DeploymentState,
    engine: EngineDecision,
    report: TickReport,
) -> tuple[str, str]:
    """Apply the engine's decision as the policy's mode says; (outcome, apply error)."""
    current = deployment.spec_replicas
    if engine.desired == current:
        blocked = engine.outcome == "blocked_by_quota"
        return (Decision.Outcome.BLOCKED_BY_QUOTA if blocked else Decision.Outcome.HELD), ""
    if policy.mode == ScalingPolicy.Mode.DRY_RUN:
        return Decision.Outcome.DRY_RUN, ""
    try:
        kubernetes.set_scale(cluster, workload.namespace, workload.deployment, engine.desired)
    except ClusterError as exc:
        report.apply_errors += 1
        return Decision.Outcome.ERROR, exc.sentence(cluster.name)
    report.applied += 1
    return Decision.Outcome.APPLIED, ""


def _evaluation(
    p: Proposal, engine: EngineDecision, outcome: str, reason: str, now: float
) -> Evaluation:
    steps = tuple(StatusStep(s.name, s.value, s.note) for s in engine.steps)
    metric_values = tuple(
        MetricValue(m.label, _json_number(m.value), m.timestamp, m.pod)
        for m in engine.metric_values
    )
    # What makes a new Decision row: a different outcome or count wanted, a hold on bad data
    # (the engine's guard) or pods the scheduler cannot place starting or ending, a new
    # policy version. Not which step happened
    # to bind this tick: that flips with noise while the count stays, and the latest "why" is
    # always in the status. Repeats are counted there (since, evaluations).
    version = p.policy.version
    guarded = bool(steps) and steps[0].name == "guard"
    key = [outcome, engine.desired, engine.outcome, guarded, bool(p.unplaced), version]
    before = (p.workload.loop_state or {}).get("key")
    # A saved policy shows at once: its first evaluation is a Decision even when it holds.
    if isinstance(before, list) and len(before) == len(key) and before[-1] != version:
        reason = f"first decision of policy v{version}: {reason}"
    at = _at(now)
    previous = p.workload.public_status
    repeat = key == before and outcome != Decision.Outcome.APPLIED and previous is not None
    status = WorkloadStatus(
        at=at,
        outcome=outcome,
        reason=reason,
        policy_version=p.policy.version,
        algorithm=engine.algorithm,
        current=p.deployment.spec_replicas,
        raw_desired=engine.raw_desired,
        desired=engine.desired,
        steps=steps,
        metrics=metric_values,
        failure=p.failure,
        observed_at=at,
        since=previous.since if repeat and previous and previous.since else at,
        evaluations=previous.evaluations + 1 if repeat and previous else 1,
        infeasible=p.tick.infeasible,
    )
    decision = None
    if not repeat:
        as_dict = status.to_dict()
        decision = Decision(
            workload=p.workload,
            policy=p.policy,
            policy_version=p.policy.version,
            at=at,
            algorithm=engine.algorithm,
            metrics={"values": as_dict["metrics"]},
            current_replicas=p.deployment.spec_replicas,
            raw_desired_replicas=engine.raw_desired,
            steps=as_dict["steps"],
            final_replicas=engine.desired,
            outcome=outcome,
            reason=reason,
        )
    return Evaluation(status, {"key": key}, decision, p.deployment)


def _json_number(value: float) -> float | str:
    """JSON has no NaN or infinity (PostgreSQL's jsonb refuses them): a nonsense sample the
    engine refused is recorded as Prometheus writes it, as text."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _unobservable(
    workload: Workload, why: str, now: float, cause: tuple[str, str] | None = None
) -> Evaluation:
    """The workload could not be observed: hold (nothing applied) and say why.

    One failing cause (its kind and the failing call) is one incident: a Decision when it
    starts, then a count and the last time in the status, however the error's text varies
    from tick to tick. The engine's clocks stop (an unobservable tick is an outage). What
    was last observed (replicas, steps, metrics) stays in the status, as last seen.
    """
    policy = workload.policy_or_none
    state = dict(workload.loop_state or {})
    previous = workload.public_status
    at = _at(now)
    key = ["error", *(cause or ("", why))]
    incident = previous.error if previous is not None and state.get("key") == key else None
    error = ErrorIncident(
        cause=tuple(key[1:]),
        count=incident.count + 1 if incident else 1,
        since=incident.since if incident else at,
        last_at=at,
    )
    outcome = Decision.Outcome.ERROR
    status = (
        WorkloadStatus(at=at, outcome=outcome, reason=why, error=error)
        if previous is None
        else replace(previous, at=at, outcome=outcome, reason=why, error=error)
    )
    if isinstance(state.get("memory"), dict):
        state["memory"] = note_outage(Memory.from_dict(state["memory"]), now).to_dict()
    decision = None
    if policy is not None and policy.mode != ScalingPolicy.Mode.OFF and key != state.get("key"):
        decision = Decision(
            workload=workload,
            policy=policy,
            policy_version=policy.version,
            at=at,
            algorithm=policy.algorithm,
            current_replicas=workload.desired_replicas,
            final_replicas=workload.desired_replicas,
            outcome=Decision.Outcome.ERROR,
            reason=f"held: {why}",
        )
    return Evaluation(status, state | {"key": key}, decision, None)


def _not_owned(workload: Workload, now: float) -> Evaluation:
    return _unobservable(
        workload,
        f"namespace {workload.namespace} on cluster {workload.cluster} is not owned by tenant "
        f"{workload.tenant}: nothing is scaled there (staff map namespaces to tenants)",
        now,
    )


# --- pool and records ----------------------------------------------------------------------------


def _apply_pool_settings(cluster: Cluster, workloads: list[Workload]) -> None:
    """Set per-replica concurrency and routing where a policy asks and the pool differs."""
    wanted = {}
    for workload in workloads:
        policy = workload.policy_or_none
        if policy is None or policy.mode != ScalingPolicy.Mode.ENFORCE:
            continue
        if policy.max_concurrency is None and not policy.routing:
            continue
        wanted[(workload.namespace, workload.deployment)] = policy
        for variant in workload.variants.all():  # each GPU type's Deployment alike
            wanted[(workload.namespace, variant.deployment)] = policy
    if not wanted or not cluster.pool_url:
        return
    try:
        current = pool.list_pool_settings(cluster.pool_url)
        for (namespace, name), policy in wanted.items():
            have = current.get((namespace, name))
            if have is None:
                continue
            target = pool.PoolSettings(
                policy.max_concurrency or have.max_concurrency, policy.routing or have.routing
            )
            if target != have:
                pool.set_pool_settings(cluster.pool_url, namespace, name, target)
    except pool.PoolError as exc:
        log.warning("pool settings of %s not applied: %s", cluster, exc)


def _record(
    workloads: list[Workload], evaluations: list[Evaluation], report: TickReport, now: float
) -> None:
    at = _at(now)
    observed: list[tuple[Workload, Any, SignalTick]] = []
    for workload, evaluation in zip(workloads, evaluations, strict=True):
        workload.status = evaluation.status.to_dict()
        open_chunk = (workload.loop_state or {}).get("signals")
        workload.loop_state = evaluation.loop_state
        if evaluation.signals is not None:
            observed.append((workload, open_chunk, evaluation.signals))
        elif open_chunk is not None:
            workload.loop_state["signals"] = open_chunk
        deployment = evaluation.observed
        if deployment is not None:
            workload.ready_replicas = deployment.ready_replicas
            workload.warming_replicas = deployment.warming_replicas
            applied = evaluation.decision and evaluation.status.outcome == "applied"
            desired = evaluation.status.desired
            workload.desired_replicas = (
                desired if applied and desired is not None else deployment.spec_replicas
            )
            workload.observed_at = at
    decisions = [e.decision for e in evaluations if e.decision is not None]
    for decision in decisions:
        report.outcomes[decision.outcome] = report.outcomes.get(decision.outcome, 0) + 1
    report.decisions = len(decisions)
    with transaction.atomic():
        signal_store.append_ticks(observed)  # sets loop_state["signals"]: before it is written
        update_columns(workloads, OBSERVED_FIELDS)
        Decision.objects.bulk_create(decisions, batch_size=500)


OBSERVED_FIELDS = (
    "status",
    "loop_state",
    "ready_replicas",
    "warming_replicas",
    "desired_replicas",
    "observed_at",
)


# --- liveness ------------------------------------------------------------------------------------

# "A few" control-loop intervals: a tick is late after one interval, two are a hiccup (a slow
# tick, a busy worker), three mean nothing is ticking. At least 15 s, so a short interval
# does not turn one slow tick (a cluster API timing out) into "not running".
STALLED_AFTER_INTERVALS = 3
STALLED_MIN_S = 15.0


def stalled_after_s() -> float:
    return max(STALLED_AFTER_INTERVALS * float(settings.CONTROL_LOOP_INTERVAL), STALLED_MIN_S)


@dataclass(frozen=True)
class LoopAge:
    """How long ago the control loop last completed a tick of one cluster."""

    cluster: str
    last_tick_at: datetime | None
    age_s: float | None  # None: never ticked


def loop_ages(now: datetime) -> list[LoopAge]:
    """Every cluster the loop is expected to tick (enabled, with workloads), one query."""
    rows = (
        Cluster.objects.filter(enabled=True, workloads__isnull=False)
        .distinct()
        .order_by("name")
        .values_list("name", "loop_state__last_tick_at")
    )
    return [
        LoopAge(name, at, None if at is None else max((now - at).total_seconds(), 0.0))
        for name, at in rows
    ]


def stalled_loops(now: datetime, started_at: datetime) -> list[LoopAge]:
    """Clusters whose last completed tick is older than `stalled_after_s`. Right after
    `started_at` (this process's start) a cluster has that long to tick before it counts,
    so a fresh start is not reported as a dead loop."""
    limit = timedelta(seconds=stalled_after_s())
    if now - started_at <= limit:
        return []
    return [
        age for age in loop_ages(now) if age.last_tick_at is None or now - age.last_tick_at > limit
    ]
