"""Servers the benchmarks and the browser tests start as real processes: a free loopback
port, waiting until one answers, and the demo served by uvicorn from a throw-away VAR_DIR."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """Return once ``url`` answers; raise if ``process`` exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"{url} did not come up within {seconds:g} s") from None
            time.sleep(0.2)


@contextmanager
def demo_app(
    var: Path,
    *,
    code: Path = ROOT,
    seed: Sequence[str] = (),
    worker: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, str]]:
    """The demo (``migrate``, ``load_demo``) on its own SQLite file under ``var``, whatever
    DATABASE_URL and REDIS_URL the caller has (its processes cannot see a test database),
    served by uvicorn from the tree ``code``; with ``worker`` (extra arguments, e.g. ``-B``
    for its beat) a Celery worker beside it. ``seed``: a command run after ``load_demo`` in
    the app's environment (e.g. ``manage.py shell -c ...``). Yields the URL and the seed's
    standard output; the processes log to ``var/server.log`` and stop on exit."""
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    environ.update(
        VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="controlplane.settings", LOG_LEVEL="WARNING"
    )
    environ.update(env or {})
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput"], ["load_demo"]):
        subprocess.run([*manage, *command], cwd=code, env=environ, check=True, capture_output=True)
    seeded = ""
    if seed:
        done = subprocess.run(seed, cwd=code, env=environ, check=True, capture_output=True)
        seeded = done.stdout.decode()
    port = free_port()
    bin_dir = Path(sys.executable).parent
    commands = [[str(bin_dir / "uvicorn"), "controlplane.asgi:application", "--port", str(port)]]
    if worker is not None:
        celery = [str(bin_dir / "celery"), "-A", "controlplane", "worker", *worker]
        solo = ["--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
        commands.append(celery + solo)
    with open(var / "server.log", "wb") as log:
        processes = [
            subprocess.Popen(c, cwd=code, env=environ, stdout=log, stderr=subprocess.STDOUT)
            for c in commands
        ]
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/healthz", processes[0])
            yield url, seeded
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=10)
