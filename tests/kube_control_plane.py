"""A real Kubernetes control plane for the kube test tier: etcd, kube-apiserver (RBAC) and
kube-controller-manager as processes, built by ``kubetest/build.sh`` (docs/kube-tests.md).

There is no kubelet: KWOK plays it for the Nodes a test creates (API objects with the GPU
capacity it wants, annotated ``kwok.x-k8s.io/node: fake``), so the Pods kube-scheduler binds
there become Running and Ready; Pods with no such node stay Pending.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "kubetest" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# KWOK plays the kubelet of the nodes carrying this annotation (a test's fake GPU nodes).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
ADMIN_TOKEN = "admin-token-for-tests"  # a throwaway server's static token
NOBODY_TOKEN = "nobody-token-for-tests"  # authenticated, no RBAC rights
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 3.0


def binary_dir() -> Path:
    """Where build.sh puts (or has put) the binaries on this machine."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def missing_binaries(directory: Path) -> list[str]:
    missing = [name for name in BINARIES if not os.access(directory / name, os.X_OK)]
    return missing + [name for name in ("kwok-stages.yaml",) if not (directory / name).exists()]


@dataclass
class ControlPlane:
    """The running processes and what a client needs to reach them."""

    url: str
    workdir: Path
    ca_file: Path
    kubeconfig: Path
    logs: Path
    startup_s: float = 0.0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every process group started: SIGTERM, then SIGKILL what still runs after a
        moment (the data is throwaway; kube-apiserver's graceful shutdown takes ~15 s)."""
        for process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start(binaries: Path, workdir: Path) -> ControlPlane:
    """Start etcd, kube-apiserver and kube-controller-manager under ``workdir``; wait until the
    API server is ready and the controller-manager has acted. Stops what it started on failure."""
    started = time.monotonic()
    etcd_port, peer_port, api_port = _free_ports(3)
    logs = workdir / "logs"
    logs.mkdir(parents=True)
    url = f"https://127.0.0.1:{api_port}"
    plane = ControlPlane(
        url=url,
        workdir=workdir,
        ca_file=workdir / "certs" / "apiserver.crt",
        kubeconfig=workdir / "kubeconfig",
        logs=logs,
    )
    try:
        _write_credentials(workdir)
        etcd = _etcd_args(workdir, etcd_port, peer_port)
        plane.processes.append(_spawn(binaries, "etcd", etcd, logs))
        apiserver = _apiserver_args(workdir, etcd_port, api_port)
        plane.processes.append(_spawn(binaries, "kube-apiserver", apiserver, logs))
        _wait(plane, lambda: _get(plane, "/readyz") == 200, "kube-apiserver /readyz")
        _write_kubeconfig(plane)
        controllers = _controller_manager_args(plane, workdir)
        plane.processes.append(_spawn(binaries, "kube-controller-manager", controllers, logs))
        # The service-account controller creates "default" in every namespace: the
        # controller-manager is up and syncing once it has done so here.
        sa = "/api/v1/namespaces/default/serviceaccounts/default"
        _wait(plane, lambda: _get(plane, sa) == 200, "kube-controller-manager (default SA)")
        plane.processes.append(_spawn(binaries, "kube-scheduler", _scheduler_args(plane), logs))
        plane.processes.append(_spawn(binaries, "kwok", _kwok_args(plane, binaries), logs))
    except BaseException:
        plane.stop()
        raise
    plane.startup_s = time.monotonic() - started
    return plane


def _write_credentials(workdir: Path) -> None:
    """The service-account signing key pair, generated per start, and the static tokens."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (workdir / "sa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (workdir / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (workdir / "tokens.csv").write_text(
        f'{ADMIN_TOKEN},admin,uid-admin,"system:masters"\n{NOBODY_TOKEN},nobody,uid-nobody\n'
    )


def sign_token(plane: ControlPlane, claims: dict[str, object], kid: str) -> str:
    """A JWT with ``claims`` signed by the plane's service-account key, as the API server
    signs the tokens it issues (for tokens a server issued once but refuses now)."""
    import base64
    import json

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    key = serialization.load_pem_private_key((plane.workdir / "sa.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    header = b64(json.dumps({"alg": "RS256", "kid": kid}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def _etcd_args(workdir: Path, port: int, peer: int) -> list[str]:
    return [
        "--name=test",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{port}",
        f"--advertise-client-urls=http://127.0.0.1:{port}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=test=http://127.0.0.1:{peer}",
        # A throwaway store: durability buys nothing and fsync costs seconds on a busy disk.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def _apiserver_args(workdir: Path, etcd_port: int, port: int) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        # A self-signed serving certificate (and its CA) is generated into --cert-dir.
        f"--cert-dir={workdir / 'certs'}",
        "--authorization-mode=Node,RBAC",
        f"--token-auth-file={workdir / 'tokens.csv'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={workdir / 'sa.pub'}",
        f"--service-account-signing-key-file={workdir / 'sa.key'}",
        "--service-cluster-ip-range=10.96.0.0/24",
        "--allow-privileged=false",
    ]


def _controller_manager_args(plane: ControlPlane, workdir: Path) -> list[str]:
    return [
        f"--kubeconfig={plane.kubeconfig}",
        "--secure-port=0",
        "--leader-elect=false",
        f"--service-account-private-key-file={workdir / 'sa.key'}",
        f"--root-ca-file={plane.ca_file}",
        # Every controller, the node lifecycle one included: it lifts the not-ready taint
        # from a Node KWOK keeps heartbeating (and taints one nothing does).
        "--resource-quota-sync-period=2s",
    ]


def _scheduler_args(plane: ControlPlane) -> list[str]:
    return [f"--kubeconfig={plane.kubeconfig}", "--secure-port=0", "--leader-elect=false"]


def _kwok_args(plane: ControlPlane, binaries: Path) -> list[str]:
    key, value = KWOK_NODE_ANNOTATION
    return [
        f"--kubeconfig={plane.kubeconfig}",
        f"--config={binaries / 'kwok-stages.yaml'}",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        "--cidr=10.244.0.0/16",
        "--node-ip=10.0.0.1",
    ]


def _spawn(binaries: Path, name: str, args: list[str], logs: Path) -> subprocess.Popen[bytes]:
    with open(logs / f"{name}.log", "wb") as log:
        # Its own session: teardown signals the whole process group, leaving nothing behind.
        return subprocess.Popen(
            [str(binaries / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _ssl_context(plane: ControlPlane) -> ssl.SSLContext:
    if plane.ca_file.exists():
        return ssl.create_default_context(cafile=str(plane.ca_file))
    return ssl._create_unverified_context()  # before the server wrote its certificate


def _get(plane: ControlPlane, path: str) -> int:
    request = urllib.request.Request(
        plane.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2, context=_ssl_context(plane)) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _wait(plane: ControlPlane, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        for process in plane.processes:
            if process.poll() is not None:
                args = process.args
                name = Path(str(args[0] if isinstance(args, list) else args)).name
                raise RuntimeError(f"{name} exited ({process.returncode}); {_tail(plane)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S:.0f} s; {_tail(plane)}")
        time.sleep(0.2)


def _tail(plane: ControlPlane) -> str:
    parts = []
    for log in sorted(plane.logs.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-5:]
        parts.append(f"{log.name}: " + " | ".join(lines))
    return "; ".join(parts)


def _write_kubeconfig(plane: ControlPlane) -> None:
    """Contexts ``admin`` (system:masters) and ``nobody`` (authenticated, no rights)."""
    users = {"admin": ADMIN_TOKEN, "nobody": NOBODY_TOKEN}
    lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: test",
        f"  cluster: {{server: '{plane.url}', certificate-authority: '{plane.ca_file}'}}",
        "users:",
        *(f"- {{name: {user}, user: {{token: '{token}'}}}}" for user, token in users.items()),
        "contexts:",
        *(f"- {{name: {user}, context: {{cluster: test, user: {user}}}}}" for user in users),
        "current-context: admin",
    ]
    plane.kubeconfig.write_text("\n".join(lines) + "\n")
