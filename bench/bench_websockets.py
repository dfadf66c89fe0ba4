"""Live-stream fan-out: 100, 500 and 1,000 concurrent dashboards on one ASGI server.

Run: ``.venv/bin/python bench/bench_websockets.py [--sizes 100,500,1000] [--seconds 15]
[--variant 'name|fanout|uvicorn args|source root' ...] [--client lean|websockets]`` (writes
bench/results/websockets.json, prints one summary line per run).

1. A simulator subprocess serves one cluster of 8 nodes x 8 GPUs (64 GPU series) with a few
   workloads. A throw-away SQLite database under a temporary VAR_DIR gets the cluster and a
   staff user; every client uses that user's session cookie.
2. For each client count, for each variant (a fan-out mode, uvicorn arguments and a source
   tree, so an older checkout can be measured beside the current one): a fresh uvicorn
   subprocess with the Redis channel layer (REDIS_URL, default redis://127.0.0.1:6379/0) and
   DASHBOARD_FANOUT set; the clients connect to /ws/fleet/ (each 1 Hz delta carries the 64
   GPU cells), then for ``--seconds`` every delta's delay is taken: client receive time minus
   the frame's ``sent_at`` (stamped when the poller serialised it, before fan-out, so all
   queueing in the server counts). Server CPU is read from /proc/<pid>/stat over the same
   window (percent of one core); the clients' own CPU is reported beside it.
3. The clients run in ``--client-procs`` separate processes. By default each is a lean
   reader (``LeanProtocol``: raw frames on uvloop, inflating when the server compressed), so
   the load generator, which shares the machine's 2 cores with the server as a browser fleet
   would not, takes little of them; ``--client websockets`` uses the websockets library.
   Loopback only; every phase has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import queue
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import websockets
from websockets.typing import Origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.servers import free_port, wait_http  # noqa: E402

CLIENT = "lean"  # set by --client
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
        self.ticks: list[str] = []  # each delay's frame, by its sent_at (one per tick)
        self.delta_bytes = 0  # uncompressed, over the measured deltas
        self.frames = 0
        self.measuring = False

    def frame(self, raw: bytes, received: float) -> None:
        match = SENT_AT.match(raw)
        self.frames += 1
        if self.measuring and match and match.group(1) == b"delta":
            self.delays.append(received - float(match.group(2)))
            self.ticks.append(match.group(2).decode())
            self.delta_bytes += len(raw)


async def library_client(url: str, cookie: str, client: Client, stop: asyncio.Event) -> None:
    """A client on the ``websockets`` library (what a Python consumer of the stream would use;
    it costs the load generator ~5 times the CPU of ``lean_client``)."""
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
            client.frame(raw, time.time())


class LeanProtocol(asyncio.Protocol):
    """The smallest WebSocket reader that measures honestly: an HTTP upgrade offering
    permessage-deflate as browsers do (the server decides), then unmasked server frames
    parsed by hand, inflated when the server compressed them (RFC 7692, context takeover),
    the receive time taken when the bytes arrive."""

    def __init__(self, client: Client, request: bytes, done: asyncio.Future[None]) -> None:
        self.client, self.request, self.done = client, request, done
        self.buffer = bytearray()
        self.upgraded = False
        self.inflate: Any = None
        self.message = bytearray()
        self.compressed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.done.set_exception(RuntimeError(head[:200].decode(errors="replace")))
                return
            if b"permessage-deflate" in head.lower():
                self.inflate = zlib.decompressobj(-15)
            self.upgraded, self.buffer = True, bytearray(rest)
            self.client.frames = -1
        self.parse(received)

    def parse(self, received: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            first, length, at = buf[0], buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, at = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + length:
                return
            payload = bytes(buf[at : at + length])
            del buf[: at + length]
            opcode = first & 0x0F
            if opcode in (1, 2):  # a new message (text or binary)
                self.message, self.compressed = bytearray(payload), bool(first & 0x40)
            elif opcode == 0:  # continuation
                self.message += payload
            else:
                continue  # ping, pong, close: the stream's frames are all we count
            if first & 0x80:  # FIN
                raw = bytes(self.message)
                if self.compressed and self.inflate is not None:
                    raw = self.inflate.decompress(raw + b"\x00\x00\xff\xff")
                self.client.frame(raw, received)


async def lean_client(url: str, cookie: str, client: Client, stop: asyncio.Event) -> None:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        f"Origin: http://127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: LeanProtocol(client, request, done), host, int(port)
    )
    try:
        while not stop.is_set() and not done.done():
            await asyncio.sleep(0.5)
        if done.done():
            done.result()  # raise a failed upgrade
    finally:
        transport.close()


async def client_share(
    url: str, cookie: str, count: int, seconds: float, connected: Any, go: Any
) -> tuple[list[tuple[str, float]], float, int]:
    """One client process: connect ``count`` sockets, report, measure when told to."""
    run_client = lean_client if CLIENT == "lean" else library_client
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
    delta_bytes = sum(c.delta_bytes for c in clients)
    delays = [(t, d) for c in clients for t, d in zip(c.ticks, c.delays, strict=True)]
    return delays, cpu / seconds, delta_bytes


def client_process(
    url: str, cookie: str, count: int, seconds: float, connected: Any, go: Any, out: Any
) -> None:
    if CLIENT == "lean":
        import uvloop  # a lean reader on a fast loop: the load generator stays out of the way

        uvloop.install()
    out.put(asyncio.run(client_share(url, cookie, count, seconds, connected, go)))


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
    by_tick: dict[str, list[float]] = {}
    for share, _, _ in collected:
        for tick, delay in share:
            by_tick.setdefault(tick, []).append(delay)
    delays = sorted(d for found in by_tick.values() for d in found)
    # With ~15 ticks a run, p99 is decided by the slowest tick's fan-out: name it.
    tick_medians = sorted(sorted(found)[len(found) // 2] for found in by_tick.values())
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
        "ticks": len(tick_medians),
        "slowest_tick_median_ms": round(1000 * tick_medians[-1], 1) if tick_medians else None,
        "typical_tick_median_ms": (
            round(1000 * tick_medians[len(tick_medians) // 2], 1) if tick_medians else None
        ),
        "server_cpu_percent": round(100 * cpu, 1),
        # The load generator's own CPU (it shares the machine with the server).
        "client_cpu_percent": round(100 * sum(c for _, c, _ in collected), 1),
        "delta_bytes": round(sum(b for _, _, b in collected) / len(delays)) if delays else None,
        # Other work on the machine skews delays: the 1-minute load average at the end.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


@dataclass(frozen=True)
class Variant:
    """One server set-up to measure: a name, the fan-out, uvicorn arguments and the source
    tree to run (another checkout measures old code beside new in the same run)."""

    name: str
    fanout: str = "local"
    args: str = ""
    root: Path = ROOT
    prefix: str = ""  # e.g. "python -m cProfile -o /tmp/server.prof" to profile the server

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``name|fanout|uvicorn args|root``; empty parts keep their defaults."""
        name, fanout, args, root, prefix = (text.split("|") + [""] * 4)[:5]
        return cls(name, fanout or "local", args, Path(root) if root else ROOT, prefix)


def start_server(
    env: dict[str, str], variant: Variant, log: Any
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [*shlex.split(variant.prefix), str(BIN / "uvicorn")]
    command += ["controlplane.asgi:application", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning", *shlex.split(variant.args)]
    server_env = {**env, "DASHBOARD_FANOUT": variant.fanout}
    process = subprocess.Popen(command, cwd=variant.root, env=server_env, stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/healthz", process)
    return process, port


DEFAULT_VARIANTS = ["local|local|--ws-per-message-deflate false", "layer|layer"]


def main() -> None:
    global CLIENT
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--variant",
        action="append",
        help="name|fanout|uvicorn args|source root|command prefix (repeatable); "
        f"default: {DEFAULT_VARIANTS}",
    )
    parser.add_argument("--client", choices=["lean", "websockets"], default="lean")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    CLIENT = args.client
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(Path(tmp), args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


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
    variants = [Variant.parse(text) for text in args.variant or DEFAULT_VARIANTS]
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
            # Sizes outside, variants inside: the variants of one size run minutes apart, so
            # the machine's other load skews them alike.
            for size in map(int, args.sizes.split(",")):
                for variant in variants:
                    try:
                        run = one_run(env, variant, size, cookie, args, log)
                    except (RuntimeError, queue.Empty) as exc:
                        # Recorded, not fatal: the other sizes still say something.
                        run = {"variant": variant.name, "clients": size, "error": repr(exc)}
                        print(f"websockets {variant.name} clients={size}: failed: {exc!r}")
                    runs.append(run)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    return {
        "cores": os.cpu_count(),
        "channel_layer": "redis" if env.get("REDIS_URL") else "in-memory",
        "gpu_series_per_frame": 64,
        "client": args.client,
        "runs": runs,
    }


def one_run(
    env: dict[str, str],
    variant: Variant,
    size: int,
    cookie: str,
    args: argparse.Namespace,
    log: Any,
) -> dict[str, Any]:
    server, port = start_server(env, variant, log)
    try:
        url = f"ws://127.0.0.1:{port}/ws/fleet/"
        measured = measure(url, cookie, size, args.seconds, server.pid, args.client_procs)
    finally:
        server.terminate()
        server.wait(timeout=20)
    result = {"variant": variant.name, "fanout": variant.fanout, "server_args": variant.args}
    result |= measured
    print(
        f"websockets {variant.name} clients={size}: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms (slowest tick's median {result['slowest_tick_median_ms']} "
        f"ms), {result['frames_per_client_s']} frames/client/s, "
        f"server CPU {result['server_cpu_percent']} % of a core "
        f"(clients {result['client_cpu_percent']} %, load {result['load_average_1m']})",
        flush=True,
    )
    return result


if __name__ == "__main__":
    main()
