"""The kube tier's control plane itself: it serves as configured and leaves nothing behind."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests import kube_control_plane as control_plane

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_a_plane_starts_ready_and_stops_without_leftovers(
    kube_control_plane: Any, tmp_path: Path
) -> None:
    # The session's plane proved the binaries exist; a second one is started and stopped here.
    plane = control_plane.start(control_plane.binary_dir(), tmp_path)
    pids = [p.pid for p in plane.processes]
    port = int(plane.url.rsplit(":", 1)[1])
    try:
        assert len(pids) == 5 and all(alive(pid) for pid in pids)
        assert control_plane._get(plane, "/readyz") == 200
        assert plane.startup_s < control_plane.START_TIMEOUT_S
        assert "certificate-authority" in plane.kubeconfig.read_text()
    finally:
        plane.stop()
    assert [pid for pid in pids if alive(pid)] == []
    with socket.socket() as sock:  # nothing listens on the API server's port any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        sock.bind(("127.0.0.1", port))
