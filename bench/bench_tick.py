"""One control-loop tick at fleet scale: 1,000 tenants and 10,000 policies.

The database holds 1,000 tenants with quotas and 10,000 workloads with policies in 10
clusters of 1,000 (a throw-away test database). A tick runs per cluster (workers tick clusters
in parallel), so the script ticks one of them against a simulated cluster serving its 1,000
Deployments (a simulator process: real Kubernetes list calls and exporter text over HTTP);
the quota allocation still spans the workloads of all clusters. It reports the median wall
time, database queries and metric reads of that tick, and the same for a cluster of 100
workloads in the same database, to show the query counts do not grow with the fleet.
"""

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
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

CLUSTERS, PER_CLUSTER, TENANTS, REPEATS = 10, 1_000, 1_000, 3
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
                "name": f"c{c}",
                "nodes": [
                    {"gpu_type": "A100-80GB", "count": PER_CLUSTER // 8 + 1, "gpus_per_node": 8}
                ],
                "workloads": [workload(i) for i in range(PER_CLUSTER)],
            }
            for c in range(1)
        ]
    }


def start_simulator(config: dict[str, Any]) -> subprocess.Popen[bytes]:
    path = Path(tempfile.mkdtemp()) / "fleet.json"
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(PORT),
            "--config",
            str(path),
            "--tick",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        base = f"http://127.0.0.1:{PORT}/c{c}"
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


def measure(cluster: Cluster) -> dict[str, float]:
    started = time.perf_counter()
    tick_cluster(cluster.pk)  # first observations, decisions and ResourceQuotas
    first = time.perf_counter() - started
    times, queries, metric_queries = [], [], 0
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            report = tick_cluster(cluster.pk)
            times.append(time.perf_counter() - started)
        assert report is not None and not report.error, report
        queries.append(len(captured))
        metric_queries = report.metric_queries
    return {
        "workloads": Workload.objects.filter(cluster=cluster).count(),
        "median_s": round(statistics.median(times), 3),
        "db_queries": max(queries),
        "first_tick_s": round(first, 3),
        "metric_queries": metric_queries,
    }


def main() -> None:
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    simulator = start_simulator(fleet_config())
    try:
        clusters = populate()
        tick = measure(clusters[0])
        # The same simulated cluster with only 100 of its Deployments registered.
        small = Cluster.objects.create(
            name="small",
            api_url=clusters[0].api_url,
            metrics_source="exporter",
            metrics_url=clusters[0].metrics_url,
        )
        keep = Workload.objects.filter(cluster=clusters[0]).order_by("pk")[:100]
        Workload.objects.filter(pk__in=[w.pk for w in keep]).update(cluster=small)
        baseline = measure(small)
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
        connection.creation.destroy_test_db(old_name, verbosity=0)
    results = {
        "tenants": TENANTS,
        "policies": CLUSTERS * PER_CLUSTER,
        "clusters": CLUSTERS,
        "database": connection.vendor,
        "cluster_tick": tick,
        "at_100_workloads": baseline,
    }
    out = ROOT / "bench" / "results" / "tick.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(
        f"tick [{connection.vendor}]: {TENANTS} tenants, {CLUSTERS * PER_CLUSTER} policies in "
        f"{CLUSTERS} clusters; one cluster tick of {tick['workloads']} workloads: "
        f"{tick['median_s']} s median, {tick['db_queries']} DB queries, "
        f"{tick['metric_queries']} metric reads; at {baseline['workloads']} workloads: "
        f"{baseline['median_s']} s, {baseline['db_queries']} DB queries, "
        f"{baseline['metric_queries']} metric reads"
    )


if __name__ == "__main__":
    main()
