"""WebSocket routes (the live streams arrive with the dashboard issue)."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
