"""Per-user (per-token) request throttling with the rate read from settings at request time.

Reading ``settings.API_THROTTLE_RATE`` on every request (DRF reads its rates once, at import)
lets tests and operators change it without reloading modules. ``None`` turns throttling off.
The counters live in Django's default cache: Redis with REDIS_URL or CACHE_URL (shared by
every process), otherwise per process. Failed token authentication is refused per client IP
before this runs: api/authentication.py.
"""

from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.views import APIView


class UserRateThrottle(SimpleRateThrottle):
    scope = "api"

    def get_rate(self) -> str | None:
        rate: str | None = getattr(settings, "API_THROTTLE_RATE", None)
        return rate or None

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        user: Any = request.user
        ident = str(user.pk) if user and user.is_authenticated else f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
