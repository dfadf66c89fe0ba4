"""kill -9 of a real Celery worker in the middle of applying, KILLS times in a row.

A real ``celery -A controlplane worker`` (prefork, one pool process) consumes the real
``scaling.tasks.tick`` task from the real broker (the filesystem broker locally, Redis when
REDIS_URL is set) on a queue of its own, against the same database as the test: on PostgreSQL
the test database itself, on SQLite a file (a second connection alias here; an in-memory
database cannot be shared with another process).

Each round: two Deployments are scaled down by hand (as ``kubectl edit`` would), the
simulator holds every ``PUT .../scale`` for SLOW_S, a tick is sent, and as soon as the
simulator has received the loop's scale write the process running the tick is killed with
SIGKILL: the pool process, or every 10th round the whole worker (main process and pool,
then started again). Then ticks are sent until both Deployments are back at their targets:
at most two completed ticks may pass. Over the whole campaign the simulator's history of
replica changes must never show a Deployment above its policy's maximum or its tenant's
quota, and no scale change may be recorded twice in the Decision log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.db.utils import load_backend
from django.utils import timezone

from quotas.models import GpuType, Quota
from scaling.models import ControlLoopState, Decision
from scaling.tasks import tick
from tenants.models import Tenant
from tests.faults.cluster import (
    deployment,
    fleet,
    history,
    loop_writes,
    register,
    scale_by_hand,
    set_faults,
    spec_replicas,
    wait_for_pods,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ALIAS = "campaign"
KILLS = int(os.environ.get("FAULTS_KILLS", "50"))
WHOLE_WORKER_EVERY = 10
SLOW_S = 0.3
# chat: its policy allows 4 but team-a's quota is 3 GPUs; embed: its policy's maximum is 2.
TARGETS = {("team-a", "chat"): 3, ("team-b", "embed"): 2}
LIMITS = {("team-a", "chat"): 3, ("team-b", "embed"): 2}
WANTS_MAX: dict[str, Any] = {"aggregation": "total", "target": 1, "scale_up_period_s": 1}


@pytest.fixture
def campaign_db(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    """A connection alias on the database the worker uses too, and its DATABASE_URL."""
    default = dict(connection.settings_dict)
    if default["ENGINE"].endswith("sqlite3"):
        path = tmp_path / "campaign.sqlite3"
        config = {
            "ENGINE": default["ENGINE"],
            "NAME": str(path),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
        url = f"sqlite:///{path}"
    else:  # the test database itself: committed rows are visible to the worker
        config = default
        url = "postgres://{USER}:{PASSWORD}@{HOST}:{PORT}/{NAME}".format(**default)
    # A connection of its own, not a configured alias: the test case only lets declared
    # aliases connect, and "dynamically created connections are always allowed".
    configured = connections.configure_settings({"default": default, ALIAS: config})[ALIAS]
    wrapper = load_backend(config["ENGINE"]).DatabaseWrapper(configured, ALIAS)
    connections[ALIAS] = wrapper
    if config is not default:
        call_command("migrate", database=ALIAS, verbosity=0)
    try:
        yield url
    finally:
        wrapper.close()
        del connections[ALIAS]


class Worker:
    """A real Celery worker process group consuming ``queue``."""

    def __init__(self, database_url: str, queue: str, log: Path) -> None:
        self.env = os.environ | {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "tests.faults.worker_settings",
            "LOG_LEVEL": "WARNING",
        }
        self.queue, self.log = queue, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        celery = str(Path(sys.executable).parent / "celery")
        command = [
            *(celery, "-A", "controlplane", "worker", "--pool", "prefork", "--concurrency", "1"),
            *("-Q", self.queue, "-n", f"{self.queue}-{self.starts}@%h"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            *("--time-limit", "60", "--soft-time-limit", "50", "--loglevel", "WARNING"),
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def pool_pids(self) -> list[int]:
        assert self.process is not None
        # Any of the main process's threads may have forked the pool process.
        tasks = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        return sorted({int(pid) for task in tasks for pid in task.read_text().split()})

    def kill_pool_process(self) -> None:
        pids = self.pool_pids()
        assert len(pids) == 1, f"expected one pool process, found {pids}"
        os.kill(pids[0], signal.SIGKILL)

    def kill_all(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill_all()


@pytest.fixture
def worker(campaign_db: str, tmp_path: Path) -> Iterator[Worker]:
    from controlplane.celery import app

    queue = f"faults-{uuid.uuid4().hex[:8]}"
    if not settings.REDIS_URL:  # the filesystem broker's folders, shared with the worker
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key]).mkdir(parents=True, exist_ok=True)
    running = Worker(campaign_db, queue, tmp_path / "worker.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()
        with app.connection_for_write() as conn:  # leave no queue behind on a shared broker
            conn.default_channel.queue_delete(queue)  # type: ignore[attr-defined]


def completed_ticks(cluster_id: int) -> int:
    state = ControlLoopState.objects.using(ALIAS).filter(cluster_id=cluster_id).first()
    return 0 if state is None else state.ticks


def run_tick(worker: Worker, cluster_id: int, timeout: float = 30.0) -> None:
    """Send one tick to the worker and wait until a tick has completed."""
    before = completed_ticks(cluster_id)
    tick.apply_async((cluster_id,), queue=worker.queue)
    deadline = time.monotonic() + timeout
    while completed_ticks(cluster_id) == before:
        assert time.monotonic() < deadline, f"no tick completed; see {worker.log}"
        time.sleep(0.02)


def wait_for_scale_write(url: str, since: int, timeout: float = 20.0) -> None:
    """Until the simulator has received a PUT of a /scale it has not answered yet."""
    deadline = time.monotonic() + timeout
    while True:
        requests = history(url, since)["requests"]
        if any(
            r["method"] == "PUT" and r["path"].endswith("/scale") and r["status"] is None
            for r in requests
        ):
            return
        assert time.monotonic() < deadline, "the loop never started a scale write"
        time.sleep(0.005)


def wait_out_lease(cluster_id: int) -> None:
    """The killed tick's lease holds the cluster until it expires: wait that out."""
    state = ControlLoopState.objects.using(ALIAS).get(cluster_id=cluster_id)
    if state.lease_until is not None:
        remaining = (state.lease_until - timezone.now()).total_seconds()
        time.sleep(max(0.0, remaining) + 0.02)


def converged(url: str) -> bool:
    return all(spec_replicas(url, ns, name) == n for (ns, name), n in TARGETS.items())


def test_kill_9_in_the_middle_of_applying_loses_nothing_and_exceeds_nothing(
    start_simulator, worker, campaign_db
):
    started = time.monotonic()
    url = start_simulator(
        fleet(deployment("team-a", "chat"), deployment("team-b", "embed")), speed=4.0
    )
    gpu = GpuType.objects.using(ALIAS).create(
        name="A100-80GB",
        memory_gib=80,
        relative_throughput=1.0,
        hourly_cost="2.20",
        node_label="NVIDIA-A100-SXM4-80GB",
    )
    org = Tenant.objects.using(ALIAS).create(slug="acme", name="Acme")
    team_a = Tenant.objects.using(ALIAS).create(slug="team-a", name="Team A", parent=org)
    team_b = Tenant.objects.using(ALIAS).create(slug="team-b", name="Team B", parent=org)
    Quota.objects.using(ALIAS).create(tenant=team_a, gpu_type=gpu, nominal=3, borrowing_limit=0)
    Quota.objects.using(ALIAS).create(tenant=team_b, gpu_type=gpu, nominal=8, borrowing_limit=0)
    chat = register(url, team_a, "chat", gpu, using=ALIAS, **WANTS_MAX)
    register(url, team_b, "embed", gpu, using=ALIAS, max_replicas=2, **WANTS_MAX)
    cluster_id = chat.cluster_id
    wait_for_pods(url, "chat")
    wait_for_pods(url, "embed")
    run_tick(worker, cluster_id, timeout=60)  # the worker is up and the fleet converges
    assert converged(url)

    rounds: list[tuple[int, int, Any]] = []  # (ticks to converge, seq, time) per round
    for round_no in range(KILLS):
        for ns, name in TARGETS:
            scale_by_hand(url, ns, name, 1)
        knocked = timezone.now()
        set_faults(
            url, match_methods=["PUT"], match_path="/scale", hang_rate=1.0, hang_seconds=SLOW_S
        )
        mark = history(url)["last"]
        tick.apply_async((cluster_id,), queue=worker.queue)
        wait_for_scale_write(url, mark)
        if (round_no + 1) % WHOLE_WORKER_EVERY == 0:
            worker.kill_all()
            worker.start()
        else:
            worker.kill_pool_process()
        set_faults(url, hang_rate=0.0)
        wait_out_lease(cluster_id)
        ticks = 0
        while not converged(url):
            assert ticks < 2, f"round {round_no}: not converged after two ticks"
            run_tick(worker, cluster_id)
            ticks += 1
        rounds.append((ticks, mark, knocked))

    # No Deployment ever went above its policy's maximum or its tenant's quota.
    record = history(url)
    assert record["dropped"]["scales"] == 0
    exceeded = [
        e
        for e in record["scales"]
        if e["to"] is not None and e["to"] > LIMITS[(e["namespace"], e["name"])]
    ]
    # No scale change recorded twice: at most one applied Decision per Deployment per round.
    starts = [knocked for _, _, knocked in rounds] + [timezone.now()]
    applied = Decision.objects.using(ALIAS).filter(outcome="applied", at__gte=starts[0])
    duplicates = 0
    for begin, end in pairwise(starts):
        for workload_id in {d.workload_id for d in applied}:
            n = applied.filter(workload_id=workload_id, at__gte=begin, at__lt=end).count()
            duplicates += max(0, n - 1)
    writes = loop_writes([e for e in record["scales"] if e["seq"] > rounds[0][1]])
    report = {
        "kills": KILLS,
        "whole_worker_kills": KILLS // WHOLE_WORKER_EVERY,
        "ticks_to_converge": {n: sum(1 for t, _, _ in rounds if t == n) for n in (0, 1, 2)},
        "loop_scale_writes": len(writes),
        "applied_decisions": applied.count(),
        "duplicates": duplicates,
        "limits_exceeded": len(exceeded),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"\nkill campaign: {report}")
    assert exceeded == []
    assert duplicates == 0
    # Every applied Decision is a write the cluster saw (a kill may lose the record of one, as
    # it landed after the process died, but never invent one).
    assert applied.count() <= len(writes)
