"""Shared fixtures: a small fleet built through the ORM, and users with each role.

Django models are imported inside the fixtures: the simulator and engine tests are pure Python
and must collect without Django settings.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from clusters.models import Cluster
    from quotas.models import GpuType
    from scaling.models import Workload
    from tenants.models import Tenant


@pytest.fixture(autouse=True)
def _forget_parsed_signal_rows() -> Iterator[None]:
    """Each test's rolled-back database reuses row ids, which no real database does
    (AUTOINCREMENT, sequences): forget the signal rows a previous test had parsed
    (scaling.signal_store.load_window, keyed by row identity)."""
    yield
    from scaling import signal_store

    signal_store._PARSED.entries.clear()


@pytest.fixture
def gpu_type(db: Any) -> GpuType:
    from quotas.models import GpuType

    return GpuType.objects.create(
        name="A100-80GB",
        memory_gib=80,
        relative_throughput=1.0,
        hourly_cost="2.20",
        node_label="NVIDIA-A100-SXM4-80GB",
    )


@pytest.fixture
def cluster(db: Any) -> Cluster:
    from clusters.models import Cluster

    return Cluster.objects.create(name="east", api_url="http://127.0.0.1:9400/east")


@pytest.fixture
def org(db: Any) -> Tenant:
    from tenants.models import Tenant

    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def team_a(org: Tenant) -> Tenant:
    return type(org).objects.create(slug="team-a", name="Team A", parent=org)


@pytest.fixture
def team_b(org: Tenant) -> Tenant:
    return type(org).objects.create(slug="team-b", name="Team B", parent=org)


@pytest.fixture
def other_org(db: Any) -> Tenant:
    from tenants.models import Tenant

    return Tenant.objects.create(slug="globex", name="Globex")


@pytest.fixture
def make_workload(db: Any) -> Any:
    def make(tenant: Tenant, cluster: Cluster, gpu_type: GpuType, name: str) -> Workload:
        from scaling.models import ScalingPolicy, Workload

        workload = Workload.objects.create(
            tenant=tenant,
            cluster=cluster,
            namespace=tenant.slug,
            deployment=name,
            model_name="meta-llama/Llama-3.1-8B-Instruct",
            gpu_type=gpu_type,
        )
        ScalingPolicy.objects.create(workload=workload, target=8)
        return workload

    return make


@pytest.fixture
def make_user(db: Any) -> Any:
    def make(
        username: str, tenant: Tenant | None = None, role: str = "viewer", staff: bool = False
    ) -> User:
        from django.contrib.auth.models import User

        from tenants.models import Membership

        user = User.objects.create_user(
            username, password="pw-for-tests-1", is_staff=staff, is_superuser=staff
        )
        if tenant is not None:
            Membership.objects.create(user=user, tenant=tenant, role=role)
        return user

    return make


@pytest.fixture(scope="session")
def need_binary() -> Any:
    """Return the path of a system binary an integration test drives. Without it the test
    skips with the reason, except under REQUIRE_INTEGRATION (set by .ci/run), where it fails."""

    def find(name: str, hint: str) -> str:
        path = shutil.which(name)
        if path is None:
            message = f"{name} is not installed ({hint})"
            if os.environ.get("REQUIRE_INTEGRATION"):
                pytest.fail(message)
            pytest.skip(message)
        return path

    return find


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Any:
    """A function returning a free TCP port on 127.0.0.1 for a server a test starts."""
    return _free_port


def _simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start ``python -m simulator`` as a real process on a free port with the given fleet
    config; returns its base URL. Every process started is stopped at teardown (a running
    simulator steps its clusters all the time: they must not pile up across tests)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any] | None = None, speed: float = 1.0) -> str:
        port = _free_port()
        command = [sys.executable, "-m", "simulator", "--port", str(port), "--speed", str(speed)]
        if config is not None:
            path = tmp_path_factory.mktemp("fleet") / "fleet.json"
            path.write_text(json.dumps(config))
            command += ["--config", str(path)]
        root = Path(__file__).resolve().parent.parent
        quiet = subprocess.DEVNULL
        processes.append(subprocess.Popen(command, cwd=root, stdout=quiet, stderr=quiet))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    return url
            except OSError:
                if time.monotonic() > deadline or processes[-1].poll() is not None:
                    raise RuntimeError(f"the simulator did not start: {command}") from None
                time.sleep(0.1)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def start_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A simulator process for one test (see _simulators)."""
    yield from _simulators(tmp_path_factory)


@pytest.fixture(scope="module")
def start_module_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A simulator process shared by the tests of one module (see _simulators)."""
    yield from _simulators(tmp_path_factory)


class _FormFields(HTMLParser):
    """Collects the values a browser would submit from the admin's change form."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in {"submit", "checkbox"}:
            self.data[name] = a.get("value") or ""
        elif tag == "input" and name and "checked" in a:
            self.data[name] = "on"
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def _change_form(client: Any, url: str, **changes: Any) -> dict[str, Any]:
    parser = _FormFields()
    parser.feed(client.get(url).content.decode())
    parser.data.pop("csrfmiddlewaretoken", None)
    parser.data.update(changes)
    return parser.data


@pytest.fixture
def change_form() -> Any:
    """``change_form(client, url, **changes)``: the fields a browser would submit from the
    admin change form at ``url`` (as the page renders them), with ``changes`` applied."""
    return _change_form


@pytest.fixture(scope="session")
def kube_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real etcd, kube-apiserver (RBAC) and kube-controller-manager for the session (see
    tests/kube_control_plane.py). Without the binaries (``make kube-binaries``) the tests that
    use it skip, except under REQUIRE_INTEGRATION (.ci/run), where they fail."""
    from tests import kube_control_plane

    directory = kube_control_plane.binary_dir()
    missing = kube_control_plane.missing_binaries(directory)
    if missing:
        message = f"{', '.join(missing)} not built in {directory} (make kube-binaries)"
        if os.environ.get("REQUIRE_INTEGRATION"):
            pytest.fail(message)
        pytest.skip(message)
    plane = kube_control_plane.start(directory, tmp_path_factory.mktemp("kube"))
    yield plane
    plane.stop()
