"""The live streams: ``/ws/fleet/`` (everything the user may see), ``/ws/tenants/<slug>/``
(one tenant and its teams) and ``/ws/workloads/<id>/`` (one workload).

Thin on purpose: authenticate (session), check tenant access through the choke points, join
the process's poller, push. The Origin is checked before we get here
(``AllowedHostsOriginValidator`` in controlplane/asgi.py). We accept and then close with our
own code, so the browser sees why (4401: log in; 4404: no such workload or not yours, the same
answer for both so ids cannot be probed) and stops reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from controlplane.metrics import WEBSOCKETS
from dashboard.poller import Poller, Subscription, get_poller, layer_fanout
from scaling.models import Workload
from tenants.models import Tenant

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 4503


def visible_tenants(user: Any) -> frozenset[int] | None:
    """Tenant ids the user may see, None meaning all (staff)."""
    if user.is_staff and user.is_active:
        return None
    return frozenset(Tenant.objects.for_user(user).values_list("pk", flat=True))


def tenant_scope(user: Any, slug: str) -> frozenset[int] | None:
    """The tenant and its teams, as far as the user may see them (the tenant page's scope);
    None when the tenant is not there or not the user's."""
    visible = Tenant.objects.for_user(user)
    found = visible.filter(slug=slug).values_list("pk", flat=True).first()
    if found is None:
        return None
    teams = visible.filter(parent_id=found).values_list("pk", flat=True)
    return frozenset({found, *teams})


def workload_tenant(user: Any, workload_id: int) -> int | None:
    found = Workload.objects.for_user(user).filter(pk=workload_id)
    return found.values_list("tenant_id", flat=True).first()


class LiveConsumer(AsyncWebsocketConsumer):
    stream = ""  # the label of controlplane_websocket_connections
    sub: Subscription | None = None
    pump: asyncio.Task[None] | None = None
    poller: Poller | None = None

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        sub = await self.subscription(user)
        if sub is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.join(sub)

    async def subscription(self, user: Any) -> Subscription | None:
        raise NotImplementedError

    async def join(self, sub: Subscription) -> None:
        self.sub, self.poller = sub, get_poller()
        sub.channel_name = self.channel_name
        self.poller.subscribe(sub)
        try:
            # The first socket starts the poller: wait for its first read for the snapshot.
            await asyncio.wait_for(self.poller.ready.wait(), timeout=10)
        except TimeoutError:
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        if layer_fanout():
            assert self.channel_layer is not None
            await self.channel_layer.group_add(sub.group, self.channel_name)
        # Frames queued before the snapshot are older than it; those queued while it is
        # being sent are newer and follow it.
        snapshot = self.poller.snapshot(sub)
        sub.queue.clear()
        await self.send(text_data=snapshot)
        self.pump = asyncio.create_task(self.forward(sub))
        WEBSOCKETS.labels(self.stream).inc()

    async def forward(self, sub: Subscription) -> None:
        while True:
            await self.send(text_data=await sub.next_frame())

    async def dash_frame(self, event: dict[str, Any]) -> None:
        """A frame through the channel layer (DASHBOARD_FANOUT = "layer")."""
        await self.send(text_data=event["text"])

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            WEBSOCKETS.labels(self.stream).dec()
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump
        if self.sub is not None and self.poller is not None:
            self.poller.unsubscribe(self.sub)
            if self.channel_layer is not None and layer_fanout():
                await self.channel_layer.group_discard(self.sub.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return  # the streams are one-way; edits go through the HTTP form


class FleetConsumer(LiveConsumer):
    stream = "fleet"

    async def subscription(self, user: Any) -> Subscription | None:
        visible = await database_sync_to_async(visible_tenants)(user)
        return Subscription(workload_id=None, visible=visible)


class TenantConsumer(LiveConsumer):
    """The fleet stream narrowed to one tenant's scope: its frames carry that scope's
    workloads, usage and decisions, the same audience key as a fleet page seeing just those."""

    stream = "tenant"

    async def subscription(self, user: Any) -> Subscription | None:
        slug = str(self.scope["url_route"]["kwargs"]["slug"])
        scope = await database_sync_to_async(tenant_scope)(user, slug)
        if scope is None:
            return None
        return Subscription(workload_id=None, visible=scope)


class WorkloadConsumer(LiveConsumer):
    stream = "workload"

    async def subscription(self, user: Any) -> Subscription | None:
        workload_id = int(self.scope["url_route"]["kwargs"]["workload_id"])
        tenant_id = await database_sync_to_async(workload_tenant)(user, workload_id)
        if tenant_id is None:
            return None
        return Subscription(workload_id=workload_id, visible=frozenset({tenant_id}))
