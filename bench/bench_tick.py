"""One control-loop tick at fleet scale: 1,000 tenants and 10,000 policies.

The database holds 1,000 tenants with quotas and 10,000 workloads with policies in 10
clusters of 1,000 (a throw-away test database). A tick runs per cluster (workers tick clusters
in parallel), so the script ticks one of them against a simulated cluster serving its 1,000
Deployments (a simulator process: real Kubernetes list calls and exporter text over HTTP);
the quota allocation still spans the workloads of all clusters. Then 100 of those workloads
move to a cluster of their own, ticked the same way, to show that the query counts do not
grow with the fleet.

For each it reports the median of REPEATS steady ticks (after a first tick that writes the
first statuses and ResourceQuotas): wall time, split into the control plane's own CPU time
(this process: HTTP clients, parsing, engine, ORM; SQLite's work too, it runs in-process) and
the rest, time spent waiting on the cluster, the metrics source and a database server; the
simulator's CPU time during the tick (the cluster's side of that wait); DB queries and metric
reads.

``--code PATH`` runs the same measurement on another checkout (e.g. a worktree of main), for
ratios measured side by side on the same machine.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--code", type=Path, default=HERE, help="checkout to measure")
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--sizes", default="1000,100", help="workloads per ticked cluster")
ARGS = parser.parse_args()
ROOT = ARGS.code.resolve()
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # Celery puts the working directory first on sys.path when it loads
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from clusters.models import Cluster  # noqa: E402
from quotas.models import GpuType, Quota  # noqa: E402
from scaling.loop import tick_cluster  # noqa: E402
from scaling.models import ScalingPolicy, Workload  # noqa: E402
from tenants.models import Tenant  # noqa: E402

CLUSTERS, PER_CLUSTER, TENANTS = 10, 1_000, 1_000
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT = _free_port()


def fleet_config() -> dict[str, Any]:
    def workload(i: int) -> dict[str, Any]:
        return {
            "namespace": f"team-{i // 10 % 900}",
            "name": f"model-{i}",
            "model": MODEL,
            "gpu_type": "A100-80GB",
            "replicas": 1,
            "cold_start_s": 0.0,
            "load": {"kind": "constant", "rate_rps": 0.02, "seed": i},
        }

    return {
        "clusters": [
            {
                "name": "c0",
                "nodes": [
                    {"gpu_type": "A100-80GB", "count": PER_CLUSTER // 8 + 1, "gpus_per_node": 8}
                ],
                "workloads": [workload(i) for i in range(PER_CLUSTER)],
            }
        ]
    }


def start_simulator(config: dict[str, Any]) -> subprocess.Popen[bytes]:
    path = Path(tempfile.mkdtemp()) / "fleet.json"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "simulator", "--port", str(PORT), "--config", str(path)]
    process = subprocess.Popen(
        [*command, "--tick", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the simulator did not start") from None
            time.sleep(0.5)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def populate() -> list[Cluster]:
    gpu = GpuType.objects.create(
        name="A100-80GB", memory_gib=80, node_label="NVIDIA-A100-SXM4-80GB"
    )
    orgs = Tenant.objects.bulk_create(
        [Tenant(slug=f"org-{i}", name=f"Org {i}") for i in range(TENANTS - 900)]
    )
    teams = Tenant.objects.bulk_create(
        [Tenant(slug=f"team-{i}", name=f"Team {i}", parent=orgs[i % len(orgs)]) for i in range(900)]
    )
    Quota.objects.bulk_create([Quota(tenant=t, gpu_type=gpu, nominal=16) for t in teams])
    clusters = []
    for c in range(CLUSTERS):
        base = f"http://127.0.0.1:{PORT}/c{c}"  # only c0 is simulated, and ticked
        cluster = Cluster.objects.create(
            name=f"c{c}", api_url=base, metrics_source="exporter", metrics_url=f"{base}/metrics"
        )
        workloads = Workload.objects.bulk_create(
            [
                Workload(
                    tenant=teams[i // 10 % 900],
                    cluster=cluster,
                    namespace=f"team-{i // 10 % 900}",
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
                    min_replicas=1,
                    max_replicas=4,
                    mode="enforce",
                    algorithm=("hpa", "kpa", "apa", "predictive")[w.pk % 4],
                )
                for w in workloads
            ]
        )
        clusters.append(cluster)
    return clusters


def measure(cluster: Cluster, simulator: int) -> dict[str, Any]:
    started = time.perf_counter()
    tick_cluster(cluster.pk)  # first observations, decisions and ResourceQuotas
    first = time.perf_counter() - started
    walls, cpus, sims, queries, metric_queries = [], [], [], [], 0
    for _ in range(ARGS.repeats):
        sim_before = cpu_seconds(simulator)
        with CaptureQueriesContext(connection) as captured:
            started, cpu = time.perf_counter(), time.process_time()
            report = tick_cluster(cluster.pk)
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - started)
        sim_after = cpu_seconds(simulator)
        if sim_before is not None and sim_after is not None:
            sims.append(sim_after - sim_before)
        assert report is not None and not report.error, report
        queries.append(len(captured))
        metric_queries = report.metric_queries
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "workloads": Workload.objects.filter(cluster=cluster).count(),
        "median_s": round(wall, 3),
        "control_plane_cpu_s": round(cpu, 3),
        "waiting_s": round(statistics.median(w - c for w, c in zip(walls, cpus, strict=True)), 3),
        "simulator_cpu_s": round(statistics.median(sims), 3) if sims else None,
        "ticks_s": [round(w, 3) for w in walls],
        # Steady reads are the same every tick; writes (new Decisions, changed quota usage, in
        # transactions) come only with changes, so the count varies a little between ticks.
        "db_queries": max(queries),
        "db_queries_min": min(queries),
        "first_tick_s": round(first, 3),
        "metric_queries": metric_queries,
    }


def main() -> None:
    sizes = sorted((int(s) for s in ARGS.sizes.split(",")), reverse=True)
    begun = time.perf_counter()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    simulator = start_simulator(fleet_config())
    results: list[dict[str, Any]] = []
    try:
        clusters = populate()
        for size in sizes:
            cluster = clusters[0]
            if size < PER_CLUSTER:
                # The same simulated cluster with only ``size`` of its Deployments registered.
                cluster = Cluster.objects.create(
                    name=f"first-{size}",
                    api_url=clusters[0].api_url,
                    metrics_source="exporter",
                    metrics_url=clusters[0].metrics_url,
                )
                keep = Workload.objects.filter(cluster=clusters[0]).order_by("pk")[:size]
                Workload.objects.filter(pk__in=[w.pk for w in keep]).update(cluster=cluster)
            results.append(measure(cluster, simulator.pid))
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
        connection.creation.destroy_test_db(old_name, verbosity=0)
    summary = {
        "code": str(ROOT),
        "tenants": TENANTS,
        "policies": CLUSTERS * PER_CLUSTER,
        "clusters": CLUSTERS,
        "database": connection.vendor,
        "repeats": ARGS.repeats,
        "bench_s": round(time.perf_counter() - begun, 1),
        "ticks": results,
    }
    out = HERE / "bench" / "results" / f"tick-{connection.vendor}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(
        f"tick [{connection.vendor}, {ROOT}]: {TENANTS} tenants, {CLUSTERS * PER_CLUSTER} "
        f"policies in {CLUSTERS} clusters; bench took {summary['bench_s']} s"
    )
    for r in results:
        print(
            f"  cluster of {r['workloads']} workloads: {r['median_s']} s median "
            f"(control-plane CPU {r['control_plane_cpu_s']} s, waiting {r['waiting_s']} s; "
            f"simulator CPU {r['simulator_cpu_s']} s), {r['db_queries_min']}-{r['db_queries']} "
            "DB queries, "
            f"{r['metric_queries']} metric reads; first tick {r['first_tick_s']} s"
        )


if __name__ == "__main__":
    main()
