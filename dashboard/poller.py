"""The per-process metrics poller and its fan-out to local sockets.

One asyncio task per server process (per event loop) reads every enabled cluster's metrics
once per tick, whatever the number of open dashboards, builds one frame per workload and one
per fleet audience (set of visible tenants), and hands the same serialised text to each
subscribed socket. It starts with the first subscriber and stops when the last one leaves.

Fan-out is a bounded queue per socket (``DASHBOARD_FANOUT = "local"``, the default): a slow
client loses its oldest frames, so memory stays bounded. ``"layer"`` sends through channel
layer groups instead (per process, so N processes never duplicate frames); docs/dashboard.md
has the measurement that made "local" the default.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from clusters import kubernetes
from clusters.kubernetes import ClusterError
from clusters.metrics import MetricsError, read_samples
from dashboard import frames, policies
from dashboard.live import BASE_METRICS, ClusterRead, FleetLive, WorkloadLive, WorkloadRef
from scaling import observe

logger = logging.getLogger(__name__)
PROCESS_TOKEN = f"{os.getpid()}x{os.urandom(3).hex()}"
RECENT_DECISIONS = 50


def tick_s() -> float:
    return float(getattr(settings, "DASHBOARD_TICK_S", 1.0))


def layer_fanout() -> bool:
    return getattr(settings, "DASHBOARD_FANOUT", "local") == "layer"


def stale_after_s() -> float:
    return float(getattr(settings, "DASHBOARD_STALE_AFTER_S", 2 * tick_s()))


def socket_queue_limit() -> int:
    return int(getattr(settings, "DASHBOARD_SOCKET_QUEUE", 8))


@dataclass(eq=False)
class Subscription:
    """One socket's interest: the fleet (``workload_id`` None) or one workload, and the
    tenants its user may see (None: all, for staff), fixed at connect."""

    workload_id: int | None
    visible: frozenset[int] | None
    channel_name: str = ""
    queue: deque[str] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    # Read once at connect: offer() runs for every socket on every tick.
    limit: int = field(default_factory=socket_queue_limit)

    def offer(self, text: str) -> None:
        """Queue a frame; past the bound the oldest goes (a slow client skips frames)."""
        while len(self.queue) >= self.limit:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(text)
        self.wakeup.set()

    async def next_frame(self) -> str:
        while not self.queue:
            self.wakeup.clear()
            await self.wakeup.wait()
        return self.queue.popleft()

    def sees(self, tenant_id: int) -> bool:
        return self.visible is None or tenant_id in self.visible

    @property
    def group(self) -> str:
        if self.workload_id is not None:
            return f"dash.{PROCESS_TOKEN}.w{self.workload_id}"
        return f"dash.{PROCESS_TOKEN}.f{audience_key(self.visible)}"


def audience_key(visible: frozenset[int] | None) -> str:
    if visible is None:
        return "all"
    return hashlib.sha1(",".join(map(str, sorted(visible))).encode()).hexdigest()[:16]


@dataclass
class TickRows:
    """What the poller loads from the database each tick (a constant number of queries)."""

    clusters: list[Any]
    workloads: list[WorkloadRef]
    usage: list[frames.TenantUsage]
    decisions: list[dict[str, Any]]


def overlap() -> timedelta:
    """How long after its stamp a decision may commit (see DecisionFeed)."""
    return timedelta(seconds=float(settings.CELERY_TASK_TIME_LIMIT) + 30.0)


@dataclass
class DecisionFeed:
    """Which decisions the live feed has sent, found by their time, not their id.

    Clusters record decisions in parallel transactions, so ids are not in commit order: a
    batch with lower ids may commit after one with higher ids, and a feed paging by id
    would never show it. Each tick therefore looks again at every decision stamped within
    ``overlap`` of the newest one sent and sends those it has not (``sent``, pruned as the
    window moves). A decision carries its tick's clock, read when the tick started, and
    commits when the tick ends: no later than the task's hard time limit, so the window is
    that limit and half a minute more (for clock skew between workers).
    """

    BATCH: ClassVar[int] = 200
    newest: datetime | None = None
    sent: dict[int, datetime] = field(default_factory=dict)

    def take(self) -> list[Any]:
        """The decisions not sent yet, oldest first (two queries; one when there are none)."""
        from scaling.models import Decision

        if self.newest is None:
            # First tick: start from now; older decisions come from the pages themselves.
            newest = Decision.objects.aggregate(newest=Max("at"))["newest"]
            self.newest = newest or timezone.now()
            self.sent = dict(self._window())
            return []
        fresh = sorted((at, pk) for pk, at in self._window() if pk not in self.sent)[: self.BATCH]
        if not fresh:
            return []
        found = (
            Decision.objects.filter(pk__in=[pk for _, pk in fresh])
            .select_related("workload", "workload__gpu_type")
            .prefetch_related("workload__variants")  # a mixed pool's card names its unit
        )
        new = sorted(found, key=lambda d: (d.at, d.pk))
        self.sent.update((d.pk, d.at) for d in new)
        self.newest = max(self.newest, new[-1].at)
        floor = self.newest - overlap()
        self.sent = {pk: at for pk, at in self.sent.items() if at >= floor}
        return new

    def _window(self) -> list[tuple[int, datetime]]:
        from scaling.models import Decision

        assert self.newest is not None
        since = Decision.objects.filter(at__gte=self.newest - overlap())
        return list(since.values_list("pk", "at"))


class Poller:
    def __init__(self) -> None:
        self.subs: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.workloads: dict[int, WorkloadLive] = {}
        self.fleet = FleetLive()
        self.usage: list[frames.TenantUsage] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self.feed = DecisionFeed()
        self.stale_clusters: list[str] = []
        self.layout_id = ""
        self.layout_changed = True
        self.now = 0.0
        self.reads = 0  # metrics reads so far (tests check there is one per cluster per tick)

    def subscribe(self, sub: Subscription) -> None:
        self.subs.add(sub)
        if self.task is None or self.task.done():
            self.ready = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self.run())

    def unsubscribe(self, sub: Subscription) -> None:
        self.subs.discard(sub)
        if not self.subs and self.task is not None:
            self.task.cancel()  # nobody watches: stop reading metrics
            self.task = None

    async def run(self) -> None:
        next_at = time.time()
        while self.subs:
            try:
                await self.tick(time.time())
            except Exception:
                # A bad tick (database hiccup) must not end the stream; try next second.
                logger.exception("dashboard poller tick failed")
            self.ready.set()
            next_at = max(next_at + tick_s(), time.time())
            await asyncio.sleep(next_at - time.time())

    async def tick(self, now: float) -> None:
        rows = await database_sync_to_async(load_rows)(self.feed)
        reads = await asyncio.gather(*(read_cluster(c, rows.workloads, now) for c in rows.clusters))
        self.reads += len(reads)
        self.now = now
        self.usage = rows.usage
        self.fleet.observe(reads, rows.workloads)
        self.fleet.forget({c.pk for c in rows.clusters})
        by_cluster = {read.cluster_id: read for read in reads}
        newly_stale = self.observe_workloads(rows.workloads, by_cluster, now)
        await self.publish(now, newly_stale, rows.decisions)

    def observe_workloads(
        self, refs: list[WorkloadRef], reads: dict[int, ClusterRead], now: float
    ) -> dict[int, list[str]]:
        known = {ref.id for ref in refs}
        for wid in set(self.workloads) - known:
            del self.workloads[wid]
        newly: dict[int, list[str]] = {}
        for ref in refs:
            live = self.workloads.setdefault(ref.id, WorkloadLive(ref))
            live.ref = ref  # the policy may have changed: the next delta carries it
            newly[ref.id] = live.observe(reads.get(ref.cluster_id), now, stale_after_s())
        return newly

    async def publish(
        self, now: float, newly_stale: dict[int, list[str]], decisions: list[dict[str, Any]]
    ) -> None:
        cells, stale_clusters = self.fleet.view(now, stale_after_s())
        current = frames.layout_id(frames.layout_of(cells))
        self.layout_changed, self.layout_id = current != self.layout_id, current
        fresh_stale = [name for name in stale_clusters if name not in self.stale_clusters]
        self.stale_clusters = stale_clusters
        by_group: dict[str, list[str]] = {}
        for sub in list(self.subs):
            if sub.group not in by_group:
                by_group[sub.group] = self.frames_for(
                    sub, now, cells, fresh_stale, newly_stale, decisions
                )
        await deliver(self.subs, by_group)
        self.recent.extend(decisions)

    def frames_for(
        self,
        sub: Subscription,
        now: float,
        cells: list[Any],
        fresh_stale: list[str],
        newly_stale: dict[int, list[str]],
        decisions: list[dict[str, Any]],
    ) -> list[str]:
        """This tick's frames for one audience, in order: decisions, stale, delta."""
        mine = [d for d in decisions if _concerns(sub, d)]
        texts = [frames.dumps("decision", now, decision=d) for d in mine]
        if sub.workload_id is not None:
            live = self.workloads.get(sub.workload_id)
            if live is None:
                return texts
            if newly_stale.get(sub.workload_id):
                texts.append(frames.dumps("stale", now, series=newly_stale[sub.workload_id]))
            return [*texts, frames.workload_delta(live)]
        if fresh_stale:
            texts.append(frames.dumps("stale", now, clusters=fresh_stale))
        stale, changed = self.stale_clusters, self.layout_changed
        body = frames.fleet_body(cells, sub.visible, self.usage, self.workloads, stale, changed)
        return [*texts, frames.dumps("delta", now, **body)]

    def snapshot(self, sub: Subscription) -> str:
        """The full current state for one new socket (history, recent decisions)."""
        recent = [d for d in self.recent if _concerns(sub, d)][-20:]
        if sub.workload_id is not None:
            live = self.workloads.get(sub.workload_id)
            body = live.snapshot() if live else {"workload": sub.workload_id, "history": []}
            return frames.dumps("snapshot", self.now, **body, decisions=recent)
        cells, stale = self.fleet.view(self.now, stale_after_s())
        body = frames.fleet_body(cells, sub.visible, self.usage, self.workloads, stale, True)
        return frames.dumps("snapshot", self.now, **body, decisions=recent)


def _concerns(sub: Subscription, decision: dict[str, Any]) -> bool:
    if sub.workload_id is not None:
        return bool(decision["workload"] == sub.workload_id)
    return sub.sees(decision["tenant_id"])


async def deliver(subs: Iterable[Subscription], by_group: dict[str, list[str]]) -> None:
    if layer_fanout():
        layer = get_channel_layer()
        assert layer is not None
        for group, texts in by_group.items():
            for text in texts:
                await layer.group_send(group, {"type": "dash.frame", "text": text})
        return
    for sub in list(subs):
        for text in by_group.get(sub.group, []):
            sub.offer(text)


async def read_cluster(cluster: Any, refs: list[WorkloadRef], now: float) -> ClusterRead:
    """One read of the cluster, off the event loop: every metric the dashboard draws, and
    the Deployments and pods that say whose samples they are (see ``read_cluster_now``)."""
    names = set(BASE_METRICS) | {
        r.policy.metric for r in refs if r.policy and r.cluster_id == cluster.pk
    }
    return await asyncio.to_thread(read_cluster_now, cluster, names, now)


def read_cluster_now(cluster: Any, names: set[str], now: float) -> ClusterRead:
    """The cluster's Deployments and pods (one list call each) and its samples of ``names``
    (one query per name).

    The pods are listed here, every tick, rather than taken from what the control loop last
    saw: a sample belongs to the workload whose Deployment's selector matches its pod *now*
    (``observe.pods_of``, as the loop matches them on its own tick), and the loop's view is
    up to ``CONTROL_LOOP_INTERVAL`` old, private to it, and absent for workloads with no
    active policy. docs/dashboard.md has the cost of the two list calls.
    """
    try:
        deployments = kubernetes.list_deployments(cluster)
        pods = observe.pods_by_namespace(kubernetes.list_pods(cluster))
        samples = read_samples(cluster, names, now)
    except (MetricsError, ClusterError) as exc:
        return ClusterRead(cluster.pk, cluster.name, None, _read_error(cluster, exc))
    return ClusterRead(cluster.pk, cluster.name, samples, "", deployments, dict(pods))


def _read_error(cluster: Any, exc: MetricsError | ClusterError) -> str:
    return exc.sentence(cluster.name) if isinstance(exc, ClusterError) else str(exc)


def load_rows(feed: DecisionFeed) -> TickRows:
    """Enabled clusters, workloads with their policies, quota usage and new decisions."""
    from clusters.models import Cluster
    from scaling.models import Workload

    clusters = list(Cluster.objects.filter(enabled=True))
    workloads = list(
        Workload.objects.filter(cluster__enabled=True)
        .select_related("policy", "gpu_type")
        .prefetch_related("variants__gpu_type")  # one query for every workload's GPU types
    )
    refs = [policies.workload_ref(w) for w in workloads]
    decisions = [frames.decision_dict(d) for d in feed.take()]
    return TickRows(clusters, refs, policies.usage(workloads), decisions)


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Poller] = weakref.WeakKeyDictionary()


def get_poller() -> Poller:
    """The poller of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    poller = _pollers.get(loop)
    if poller is None:
        poller = _pollers[loop] = Poller()
    return poller
