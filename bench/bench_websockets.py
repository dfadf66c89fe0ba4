"""Live-stream fan-out: 100, 500 and 1,000 concurrent dashboards on one ASGI server.

Run: ``.venv/bin/python bench/bench_websockets.py [--sizes 100,500,1000] [--seconds 15]
[--fanout local,layer]`` (writes bench/results/websockets.json, prints one summary line per
run).

1. A simulator subprocess serves one cluster of 8 nodes x 8 GPUs (64 GPU series) with a few
   workloads. A throw-away SQLite database under a temporary VAR_DIR gets the cluster and a
   staff user; every client uses that user's session cookie.
2. For each fan-out mode and client count: a fresh uvicorn subprocess with the Redis channel
   layer (REDIS_URL, default redis://127.0.0.1:6379/0) and DASHBOARD_FANOUT set; the clients
   connect to /ws/fleet/ (each 1 Hz delta carries the 64 GPU cells), then for ``--seconds``
   every delta's delay is taken: client receive time minus the frame's ``sent_at`` (when the
   poller published it, before fan-out, so queueing in the server counts). Server CPU is
   read from /proc/<pid>/stat over the same window (percent of one core).
3. Loopback only; every phase has a deadline. The clients run in this process (one event
   loop), sharing the machine's cores with the server, as a browser fleet would not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import re
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parents[1]
SERVER_ARGS = ""
RESULTS = ROOT / "bench" / "results" / "websockets.json"
PYTHON = sys.executable
BIN = Path(sys.executable).parent
SENT_AT = re.compile(rb'\{"type":"(\w+)".{0,40}?"sent_at":([0-9.]+)')
FLEET = {
    "clusters": [
        {
            "name": "bench",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 8, "gpus_per_node": 8, "name_prefix": "a100"}
            ],
            "namespaces": ["team-a"],
            "workloads": [
                {
                    "namespace": "team-a",
                    "name": f"chat-{i}",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_type": "A100-80GB",
                    "replicas": 4,
                    "cold_start_s": 1.0,
                    "load": {"kind": "constant", "rate_rps": 2.0},
                }
                for i in range(4)
            ],
        }
    ]
}
SETUP = """
import django, sys
django.setup()
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from clusters.models import Cluster
Cluster.objects.create(name="bench", api_url=sys.argv[1], metrics_source="exporter",
                       metrics_url=sys.argv[1] + "/metrics")
user = User.objects.create_user("bench", password="bench-password-1", is_staff=True)
store = SessionStore()
store[SESSION_KEY] = str(user.pk)
store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
store[HASH_SESSION_KEY] = user.get_session_auth_hash()
store.save()
print(store.session_key)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children (uvicorn --workers N forks server processes)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pending += [int(child) for child in children]
    return total


class Client:
    def __init__(self) -> None:
        self.delays: list[float] = []
        self.frames = 0
        self.measuring = False


async def run_client(url: str, cookie: str, client: Client, stop: asyncio.Event) -> None:
    headers = {"Cookie": cookie}
    async with websockets.connect(
        url,
        additional_headers=headers,
        origin=Origin("http://127.0.0.1"),
        max_size=None,
    ) as ws:
        client.frames = -1  # connected
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(decode=False), timeout=1)
            except TimeoutError:
                continue
            received = time.time()
            match = SENT_AT.match(raw)
            client.frames += 1
            if client.measuring and match and match.group(1) == b"delta":
                client.delays.append(received - float(match.group(2)))


async def client_share(
    url: str, cookie: str, count: int, seconds: float, connected: Any, go: Any
) -> tuple[list[float], float]:
    """One client process: connect ``count`` sockets, report, measure when told to."""
    stop = asyncio.Event()
    clients = [Client() for _ in range(count)]
    tasks = []
    for i in range(0, count, 50):  # connect in batches, like dashboards opening over time
        batch = clients[i : i + 50]
        tasks += [asyncio.create_task(run_client(url, cookie, c, stop)) for c in batch]
        await asyncio.sleep(0.2)
    deadline = time.monotonic() + 120
    while sum(c.frames >= 1 for c in clients) < count:
        if time.monotonic() > deadline or any(t.done() for t in tasks):
            failed = [t.exception() for t in tasks if t.done()]
            raise RuntimeError(f"clients did not all connect: {failed[:1]}")
        await asyncio.sleep(0.5)
    connected.put(count)
    while not go.is_set():
        await asyncio.sleep(0.05)
    cpu0 = time.process_time()
    for c in clients:
        c.measuring = True
    await asyncio.sleep(seconds)
    for c in clients:
        c.measuring = False
    cpu = time.process_time() - cpu0
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return [d for c in clients for d in c.delays], cpu / seconds


def client_process(
    url: str, cookie: str, count: int, seconds: float, connected: Any, go: Any, out: Any
) -> None:
    delays, cpu = asyncio.run(client_share(url, cookie, count, seconds, connected, go))
    out.put((delays, cpu))


def measure(
    url: str, cookie: str, count: int, seconds: float, pid: int, procs: int
) -> dict[str, Any]:
    """Spread the clients over ``procs`` processes (one event loop cannot read 1,000 sockets
    at 1 Hz without becoming the bottleneck it is supposed to measure)."""
    ctx = multiprocessing.get_context("fork")
    connected, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(target=client_process, args=(url, cookie, n, seconds, connected, go, out))
        for n in shares
        if n
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            connected.get(timeout=150)
        connect_s = time.monotonic() - started
        time.sleep(2)  # settle: the ramp's snapshots are not what we measure
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        go.set()
        time.sleep(seconds)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
        collected = [out.get(timeout=60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
    delays = sorted(d for share, _ in collected for d in share)
    return {
        "clients": count,
        "client_processes": len(workers),
        "seconds": seconds,
        "connect_s": round(connect_s, 1),
        "frames": len(delays),
        "frames_per_client_s": round(len(delays) / count / seconds, 3),
        "p50_ms": round(1000 * delays[len(delays) // 2], 1) if delays else None,
        "p99_ms": round(1000 * delays[int(len(delays) * 0.99)], 1) if delays else None,
        "max_ms": round(1000 * delays[-1], 1) if delays else None,
        "server_cpu_percent": round(100 * cpu, 1),
        "client_cpu_percent": round(100 * sum(c for _, c in collected), 1),
        # Other work on the machine skews delays: the 1-minute load average at the end.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def start_server(
    env: dict[str, str], fanout: str, log: Any, extra: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [str(BIN / "uvicorn"), "controlplane.asgi:application", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning", *shlex.split(extra)]
    server_env = {**env, "DASHBOARD_FANOUT": fanout}
    process = subprocess.Popen(command, cwd=ROOT, env=server_env, stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/healthz", process)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--fanout", default="local,layer")
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--server-args", default="", help="extra uvicorn arguments")
    args = parser.parse_args()
    global SERVER_ARGS
    SERVER_ARGS = args.server_args
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(Path(tmp), args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def run_all(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    (tmp / "fleet.json").write_text(json.dumps(FLEET))
    sim_port = free_port()
    sim = subprocess.Popen(
        [PYTHON, "-m", "simulator", "--port", str(sim_port), "--config", str(tmp / "fleet.json")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        VAR_DIR=str(tmp), LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="controlplane.settings"
    )
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    runs = []
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/healthz", sim)
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        base = f"http://127.0.0.1:{sim_port}/bench"
        made = subprocess.run(
            [PYTHON, "-c", SETUP, base],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        cookie = f"sessionid={made.stdout.strip().splitlines()[-1]}"
        with open(tmp / "server.log", "wb") as log:
            for fanout in args.fanout.split(","):
                for size in map(int, args.sizes.split(",")):
                    try:
                        run = one_run(
                            env, fanout, size, cookie, args.seconds, args.client_procs, log
                        )
                    except (RuntimeError, queue.Empty) as exc:
                        # Recorded, not fatal: the other sizes still say something.
                        run = {"fanout": fanout, "clients": size, "error": repr(exc)}
                        print(f"websockets fanout={fanout} clients={size}: failed: {exc!r}")
                    runs.append(run)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    return {
        "cores": os.cpu_count(),
        "channel_layer": "redis" if env.get("REDIS_URL") else "in-memory",
        "gpu_series_per_frame": 64,
        "runs": runs,
    }


def one_run(
    env: dict[str, str], fanout: str, size: int, cookie: str, seconds: float, procs: int, log: Any
) -> dict[str, Any]:
    server, port = start_server(env, fanout, log, SERVER_ARGS)
    try:
        url = f"ws://127.0.0.1:{port}/ws/fleet/"
        result = measure(url, cookie, size, seconds, server.pid, procs)
    finally:
        server.terminate()
        server.wait(timeout=20)
    result["fanout"] = fanout
    print(
        f"websockets fanout={fanout} clients={size}: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, {result['frames_per_client_s']} frames/client/s, "
        f"server CPU {result['server_cpu_percent']} % of a core "
        f"(clients {result['client_cpu_percent']} %)",
        flush=True,
    )
    return result


if __name__ == "__main__":
    main()
