"""The live streams through the real ASGI stack (Origin check, session auth, routing) with the
poller reading a real simulator subprocess."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

from controlplane.asgi import application

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FLEET = {
    "clusters": [
        {
            "name": "east",
            "nodes": [
                {"gpu_type": "A100-80GB", "count": 1, "gpus_per_node": 4, "name_prefix": "a100"}
            ],
            "namespaces": ["team-a", "team-b"],
            "workloads": [
                {
                    "namespace": namespace,
                    "name": "chat",
                    "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "gpu_type": "A100-80GB",
                    "replicas": 1,
                    "cold_start_s": 0.2,
                    "load": {"kind": "constant", "rate_rps": 3.0},
                }
                for namespace in ("team-a", "team-b")
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def sim_url(start_module_simulator: Any) -> str:
    return str(start_module_simulator(FLEET))


@pytest.fixture(scope="module", autouse=True)
def close_consumer_connections() -> Iterator[None]:
    """Consumers read the database in asgiref's one shared sync thread, whose connection
    outlives the tests: close it, or the test database cannot be dropped at the end."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(autouse=True)
def fast_ticks(settings: Any) -> None:
    settings.DASHBOARD_TICK_S = 0.2
    settings.DASHBOARD_STALE_AFTER_S = 0.5
    settings.DASHBOARD_FANOUT = "local"


@pytest.fixture
def fleet(sim_url, team_a, team_b, gpu_type, make_workload, make_user) -> dict[str, Any]:
    from clusters.models import Cluster

    cluster = Cluster.objects.create(
        name="east",
        api_url=f"{sim_url}/east",
        metrics_source="exporter",
        metrics_url=f"{sim_url}/east/metrics",
    )
    return {
        "cluster": cluster,
        "a": make_workload(team_a, cluster, gpu_type, "chat"),
        "b": make_workload(team_b, cluster, gpu_type, "chat"),
        "alice": make_user("alice", team_a),
        "bob": make_user("bob", team_b),
    }


def session_cookie(user: Any) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return f"{django_settings.SESSION_COOKIE_NAME}={store.session_key}"


async def open_stream(path: str, user: Any = None, origin: str = "http://testserver") -> Any:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if user is not None:
        cookie = await database_sync_to_async(session_cookie)(user)
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    return communicator, connected


async def frames_until(communicator: Any, wanted: Any, limit: int = 60) -> list[dict]:
    seen = []
    for _ in range(limit):
        frame = json.loads(await communicator.receive_from(timeout=10))
        seen.append(frame)
        if wanted(frame):
            return seen
    raise AssertionError(f"no wanted frame in {len(seen)}: {[f['type'] for f in seen]}")


async def close_code(communicator: Any) -> int:
    message = await communicator.receive_output(timeout=10)
    assert message["type"] == "websocket.close"
    return int(message["code"])


def sockets_on_metrics(stream: str) -> float:
    """controlplane_websocket_connections{stream=...} as /metrics shows it."""
    from django.test import Client

    text = Client().get("/metrics").content.decode()
    line = f'controlplane_websocket_connections{{stream="{stream}"}} '
    values = [float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)]
    return values[0] if values else 0.0


async def test_metrics_count_the_sockets_receiving_frames(fleet):
    count = database_sync_to_async(sockets_on_metrics)
    before = await count("workload")
    communicator, _ = await open_stream(f"/ws/workloads/{fleet['a'].pk}/", fleet["alice"])
    assert json.loads(await communicator.receive_from(timeout=10))["type"] == "snapshot"
    refused, _ = await open_stream(f"/ws/workloads/{fleet['b'].pk}/", fleet["alice"])
    assert await close_code(refused) == 4404
    assert await count("workload") == before + 1  # the refused socket never counted
    await communicator.disconnect()
    assert await count("workload") == before


async def test_anonymous_socket_is_closed_with_4401(fleet):
    communicator, connected = await open_stream("/ws/fleet/")
    assert connected
    assert await close_code(communicator) == 4401


async def test_foreign_origin_is_refused(fleet):
    _, connected = await open_stream("/ws/fleet/", fleet["alice"], "http://evil.test")
    assert not connected


async def test_a_workload_of_another_tenant_looks_like_a_missing_one(fleet):
    for path in (f"/ws/workloads/{fleet['b'].pk}/", "/ws/workloads/999999/"):
        communicator, connected = await open_stream(path, fleet["alice"])
        assert connected
        assert await close_code(communicator) == 4404


async def test_workload_stream_sends_a_snapshot_then_deltas_with_live_values(fleet):
    communicator, _ = await open_stream(f"/ws/workloads/{fleet['a'].pk}/", fleet["alice"])
    first = json.loads(await communicator.receive_from(timeout=10))
    assert first["type"] == "snapshot"
    assert first["workload"] == fleet["a"].pk
    frames = await frames_until(
        communicator,
        lambda f: f["type"] == "delta" and f["values"].get("metric") is not None,
    )
    delta = frames[-1]
    assert {f["type"] for f in frames} <= {"delta"}
    assert delta["policy"]["target"] == 8
    assert delta["policy"]["upper"] == pytest.approx(8.8)  # hpa's documented 10 % tolerance
    assert delta["values"]["ready"] >= 1
    assert all(pod.startswith("chat-") for pod in delta["values"]["gpu_util"])
    assert delta["sent_at"] >= delta["t"]
    await communicator.disconnect()


async def test_tenants_see_only_their_own_workloads_gpus_and_decisions(fleet):
    alice, _ = await open_stream("/ws/fleet/", fleet["alice"])
    bob, _ = await open_stream("/ws/fleet/", fleet["bob"])
    for communicator, mine in (
        (alice, fleet["a"]),
        (bob, fleet["b"]),
    ):
        frames = await frames_until(
            communicator, lambda f: f["type"] == "delta" and any(f["workload"])
        )
        delta = frames[-1]
        assert [w["id"] for w in delta["workloads"]] == [mine.pk]
        assert set(delta["workload"]) - {None} == {mine.pk}
        hidden = [i for i, state in enumerate(delta["state"]) if state == "other"]
        assert hidden and all(delta["util"][i] is None for i in hidden)
        assert all(delta["memory_mib"][i] is None for i in hidden)
    await database_sync_to_async(record_decision)(fleet["b"])
    got = await frames_until(bob, lambda f: f["type"] == "decision")
    assert got[-1]["decision"]["workload"] == fleet["b"].pk
    # Alice's next frames (a few ticks' worth) never mention Bob's decision.
    for _ in range(6):
        frame = json.loads(await alice.receive_from(timeout=10))
        assert frame["type"] != "decision"
        assert fleet["b"].pk not in [w["id"] for w in frame.get("workloads", [])]
        assert fleet["b"].pk not in frame.get("workload", [])
    await alice.disconnect()
    await bob.disconnect()


def record_decision(workload: Any) -> None:
    from django.utils import timezone

    from scaling.models import Decision

    Decision.objects.create(
        workload=workload,
        policy=workload.policy,
        policy_version=workload.policy.version,
        at=timezone.now(),
        algorithm="hpa",
        current_replicas=1,
        raw_desired_replicas=2,
        final_replicas=2,
        steps=[{"name": "raw", "value": 2, "note": "load above target"}],
        outcome="applied",
        reason="Queue above target: scaled 1 to 2.",
    )


async def test_many_sockets_share_one_metrics_read_per_tick(fleet):
    from dashboard.poller import get_poller

    sockets = [(await open_stream("/ws/fleet/", fleet["alice"]))[0] for _ in range(5)]
    sockets.append((await open_stream(f"/ws/workloads/{fleet['a'].pk}/", fleet["alice"]))[0])
    poller = get_poller()
    reads, started = poller.reads, time.monotonic()
    await asyncio.sleep(1.0)
    ticks = (time.monotonic() - started) / 0.2
    assert poller.reads - reads <= ticks + 1  # one cluster: one read per tick, not per socket
    for communicator in sockets:
        await communicator.disconnect()
    await asyncio.sleep(0.3)
    assert poller.task is None  # the last socket left: the poller stopped reading


async def test_a_silent_metrics_source_turns_stale_never_zero(fleet, sim_url):
    communicator, _ = await open_stream(f"/ws/workloads/{fleet['a'].pk}/", fleet["alice"])
    await frames_until(
        communicator, lambda f: f["type"] == "delta" and f["values"].get("metric") is not None
    )
    await asyncio.to_thread(set_fault, sim_url, {"cluster": "east", "metrics_down": True})
    try:
        frames = await frames_until(communicator, lambda f: f["type"] == "stale")
        assert "metric" in frames[-1]["series"] and "ready" in frames[-1]["series"]
        delta = (await frames_until(communicator, lambda f: f["type"] == "delta"))[-1]
        assert delta["values"]["metric"] is None and delta["values"]["ready"] is None
        assert "metric" in delta["stale"]
    finally:
        await asyncio.to_thread(set_fault, sim_url, None)
    await frames_until(
        communicator, lambda f: f["type"] == "delta" and f["values"].get("metric") is not None
    )
    await communicator.disconnect()


def set_fault(sim_url: str, body: dict | None) -> None:
    data = json.dumps(body).encode() if body else None
    method = "POST" if body else "DELETE"
    request = urllib.request.Request(
        f"{sim_url}/_faults", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=5).read()


async def test_fleet_snapshot_carries_the_layout_and_deltas_only_the_columns(fleet):
    communicator, _ = await open_stream("/ws/fleet/", fleet["alice"])
    snapshot = json.loads(await communicator.receive_from(timeout=10))
    assert snapshot["type"] == "snapshot"
    assert len(snapshot["layout"]) == len(snapshot["util"]) == 4  # the simulated node's GPUs
    delta = (await frames_until(communicator, lambda f: f["type"] == "delta"))[-1]
    assert "layout" not in delta and delta["layout_id"] == snapshot["layout_id"]
    assert len(delta["util"]) == 4
    await communicator.disconnect()


async def test_channel_layer_fanout_delivers_the_same_frames(fleet, settings):
    settings.DASHBOARD_FANOUT = "layer"
    communicator, _ = await open_stream(f"/ws/workloads/{fleet['a'].pk}/", fleet["alice"])
    assert json.loads(await communicator.receive_from(timeout=10))["type"] == "snapshot"
    frames = await frames_until(communicator, lambda f: f["type"] == "delta")
    assert frames[-1]["workload"] == fleet["a"].pk
    await communicator.disconnect()


def test_a_slow_socket_keeps_only_its_newest_frames(settings):
    from dashboard.poller import Subscription

    settings.DASHBOARD_SOCKET_QUEUE = 3
    sub = Subscription(workload_id=None, visible=None)  # the bound is read at connect
    settings.DASHBOARD_SOCKET_QUEUE = 100
    for i in range(10):
        sub.offer(f"frame {i}")
    assert list(sub.queue) == ["frame 7", "frame 8", "frame 9"] and sub.dropped == 7


async def test_tenant_stream_carries_that_tenants_workloads_live(fleet):
    slug = fleet["a"].tenant.slug
    communicator, _ = await open_stream(f"/ws/tenants/{slug}/", fleet["alice"])
    assert json.loads(await communicator.receive_from(timeout=10))["type"] == "snapshot"
    frames = await frames_until(
        communicator,
        lambda f: f["type"] == "delta" and any(w["ready"] is not None for w in f["workloads"]),
    )
    assert [w["id"] for w in frames[-1]["workloads"]] == [fleet["a"].pk]
    await communicator.disconnect()


async def test_another_tenants_stream_looks_like_a_missing_one(fleet):
    for slug in (fleet["b"].tenant.slug, "no-such-tenant"):
        communicator, connected = await open_stream(f"/ws/tenants/{slug}/", fleet["alice"])
        assert connected
        assert await close_code(communicator) == 4404
