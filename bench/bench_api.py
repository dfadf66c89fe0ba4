"""REST API under load: p50/p99 latency and requests per second for a list page of 100, a
detail and an update of scaling policies, at 1,000 tenants and 10,000 policies.

The data goes into a throw-away test database; the API runs in a real uvicorn process (the
ASGI app, production settings, throttling off) on a free loopback port; a small thread-pool
load generator with keep-alive connections sends a bounded number of requests per scenario
(and stops at a time limit). Run it on PostgreSQL (DATABASE_URL) for the numbers that matter;
the target is list p99 <= 50 ms on 2 cores. Writes bench/results/api.json.

    python bench/bench_api.py [--compare DIR] [--rounds N] [--only list_100,detail]
                              [--workers N]

``--compare DIR`` serves the same database from another copy of the code as well (for
example ``git archive <commit> | tar -x -C DIR``), and runs each scenario on both servers in
alternating rounds, so both see the same machine load; it prints both and the ratio. Server
CPU per request is read from /proc (Linux).
"""

import argparse
import http.client
import json
import os
import random
import secrets
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

from bench.fleet import create_fleet  # noqa: E402
from bench.servers import free_port, wait_http  # noqa: E402
from tenants.models import Membership  # noqa: E402

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
    tenants, policies = create_fleet(TENANTS, POLICIES)
    staff = User.objects.create_user("bench-staff", is_staff=True)
    member = User.objects.create_user("bench-member")
    Membership.objects.create(user=member, tenant=tenants[0], role="operator")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would give a live database
    return {
        "staff_token": Token.objects.create(user=staff).key,
        "member_token": Token.objects.create(user=member).key,
        "policy_ids": [p.pk for p in policies],
    }


def database_url() -> str:
    """DATABASE_URL of the throw-away database, for the server process."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_server(port: int, code: Path, workers: int) -> subprocess.Popen[bytes]:
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
        "PYTHONPATH": str(code),
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
        "--workers",
        str(workers),
    ]
    server = subprocess.Popen(command, cwd=code, env=env)
    wait_http(f"http://127.0.0.1:{port}/healthz", server)
    return server


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
) -> tuple[list[float], int, float]:
    """(latencies in seconds, error count, wall seconds) of one bounded run."""
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
    return latencies, len(errors), time.perf_counter() - started


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a server and its worker processes, or None off Linux."""
    total = 0.0
    try:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            if stat.parent.name == str(pid) or fields[1] == str(pid):
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
    return total or None


def summary(latencies: list[float], errors: int, wall: float, cpu: float | None) -> dict:
    latencies = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000, 2),
        "rps": round(len(latencies) / wall, 1),
        "server_cpu_ms": None if cpu is None else round(cpu / len(latencies) * 1000, 2),
    }


def measure(
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]],
    make: Callable[..., tuple],
    concurrency: int,
    total: int,
    limit_s: float,
    rounds: int,
) -> dict[str, dict]:
    """Each server in turn, ``rounds`` times, ``total / rounds`` requests a turn."""
    runs: dict[str, list] = {name: [[], 0, 0.0, 0.0] for name in servers}
    for port, _ in servers.values():
        run_scenario(port, make, concurrency, 20, 10)  # warm-up: connections, caches
    for _ in range(rounds):
        for name, (port, server) in servers.items():
            before = cpu_seconds(server.pid)
            latencies, errors, wall = run_scenario(
                port, make, concurrency, total // rounds, limit_s / rounds
            )
            after = cpu_seconds(server.pid)
            run = runs[name]
            run[0] += latencies
            run[1] += errors
            run[2] += wall
            run[3] = None if before is None or after is None else run[3] + after - before
    return {name: summary(*run) for name, run in runs.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, help="another copy of the code, run as 'before'")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 1, 3 to compare)")
    parser.add_argument("--only", default="", help="scenario names, comma-separated")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if connection.vendor != "postgresql":
        # The server is another process: it cannot share SQLite's in-memory test database.
        print("api: skipped (set DATABASE_URL=postgres://... to run it)")
        return
    codes = {"after": ROOT}
    if args.compare is not None:
        codes = {"before": args.compare.resolve(), "after": ROOT}
    rounds = args.rounds or (3 if args.compare else 1)
    only = {name for name in args.only.split(",") if name}
    # Its own name: a test run on the same server must not drop this database midway.
    connection.settings_dict["TEST"]["NAME"] = "test_bench_api"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        started = time.perf_counter()
        data = populate()
        create_s = time.perf_counter() - started
        connection.close()  # the server process must see committed data, and SQLite its file
        for name, code in codes.items():
            port = free_port()
            servers[name] = (port, start_server(port, code, args.workers))
        results: dict[str, Any] = {
            "tenants": TENANTS,
            "policies": POLICIES,
            "database": connection.vendor,
            "cpus": os.cpu_count(),
            "workers": args.workers,
            "rounds": rounds,
            "code": {name: str(code) for name, code in codes.items()},
            "create_s": round(create_s, 2),
            "scenarios": [],
        }
        for name, concurrency, total, limit_s in SCENARIOS:
            if only and name not in only:
                continue
            make = request_maker(name, data)
            measured = measure(servers, make, concurrency, total, limit_s, rounds)
            results["scenarios"].append({"name": name, "concurrency": concurrency, **measured})
            for variant, result in measured.items():
                print(
                    f"api [{connection.vendor}] {name} c={concurrency} {variant}: "
                    f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                    f"{result['rps']} req/s, server CPU {result['server_cpu_ms']} ms/req, "
                    f"{result['requests']} requests, {result['errors']} errors"
                )
            if "before" in measured:
                before, after = measured["before"], measured["after"]
                print(
                    f"api {name} c={concurrency} after/before: "
                    f"p50 x{after['p50_ms'] / before['p50_ms']:.2f}, "
                    f"p99 x{after['p99_ms'] / before['p99_ms']:.2f}, "
                    f"req/s x{after['rps'] / before['rps']:.2f}"
                )
    finally:
        for _, server in servers.values():
            server.terminate()
            server.wait(timeout=10)
        connection.creation.destroy_test_db(old_name, verbosity=0)
    out = ROOT / "bench" / "results" / "api.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for scenario in results["scenarios"]:
        if scenario["name"] == "list_100":
            print(
                f"api [{results['database']}]: list page of 100 p99 "
                f"{scenario['after']['p99_ms']} ms at c={scenario['concurrency']} "
                f"(target 50 ms)"
            )
    print(f"api: results in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
