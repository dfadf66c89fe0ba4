"""WebSocket routes: the live streams of the dashboard (DESIGN.md section 3)."""

from django.urls import URLPattern, path

from dashboard.consumers import FleetConsumer, TenantConsumer, WorkloadConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/fleet/", FleetConsumer.as_asgi()),
    path("ws/tenants/<slug:slug>/", TenantConsumer.as_asgi()),
    path("ws/workloads/<int:workload_id>/", WorkloadConsumer.as_asgi()),
]
