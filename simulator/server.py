"""The HTTP face of the simulator: many clusters in one process, on wall-clock time.

URL layout (``/<cluster>`` acts as that cluster's API server base URL)::

    GET  /                         JSON index of clusters
    GET  /healthz                  "ok"
    GET|POST|DELETE /_faults       fault injection (docs/simulator.md)
    GET|DELETE /_history           requests received and replica changes (simulator.history)
    *    /<cluster>/version, /<cluster>/api/v1/..., /<cluster>/apis/apps/v1/...
    GET  /<cluster>/metrics        dcgm-exporter and vLLM series of that cluster
    *    /<cluster>/pool/...       the pool admin protocol (docs/pool-protocol.md)

A daemon thread advances every cluster each ``tick_s`` of wall time by ``tick_s * speed``
simulated seconds.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from simulator import exposition, kube_api, pool_api
from simulator.cluster import Cluster
from simulator.config import FleetConfig
from simulator.faults import FaultError, Faults, injected_status, override_samples
from simulator.history import History


class Fleet:
    """All clusters of a config, their faults, and the clock that drives them."""

    def __init__(self, config: FleetConfig, speed: float = 1.0, tick_s: float = 0.1) -> None:
        self.speed = speed
        self.tick_s = tick_s
        self.started = time.monotonic()
        wall = time.time()
        self.clusters = {
            c.name: Cluster(c, now=0.0, wall_origin=wall, speed=speed, index=i)
            for i, c in enumerate(config.clusters)
        }
        self.faults = Faults()
        self.history = History()
        # Encoded answers, reused while what they show is unchanged: list calls by the
        # cluster's resourceVersion, exporter text by (sim time, resourceVersion, pool
        # writes). A real kube-apiserver serves lists from its watch cache and dcgm-exporter
        # from its last collection, in milliseconds; so must the stand-in at 1,000 pods.
        self._lists: dict[tuple[str, str, str], tuple[int, bytes]] = {}
        self._scrapes: dict[str, tuple[tuple[float, int, int], bytes]] = {}
        for cluster_config in config.clusters:
            self.faults.load(cluster_config.name, cluster_config.faults)
            for node in cluster_config.faults.failed_nodes:
                with self.clusters[cluster_config.name].lock:
                    self.clusters[cluster_config.name].fail_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-clock", daemon=True)

    def sim_now(self) -> float:
        return (time.monotonic() - self.started) * self.speed

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = self.sim_now()
            for cluster in self.clusters.values():
                try:
                    with cluster.lock:
                        cluster.tick(now)
                except Exception:  # a bug in one step must not stop the clock for good
                    traceback.print_exc()

    def exposition(self, cluster: Cluster) -> bytes:
        """The cluster's exporter text, encoded; rendered again only when it changed. Metric
        value faults are laid over the cached text."""
        with cluster.lock:
            key = (cluster.now, cluster.rv, cluster.pool_writes)
            cached = self._scrapes.get(cluster.name)
            if cached is None or cached[0] != key:
                cached = (key, exposition.render(cluster).encode())
                self._scrapes[cluster.name] = cached
        values = self.faults.get(cluster.name).metric_values
        if values:
            return override_samples(cached[1].decode(), values).encode()
        return cached[1]

    def kube(
        self,
        cluster: Cluster,
        method: str,
        path: str,
        query: str,
        content_type: str,
        raw: bytes,
        authorization: str = "",
    ) -> tuple[int, bytes]:
        """One Kubernetes API answer, encoded; lists come from the cache while the cluster's
        resourceVersion has not moved (every change and deletion moves it). Authentication
        and RBAC come first, so a cached list never reaches a caller it would be refused to."""
        refused = kube_api.authorize(cluster, method, path, authorization)
        if refused is not None:
            return refused[0], json.dumps(refused[1]).encode()
        with cluster.lock:
            key = (cluster.name, path, query)
            if method == "GET":
                cached = self._lists.get(key)
                if cached is not None and cached[0] == cluster.rv:
                    return 200, cached[1]
            before = None if method == "GET" else self._replicas(cluster)
            code, body = kube_api.handle(cluster, method, path, parse_qs(query), content_type, raw)
            if before is not None:
                self._record_scales(cluster, before, f"{method} {path}")
            # Encoded under the lock: list bodies share the store's objects.
            data = json.dumps(body).encode()
            if method == "GET" and code == 200 and str(body.get("kind", "")).endswith("List"):
                self._lists[key] = (cluster.rv, data)
            return code, data

    @staticmethod
    def _replicas(cluster: Cluster) -> dict[tuple[str, str], int]:
        return {key: int(d["spec"]["replicas"]) for key, d in cluster.deployments.items()}

    def _record_scales(
        self, cluster: Cluster, before: dict[tuple[str, str], int], via: str
    ) -> None:
        after = self._replicas(cluster)
        for key in sorted(before.keys() | after.keys()):
            if before.get(key) != after.get(key):
                self.history.scaled(cluster.name, key, before.get(key), after.get(key), via)

    def index(self) -> dict[str, Any]:
        return {
            "simulator": "gpu-fleet",
            "speed": self.speed,
            "sim_time_s": round(self.sim_now(), 3),
            "clusters": [
                {
                    "name": name,
                    "api": f"/{name}",
                    "metrics": f"/{name}/metrics",
                    "pool": f"/{name}/pool/",
                    "nodes": len(c.nodes),
                    "deployments": len(c.deployments),
                }
                for name, c in self.clusters.items()
            ],
        }

    def set_faults(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            return 422, {"message": "the body must be a JSON object", "errors": {}}
        names = [body["cluster"]] if body.get("cluster") else list(self.clusters)
        unknown = [n for n in names if n not in self.clusters]
        if unknown:
            return 422, {"message": "unknown cluster", "errors": {"cluster": unknown}}
        try:
            for name in names:
                self.faults.update(name, body)
        except FaultError as exc:
            return 422, {"message": str(exc), "errors": exc.errors}
        for name in names:
            self._apply_nodes(name, body)
        return 200, self.fault_state()

    def _apply_nodes(self, name: str, body: dict[str, Any]) -> None:
        cluster, faults = self.clusters[name], self.faults.get(name)
        fail = body.get("fail_nodes", [body["fail_node"]] if body.get("fail_node") else [])
        heal = body.get("heal_nodes", [body["heal_node"]] if body.get("heal_node") else [])
        with cluster.lock:
            for node in fail:
                if node in cluster.nodes:
                    cluster.fail_node(node)
                    faults.failed_nodes = sorted({*faults.failed_nodes, node})
            for node in heal:
                cluster.heal_node(node)
                faults.failed_nodes = [n for n in faults.failed_nodes if n != node]

    def clear_faults(self) -> dict[str, Any]:
        for cluster in self.clusters.values():
            with cluster.lock:
                for node in list(cluster.failed_nodes):
                    cluster.heal_node(node)
        self.faults.clusters.clear()
        return self.fault_state()

    def fault_state(self) -> dict[str, Any]:
        return {"faults": {name: vars(self.faults.get(name)) for name in self.clusters}}


class Handler(BaseHTTPRequestHandler):
    """Splits the path into cluster and rest, applies faults, and dispatches."""

    server: FleetServer
    protocol_version = "HTTP/1.1"
    _logged: dict[str, Any] | None = None  # this request's entry in the fleet's history
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK of the first, ~40 ms per small answer (a 404, a Scale).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the control plane's logs

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fleet = self.server.fleet
        head, _, rest = url.path.lstrip("/").partition("/")
        rest = "/" + rest
        if head == "":
            return self._json(200, fleet.index())
        if head == "healthz":
            return self._text(200, "ok\n", "text/plain; charset=utf-8")
        if head == "_faults":
            return self._faults(method, raw)
        if head == "_history":
            return self._history(method, url.query)
        cluster = fleet.clusters.get(head)
        if cluster is None:
            return self._json(
                404, {"message": f"no cluster named {head!r}", "clusters": sorted(fleet.clusters)}
            )
        self._logged = fleet.history.request(head, method, rest)
        if rest == "/metrics":
            return self._metrics(cluster, fleet.faults.get(head).metrics_down)
        fault = fleet.faults.roll(head, method, rest)
        if fault is not None and fault[0] == "hang":
            time.sleep(fault[1])
        elif fault is not None:
            code = int(fault[1])
            return self._json(code, injected_status(code))
        if rest == "/pool" or rest.startswith("/pool/"):
            code, body = pool_api.handle(cluster, method, rest[len("/pool") :], raw)
            if method != "GET":
                with cluster.lock:
                    cluster.pool_writes += 1
            return self._json(code, body)
        content_type = self.headers.get("Content-Type", "application/json")
        authorization = self.headers.get("Authorization", "")
        code, data = fleet.kube(cluster, method, rest, url.query, content_type, raw, authorization)
        return self._send(code, data, "application/json")

    def _faults(self, method: str, raw: bytes) -> None:
        fleet = self.server.fleet
        if method == "GET":
            return self._json(200, fleet.fault_state())
        if method == "DELETE":
            return self._json(200, fleet.clear_faults())
        if method != "POST":
            return self._json(405, {"message": f"{method} is not allowed on /_faults"})
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return self._json(400, {"message": "the body is not valid JSON"})
        code, out = fleet.set_faults(body)
        return self._json(code, out)

    def _history(self, method: str, query: str) -> None:
        history = self.server.fleet.history
        if method == "DELETE":
            history.clear()
            return self._json(200, history.since(0))
        if method != "GET":
            return self._json(405, {"message": f"{method} is not allowed on /_history"})
        raw = parse_qs(query).get("since", ["0"])[0]
        if not raw.isdigit():
            return self._json(400, {"message": "since must be a non-negative integer"})
        return self._json(200, history.since(int(raw)))

    def _metrics(self, cluster: Cluster, down: bool) -> None:
        if down:
            return self._text(
                503, "metrics endpoint down (injected fault)\n", "text/plain; charset=utf-8"
            )
        return self._send(200, self.server.fleet.exposition(cluster), exposition.CONTENT_TYPE)

    def _json(self, code: int, body: Any) -> None:
        self._text(code, json.dumps(body), "application/json")

    def _text(self, code: int, text: str, content_type: str) -> None:
        self._send(code, text.encode(), content_type)

    def _send(self, code: int, data: bytes, content_type: str) -> None:
        logged, self._logged = self._logged, None
        if logged is not None:
            logged["status"] = code
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FleetServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fleet: Fleet) -> None:
        super().__init__(address, Handler)
        self.fleet = fleet
