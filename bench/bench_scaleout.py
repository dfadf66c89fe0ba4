"""Scale-out of the control loop: ticks per minute with 1 and with 2 Celery workers.

4 simulated clusters of 1,000 workloads each (one simulator process serving all four: real
Kubernetes list calls and exporter text over HTTP), PostgreSQL and Redis (both required: the
claim is about workers on a shared database and broker). For each worker count the script
starts that many real workers (`celery -A controlplane worker --pool solo`, so a worker is one
process whose CPU can be read; a queue of their own) and keeps a round of ticks (one task per
cluster) waiting in the queue for a warm-up and then WINDOW_S. It counts the ticks completed
in the window from ControlLoopState, and the tick tasks that found their cluster's lease held
and returned at once (the lease shards clusters across workers: a cluster is never ticked by
two at a time; tests/scaling/test_loop.py::test_one_writer_per_cluster).

With 2 cores shared by the workers, the simulator, PostgreSQL and Redis, the ratio cannot reach
2: the script reports the CPU each used, so the ceiling is visible.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
os.chdir(HERE)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
if not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")):
    print("bench_scaleout skipped: it measures workers on DATABASE_URL (PostgreSQL) and REDIS_URL")
    sys.exit(0)

import django  # noqa: E402
import redis  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from bench.servers import free_port, wait_http  # noqa: E402
from clusters.models import Cluster  # noqa: E402
from controlplane.celery import app  # noqa: E402
from quotas.models import GpuType, Quota  # noqa: E402
from scaling.models import ControlLoopState, ScalingPolicy, Workload  # noqa: E402
from tenants.models import Tenant  # noqa: E402

CLUSTERS, PER_CLUSTER, TEAMS = 4, 1_000, 400
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
QUEUE = f"bench-scaleout-{os.getpid()}"
FEED_S, WARMUP_S, WINDOW_S = 0.1, 20.0, 60.0
PORT = free_port()


def fleet_config() -> dict[str, Any]:
    def workload(i: int) -> dict[str, Any]:
        return {
            "namespace": f"team-{i % TEAMS}",
            "name": f"model-{i}",
            "model": MODEL,
            "gpu_type": "A100-80GB",
            "replicas": 1,
            "cold_start_s": 0.0,
            "load": {"kind": "constant", "rate_rps": 0.02, "seed": i},
        }

    nodes = [{"gpu_type": "A100-80GB", "count": PER_CLUSTER // 8 + 1, "gpus_per_node": 8}]
    return {
        "clusters": [
            {
                "name": f"c{c}",
                "nodes": nodes,
                "workloads": [workload(i) for i in range(c * PER_CLUSTER, (c + 1) * PER_CLUSTER)],
            }
            for c in range(CLUSTERS)
        ]
    }


def populate() -> list[Cluster]:
    gpu = GpuType.objects.create(name="A100-80GB", memory_gib=80, node_label="NVIDIA-A100")
    org = Tenant.objects.create(slug="org", name="Org")
    teams = Tenant.objects.bulk_create(
        [Tenant(slug=f"team-{i}", name=f"Team {i}", parent=org) for i in range(TEAMS)]
    )
    Quota.objects.bulk_create([Quota(tenant=t, gpu_type=gpu, nominal=64) for t in teams])
    clusters = []
    for c in range(CLUSTERS):
        base = f"http://127.0.0.1:{PORT}/c{c}"
        cluster = Cluster.objects.create(
            name=f"c{c}", api_url=base, metrics_source="exporter", metrics_url=f"{base}/metrics"
        )
        workloads = Workload.objects.bulk_create(
            [
                Workload(
                    tenant=teams[i % TEAMS],
                    cluster=cluster,
                    namespace=f"team-{i % TEAMS}",
                    deployment=f"model-{i}",
                    model_name=MODEL,
                    gpu_type=gpu,
                )
                for i in range(c * PER_CLUSTER, (c + 1) * PER_CLUSTER)
            ]
        )
        ScalingPolicy.objects.bulk_create(
            [
                ScalingPolicy(
                    workload=w,
                    target=8,
                    max_replicas=4,
                    mode="enforce",
                    algorithm=("hpa", "kpa", "apa", "predictive")[w.pk % 4],
                )
                for w in workloads
            ]
        )
        clusters.append(cluster)
    return clusters


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_env() -> dict[str, str]:
    """The workers' environment: this process's test database, not the configured one."""
    url = urlsplit(os.environ["DATABASE_URL"])
    name = connection.settings_dict["NAME"]
    return os.environ | {"DATABASE_URL": urlunsplit(url._replace(path=f"/{name}"))}


def start_workers(count: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    workers = []
    for n in range(count):
        command = [
            sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--pool", "solo",
            "-Q", QUEUE, "-n", f"scaleout{n}@%h", "--without-gossip", "--without-mingle",
            "--loglevel", "INFO",
        ]  # fmt: skip
        log = (log_dir / f"worker-{count}-{n}.log").open("wb")
        workers.append(
            subprocess.Popen(command, env=worker_env(), stdout=log, stderr=subprocess.STDOUT)
        )
    return workers


def feed(clusters: list[Cluster], seconds: float) -> None:
    """Keep one round of ticks (a task per cluster) waiting in the queue: workers never idle
    for want of work, and every cluster gets its turn (tasks taken in order)."""
    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if int(broker.llen(QUEUE)) < len(clusters):  # type: ignore[arg-type]  # sync client
            for cluster in clusters:
                app.send_task("scaling.tasks.tick", (cluster.pk,), queue=QUEUE)
        time.sleep(FEED_S)


def run(clusters: list[Cluster], count: int, log_dir: Path, simulator: int) -> dict[str, Any]:
    ControlLoopState.objects.update(lease_owner="", lease_until=None)
    workers = start_workers(count, log_dir)
    try:
        feed(clusters, WARMUP_S)
        before = dict(ControlLoopState.objects.values_list("cluster_id", "ticks"))
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in workers}
        sim_before = cpu_seconds(simulator)
        started = time.monotonic()
        feed(clusters, WINDOW_S)
        elapsed = time.monotonic() - started
        after = dict(ControlLoopState.objects.values_list("cluster_id", "ticks"))
        worker_cpu = sum(cpu_seconds(p.pid) - cpu_before[p.pid] for p in workers)
        sim_cpu = cpu_seconds(simulator) - sim_before
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
    ticks = {c.name: after.get(c.pk, 0) - before.get(c.pk, 0) for c in clusters}
    skipped = sum(
        (log_dir / f"worker-{count}-{n}.log").read_text().count("previous tick still running")
        for n in range(count)
    )
    return {
        "workers": count,
        "ticks_per_minute": round(sum(ticks.values()) * 60 / elapsed, 1),
        "ticks_by_cluster": ticks,
        "skipped_held_lease": skipped,
        "worker_cpu_share": round(worker_cpu / elapsed, 2),
        "simulator_cpu_share": round(sim_cpu / elapsed, 2),
    }


def main() -> None:
    begun = time.perf_counter()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    path = Path(tempfile.mkdtemp()) / "fleet.json"
    path.write_text(json.dumps(fleet_config()))
    command = [sys.executable, "-m", "simulator", "--port", str(PORT), "--config", str(path)]
    simulator = subprocess.Popen(
        [*command, "--tick", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log_dir = Path(tempfile.mkdtemp(prefix="scaleout-"))
    try:
        wait_http(f"http://127.0.0.1:{PORT}/healthz", simulator, seconds=300)
        clusters = populate()
        results = [run(clusters, count, log_dir, simulator.pid) for count in (1, 2)]
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(QUEUE)  # type: ignore[attr-defined]  # kombu has it; celery-types do not
        connection.creation.destroy_test_db(old_name, verbosity=0)
    one, two = results
    summary = {
        "clusters": CLUSTERS,
        "workloads": CLUSTERS * PER_CLUSTER,
        "cores": os.cpu_count(),
        "window_s": WINDOW_S,
        "runs": results,
        "ratio": round(two["ticks_per_minute"] / one["ticks_per_minute"], 2),
        "bench_s": round(time.perf_counter() - begun, 1),
    }
    out = HERE / "bench" / "results" / "scaleout.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"scale-out: {CLUSTERS} clusters x {PER_CLUSTER} workloads, {os.cpu_count()} cores")
    for r in results:
        print(
            f"  {r['workers']} worker(s): {r['ticks_per_minute']} ticks/min "
            f"{r['ticks_by_cluster']}, {r['skipped_held_lease']} skipped on a held lease; "
            f"CPU: workers {r['worker_cpu_share']} cores, simulator {r['simulator_cpu_share']}"
        )
    print(f"  ratio 2/1: {summary['ratio']}; bench took {summary['bench_s']} s")


if __name__ == "__main__":
    main()
