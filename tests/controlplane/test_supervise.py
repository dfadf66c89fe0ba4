"""bin/supervise, the restart wrapper of `make run`'s worker and beat: a crashed process
comes back, a stop request stops everything. Real processes and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUPERVISE = ROOT / "bin" / "supervise"
HONCHO = Path(sys.executable).with_name("honcho")
# A child that prints its pid, then lives until killed.
PRINT_PID_AND_SLEEP = 'import os, time; print("pid", os.getpid(), flush=True); time.sleep(600)'
CHILD = f"{sys.executable} -c '{PRINT_PID_AND_SLEEP}'"


def _pids(path: Path) -> list[int]:
    text = path.read_text() if path.exists() else ""
    return [int(line.split()[-1]) for line in text.splitlines() if "pid" in line.split()[-2:-1]]


def _wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not alive either.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


@pytest.fixture
def supervised(tmp_path):
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            ["sh", "-c", f"exec {SUPERVISE} sleeper {CHILD}"],
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    yield proc, out, err
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_child_killed_with_sigkill_is_restarted_and_the_reason_logged(supervised):
    proc, out, err = supervised
    _wait_for(lambda: len(_pids(out)) == 1)
    first = _pids(out)[0]
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: len(_pids(out)) == 2)
    assert proc.poll() is None
    assert "sleeper exited with code 137 (killed by signal 9), restarting in 2 s" in err.read_text()
    # Dying again at once backs off.
    os.kill(_pids(out)[1], signal.SIGKILL)
    _wait_for(lambda: "restarting in 4 s" in err.read_text())


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_the_group_ends_the_child_and_the_wrapper(supervised, how):
    proc, out, _ = supervised
    _wait_for(lambda: len(_pids(out)) == 1)
    child = _pids(out)[0]
    os.killpg(proc.pid, how)
    assert proc.wait(timeout=10) is not None
    _wait_for(lambda: not _alive(child), timeout=5)
    time.sleep(2.5)  # past the restart delay: nothing came back
    assert len(_pids(out)) == 1


def test_a_stop_signal_to_the_wrapper_alone_stops_its_child(supervised):
    proc, out, err = supervised
    _wait_for(lambda: len(_pids(out)) == 1)
    child = _pids(out)[0]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    _wait_for(lambda: not _alive(child), timeout=5)
    assert "sleeper stopped" in err.read_text()


def test_under_honcho_a_killed_worker_comes_back_and_the_others_keep_running(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"web: {CHILD}\nworker: {SUPERVISE} worker {CHILD}\n")
    log = tmp_path / "log"
    with log.open("w") as output:
        honcho = subprocess.Popen(
            [str(HONCHO), "--procfile", str(procfile), "start"],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:

        def pids(prefix: str) -> list[int]:
            return [
                int(line.split()[-1])
                for line in log.read_text().splitlines()
                if line.split("|")[0].split()[-1:] == [f"{prefix}.1"] and "| pid " in line
            ]

        _wait_for(lambda: pids("web") and pids("worker"))
        web, worker = pids("web")[0], pids("worker")[0]
        os.kill(worker, signal.SIGKILL)
        _wait_for(lambda: len(pids("worker")) == 2)
        assert _alive(web) and honcho.poll() is None
        assert "worker exited with code 137" in log.read_text()
        honcho.send_signal(signal.SIGINT)  # Ctrl-C
        honcho.wait(timeout=20)
        _wait_for(lambda: not _alive(web) and not _alive(pids("worker")[-1]), timeout=10)
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
