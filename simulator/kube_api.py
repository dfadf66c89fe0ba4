"""The Kubernetes REST subset, routed onto a :class:`~simulator.cluster.Cluster`.

``handle(cluster, method, path, query, content_type, body)`` returns ``(status, json)``;
the HTTP server stays ignorant of Kubernetes. Paths are relative to the cluster's base URL,
e.g. ``/apis/apps/v1/namespaces/acme-chat/deployments/chat-llama-8b/scale``.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from typing import Any

from simulator.cluster import Cluster, pod_gpus
from simulator.kube_status import (
    ApiError,
    bad_request,
    forbidden,
    method_not_allowed,
    not_found,
    unauthorized,
    unsupported_media_type,
)
from simulator.patch import PATCH_TYPES, PatchError, apply_patch
from simulator.selectors import Matcher, SelectorError, parse_selector
from simulator.validation import validate_scale

Response = tuple[int, dict[str, Any]]
Query = dict[str, list[str]]

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-gpusim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class _Call:
    """One request: cluster, verb, captured path parameters, query and decoded body."""

    def __init__(
        self,
        cluster: Cluster,
        method: str,
        params: dict[str, str],
        query: Query,
        content_type: str,
        raw: bytes,
    ) -> None:
        self.cluster = cluster
        self.method = method
        self.params = params
        self.query = query
        self.content_type = content_type.split(";")[0].strip().lower()
        self.raw = raw

    def body(self) -> Any:
        try:
            return json.loads(self.raw or b"null")
        except ValueError as exc:
            raise bad_request(f"the body is not valid JSON: {exc}") from exc

    def selector(self) -> Matcher:
        if self.query.get("watch", ["false"])[0] in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "watch is not supported by the simulator")
        try:
            return parse_selector(self.query.get("labelSelector", [""])[0])
        except SelectorError as exc:
            raise bad_request(str(exc)) from exc

    def patched(self, current: dict[str, Any]) -> dict[str, Any]:
        if self.content_type not in PATCH_TYPES:
            raise unsupported_media_type(self.content_type)
        try:
            return apply_patch(self.content_type, current, self.body())
        except PatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc


Handler = Callable[[_Call], Response]


# What RBAC reads of a request path: the API group, the namespace, the resource, its name and
# subresource (/api/v1/namespaces/x is the namespace x itself).
_ATTRIBUTES = re.compile(
    r"/(?:api/v1|apis/(?P<group>[a-z0-9.]+)/v1)(?:/namespaces/(?P<ns>[^/]+))?"
    r"(?:/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?)?"
)
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def authorize(cluster: Cluster, method: str, path: str, authorization: str) -> Response | None:
    """Authenticate the bearer token and authorise the request, as kube-apiserver answers:
    401 for an unknown token, 403 (RBAC's wording) for a user who is not one of the cluster's
    admins, including the anonymous one a request without credentials is; None when the
    request may go on. A cluster with no tokens configured
    authenticates no one (every caller is admin)."""
    if not cluster.tokens:
        return None
    scheme, _, token = authorization.partition(" ")
    if not authorization:
        user: str | None = "system:anonymous"  # kube-apiserver's default for no credentials
    else:
        user = cluster.tokens.get(token) if scheme.lower() == "bearer" else None
    if user is None:
        return 401, unauthorized().body()
    if user in cluster.admins:
        return None
    found = _ATTRIBUTES.fullmatch(path.rstrip("/"))
    if found is None:  # discovery (/version, /api): open to every authenticated user
        return None
    group, ns, resource, name, sub = (
        found[k] or "" for k in ("group", "ns", "resource", "name", "sub")
    )
    if not resource:  # /api/v1/namespaces/<name>: the namespace itself
        resource, name, ns = "namespaces", ns, ""
    verb = _VERBS.get(method, "get" if name else "list")
    return 403, forbidden(user, verb, resource, group, ns, name, sub).body()


def handle(
    cluster: Cluster, method: str, path: str, query: Query, content_type: str, raw: bytes
) -> Response:
    """Route one API request; every failure becomes a ``kind: Status`` body."""
    for pattern, verbs in _ROUTES:
        match = pattern.fullmatch(path.rstrip("/") or "/")
        if match is None:
            continue
        handler = verbs.get(method)
        call = _Call(cluster, method, match.groupdict(), query, content_type, raw)
        try:
            if handler is None:
                raise method_not_allowed()
            with cluster.lock:
                return handler(call)
        except ApiError as exc:
            return exc.code, exc.body()
    error = ApiError(404, "NotFound", "the server could not find the requested resource")
    return 404, error.body()


def _list(
    c: _Call, kind: str, api_version: str, items: list[dict[str, Any]], rv: int
) -> dict[str, Any]:
    # The items are the store's own objects, not copies (a copy of 1,000 pods costs more than
    # encoding them): the caller encodes the answer before releasing the cluster's lock.
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    limit = _limit(c)
    if limit or "continue" in c.query:
        items, meta = _page(c, items, limit, meta)
    return {"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items}


def _limit(c: _Call) -> int:
    raw = c.query.get("limit", ["0"])[0] or "0"
    try:
        return max(0, int(raw))
    except ValueError as exc:
        raise bad_request(f"limit: invalid value {raw!r}") from exc


def _key(obj: dict[str, Any]) -> list[str]:
    """An object's place in list order: the server's storage key order (namespace, name)."""
    return [obj["metadata"].get("namespace") or "", obj["metadata"]["name"]]


def _page(
    c: _Call, items: list[dict[str, Any]], limit: int, meta: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of a ``limit``/``continue`` list, as kube-apiserver pages. Unlike the real
    server, later pages see the current state rather than a snapshot at the first page's
    resourceVersion (which the token carries all the same)."""
    token = c.query.get("continue", [""])[0]
    if token:
        try:
            start = json.loads(base64.urlsafe_b64decode(token))["start"]
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_request(f"continue key is not valid: {exc}") from exc
        items = [item for item in items if _key(item) > start]
    if not limit or len(items) <= limit:
        return items, meta
    page = items[:limit]
    state = {"rv": int(meta["resourceVersion"]), "start": _key(page[-1])}
    meta["continue"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    if "labelSelector" not in c.query:  # like the server: exact only for an unfiltered list
        meta["remainingItemCount"] = len(items) - limit
    return page, meta


def _ok(obj: dict[str, Any], code: int = 200) -> Response:
    return code, copy.deepcopy(obj)


def _deleted(obj: dict[str, Any], kind: str, group: str) -> Response:
    meta = obj["metadata"]
    return 200, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": meta["name"], "group": group, "kind": kind, "uid": meta["uid"]},
    }


# --- handlers ------------------------------------------------------------------------------


def _version(c: _Call) -> Response:
    return 200, dict(VERSION)


def _api_versions(c: _Call) -> Response:
    return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def _list_nodes(c: _Call) -> Response:
    match = c.selector()
    items = [n for _, n in sorted(c.cluster.nodes.items()) if match(n["metadata"]["labels"])]
    return 200, _list(c, "NodeList", "v1", items, c.cluster.rv)


def _get_node(c: _Call) -> Response:
    node = c.cluster.nodes.get(c.params["name"])
    if node is None:
        raise not_found("nodes", "", c.params["name"])
    return _ok(node)


def _list_namespaces(c: _Call) -> Response:
    match = c.selector()
    items = [
        n
        for _, n in sorted(c.cluster.namespaces.items())
        if match(n["metadata"].get("labels") or {})
    ]
    return 200, _list(c, "NamespaceList", "v1", items, c.cluster.rv)


def _get_namespace(c: _Call) -> Response:
    namespace = c.cluster.namespaces.get(c.params["name"])
    if namespace is None:
        raise not_found("namespaces", "", c.params["name"])
    return _ok(namespace)


def _create_namespace(c: _Call) -> Response:
    body = c.body()
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return _ok(c.cluster.create_namespace(body), 201)


def _list_pods(c: _Call) -> Response:
    namespace = c.params.get("ns")
    if namespace is not None:
        c.cluster.require_namespace(namespace)
    items = c.cluster.list_pods(namespace, c.selector())
    return 200, _list(c, "PodList", "v1", items, c.cluster.rv)


def _create_pod(c: _Call) -> Response:
    """Quota admission as kube-apiserver answers it; a Pod that passes is refused next: the
    simulator runs only the pods of its Deployments."""
    namespace = c.params["ns"]
    c.cluster.require_namespace(namespace)
    body = c.body()
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        raise bad_request("the body must be a Pod object")
    name = str((body.get("metadata") or {}).get("name", ""))
    refusal = c.cluster._quota_refusal(namespace, name, pod_gpus(body))
    if refusal is not None:
        raise ApiError(403, "Forbidden", refusal, {"name": name, "kind": "pods"})
    raise ApiError(405, "MethodNotAllowed", "the simulator creates Pods only for Deployments")


def _get_pod(c: _Call) -> Response:
    return _ok(c.cluster.get_pod(c.params["ns"], c.params["name"]))


def _list_deployments(c: _Call) -> Response:
    namespace = c.params.get("ns")
    if namespace is not None:
        c.cluster.require_namespace(namespace)
    items = c.cluster.list_deployments(namespace, c.selector())
    return 200, _list(c, "DeploymentList", "apps/v1", items, c.cluster.rv)


def _create_deployment(c: _Call) -> Response:
    return _ok(c.cluster.create_deployment(c.params["ns"], c.body()), 201)


def _get_deployment(c: _Call) -> Response:
    return _ok(c.cluster.get_deployment(c.params["ns"], c.params["name"]))


def _replace_deployment(c: _Call) -> Response:
    return _ok(c.cluster.write_deployment(c.params["ns"], c.params["name"], c.body()))


def _patch_deployment(c: _Call) -> Response:
    current = c.cluster.get_deployment(c.params["ns"], c.params["name"])
    merged = c.patched(current)
    return _ok(c.cluster.write_deployment(c.params["ns"], c.params["name"], merged))


def _delete_deployment(c: _Call) -> Response:
    return _deleted(
        c.cluster.delete_deployment(c.params["ns"], c.params["name"]), "deployments", "apps"
    )


def _get_scale(c: _Call) -> Response:
    return _ok(c.cluster.scale_of(c.cluster.get_deployment(c.params["ns"], c.params["name"])))


def _write_scale(c: _Call, scale: Any) -> Response:
    namespace, name = c.params["ns"], c.params["name"]
    deployment = c.cluster.get_deployment(namespace, name)
    replicas = validate_scale(scale, name)
    Cluster.check_version(deployment, scale, "deployments", "apps")
    if replicas != deployment["spec"]["replicas"]:
        body = copy.deepcopy(deployment)
        body["metadata"].pop("resourceVersion")
        body["spec"]["replicas"] = replicas
        deployment = c.cluster.write_deployment(namespace, name, body)
    return _ok(c.cluster.scale_of(deployment))


def _replace_scale(c: _Call) -> Response:
    return _write_scale(c, c.body())


def _patch_scale(c: _Call) -> Response:
    deployment = c.cluster.get_deployment(c.params["ns"], c.params["name"])
    return _write_scale(c, c.patched(c.cluster.scale_of(deployment)))


def _list_quotas(c: _Call) -> Response:
    namespace = c.params.get("ns")
    if namespace is not None:
        c.cluster.require_namespace(namespace)
    items = c.cluster.list_quotas(namespace, c.selector())
    return 200, _list(c, "ResourceQuotaList", "v1", items, c.cluster.rv)


def _create_quota(c: _Call) -> Response:
    return _ok(c.cluster.create_quota(c.params["ns"], c.body()), 201)


def _get_quota(c: _Call) -> Response:
    return _ok(c.cluster.get_quota(c.params["ns"], c.params["name"]))


def _replace_quota(c: _Call) -> Response:
    return _ok(c.cluster.write_quota(c.params["ns"], c.params["name"], c.body()))


def _patch_quota(c: _Call) -> Response:
    current = c.cluster.get_quota(c.params["ns"], c.params["name"])
    return _ok(c.cluster.write_quota(c.params["ns"], c.params["name"], c.patched(current)))


def _delete_quota(c: _Call) -> Response:
    return _deleted(c.cluster.delete_quota(c.params["ns"], c.params["name"]), "resourcequotas", "")


_NAME = r"(?P<name>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)"
_NS = r"(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
_DEPLOYMENTS = rf"/apis/apps/v1/namespaces/{_NS}/deployments"
_QUOTAS = rf"/api/v1/namespaces/{_NS}/resourcequotas"

_TABLE: tuple[tuple[str, dict[str, Handler]], ...] = (
    ("/version", {"GET": _version}),
    ("/api", {"GET": _api_versions}),
    ("/api/v1/nodes", {"GET": _list_nodes}),
    (rf"/api/v1/nodes/{_NAME}", {"GET": _get_node}),
    ("/api/v1/namespaces", {"GET": _list_namespaces, "POST": _create_namespace}),
    (rf"/api/v1/namespaces/{_NAME}", {"GET": _get_namespace}),
    ("/api/v1/pods", {"GET": _list_pods}),
    (rf"/api/v1/namespaces/{_NS}/pods", {"GET": _list_pods, "POST": _create_pod}),
    (rf"/api/v1/namespaces/{_NS}/pods/{_NAME}", {"GET": _get_pod}),
    ("/api/v1/resourcequotas", {"GET": _list_quotas}),
    (_QUOTAS, {"GET": _list_quotas, "POST": _create_quota}),
    (
        rf"{_QUOTAS}/{_NAME}",
        {
            "GET": _get_quota,
            "PUT": _replace_quota,
            "PATCH": _patch_quota,
            "DELETE": _delete_quota,
        },
    ),
    ("/apis/apps/v1/deployments", {"GET": _list_deployments}),
    (_DEPLOYMENTS, {"GET": _list_deployments, "POST": _create_deployment}),
    (
        rf"{_DEPLOYMENTS}/{_NAME}",
        {
            "GET": _get_deployment,
            "PUT": _replace_deployment,
            "PATCH": _patch_deployment,
            "DELETE": _delete_deployment,
        },
    ),
    (
        rf"{_DEPLOYMENTS}/{_NAME}/scale",
        {"GET": _get_scale, "PUT": _replace_scale, "PATCH": _patch_scale},
    ),
)
_ROUTES = [(re.compile(pattern), verbs) for pattern, verbs in _TABLE]
