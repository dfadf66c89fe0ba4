"""REST API under load: p50/p99 latency and requests per second for a list page of 100, a
detail and an update of scaling policies, at 1,000 tenants and 10,000 policies.

The data goes into a throw-away test database; the API runs in a real uvicorn process (the
ASGI app, production settings, throttling off) on a free loopback port; a small thread-pool
load generator with keep-alive connections sends a bounded number of requests per scenario
(and stops at a time limit). Run it on PostgreSQL (DATABASE_URL) for the numbers that matter;
the target is list p99 <= 50 ms on 2 cores. Writes bench/results/api.json.
"""

import http.client
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

import django  # noqa: E402

django.setup()

from cryptography.fernet import Fernet  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from clusters.models import Cluster  # noqa: E402
from quotas.models import GpuType  # noqa: E402
from scaling.models import ScalingPolicy, Workload  # noqa: E402
from tenants.models import Membership, Tenant  # noqa: E402

TENANTS, POLICIES = 1_000, 10_000
# (name, concurrency, requests, time limit in seconds)
SCENARIOS = [
    ("list_100", 1, 300, 60),
    ("list_100", 4, 600, 60),
    ("list_100_member", 4, 600, 60),
    ("detail", 4, 1500, 60),
    ("update", 4, 1000, 60),
]


def populate() -> dict[str, Any]:
    gpu = GpuType.objects.create(name="A100-80GB", memory_gib=80, node_label="NVIDIA-A100")
    cluster = Cluster.objects.create(name="bench", api_url="http://127.0.0.1:9400/bench")
    orgs = Tenant.objects.bulk_create(
        [Tenant(slug=f"org-{i}", name=f"Org {i}") for i in range(TENANTS // 10)]
    )
    teams = Tenant.objects.bulk_create(
        [
            Tenant(slug=f"team-{i}", name=f"Team {i}", parent=orgs[i % len(orgs)])
            for i in range(TENANTS - len(orgs))
        ]
    )
    tenants = orgs + teams
    workloads = Workload.objects.bulk_create(
        [
            Workload(
                tenant=tenants[i % TENANTS],
                cluster=cluster,
                gpu_type=gpu,
                namespace=tenants[i % TENANTS].slug,
                deployment=f"model-{i}",
                model_name="meta-llama/Llama-3.1-8B-Instruct",
            )
            for i in range(POLICIES)
        ],
        batch_size=1000,
    )
    policies = ScalingPolicy.objects.bulk_create(
        [ScalingPolicy(workload=w, target=8) for w in workloads], batch_size=1000
    )
    staff = User.objects.create_user("bench-staff", is_staff=True)
    member = User.objects.create_user("bench-member")
    Membership.objects.create(user=member, tenant=orgs[0], role="operator")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would give a live database
    return {
        "staff_token": Token.objects.create(user=staff).key,
        "member_token": Token.objects.create(user=member).key,
        "policy_ids": [p.pk for p in policies],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """DATABASE_URL of the throw-away database, for the server process."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CREDENTIAL_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "API_THROTTLE_RATE": "off",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url(),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "controlplane.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("uvicorn did not start within 30 s")


def request_maker(scenario: str, data: dict[str, Any]) -> Callable[[random.Random], tuple]:
    ids = data["policy_ids"]
    staff = {"Authorization": f"Token {data['staff_token']}"}
    member = {"Authorization": f"Token {data['member_token']}"}

    def make(rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        if scenario == "list_100":
            return "GET", f"/api/v1/policies/?page_size=100&page={rng.randint(1, 100)}", staff, None
        if scenario == "list_100_member":
            return "GET", "/api/v1/policies/?page_size=100", member, None
        if scenario == "detail":
            return "GET", f"/api/v1/policies/{rng.choice(ids)}/", staff, None
        body = json.dumps({"target": round(rng.uniform(1, 100), 2)}).encode()
        headers = {**staff, "Content-Type": "application/json"}
        return "PATCH", f"/api/v1/policies/{rng.choice(ids)}/", headers, body

    return make


def run_scenario(
    port: int, make: Callable[..., tuple], concurrency: int, total: int, limit_s: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    remaining = [total]
    deadline = time.monotonic() + limit_s

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            method, path, headers, body = make(rng)
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status >= 300:
                    errors.append(response.status)
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "rps": round(len(latencies) / wall, 1),
    }


def main() -> None:
    if connection.vendor != "postgresql":
        # The server is another process: it cannot share SQLite's in-memory test database.
        print("api: skipped (set DATABASE_URL=postgres://... to run it)")
        return
    # Its own name: a test run on the same server must not drop this database midway.
    connection.settings_dict["TEST"]["NAME"] = "test_bench_api"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server = None
    try:
        started = time.perf_counter()
        data = populate()
        create_s = time.perf_counter() - started
        connection.close()  # the server process must see committed data, and SQLite its file
        port = free_port()
        server = start_server(port)
        results: dict[str, Any] = {
            "tenants": TENANTS,
            "policies": POLICIES,
            "database": connection.vendor,
            "cpus": os.cpu_count(),
            "create_s": round(create_s, 2),
            "scenarios": [],
        }
        for name, concurrency, total, limit_s in SCENARIOS:
            make = request_maker(name, data)
            run_scenario(port, make, concurrency, 20, 10)  # warm-up: connections, caches
            result = {"name": name, **run_scenario(port, make, concurrency, total, limit_s)}
            results["scenarios"].append(result)
            print(
                f"api [{connection.vendor}] {name} c={concurrency}: p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms, {result['rps']} req/s, "
                f"{result['requests']} requests, {result['errors']} errors"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        connection.creation.destroy_test_db(old_name, verbosity=0)
    out = ROOT / "bench" / "results" / "api.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    lists = [s for s in results["scenarios"] if s["name"] == "list_100"]
    print(
        f"api [{results['database']}]: list page of 100 p99 {lists[-1]['p99_ms']} ms at "
        f"c={lists[-1]['concurrency']} (target 50 ms); results in {out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
