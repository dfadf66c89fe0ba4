"""Token authentication that stops a client IP guessing tokens.

After ``API_AUTH_FAILURE_LIMIT`` bad tokens from one client IP within
``API_AUTH_FAILURE_WINDOW_S`` seconds, every request from that IP that presents a token answers
429 with ``Retry-After`` for that many seconds, without the token being looked up: a valid
token too, or a guess that succeeds would still be told so. Other IPs, and session requests
from the same IP, are unaffected. The counts live in Django's cache (Redis with
``REDIS_URL``/``CACHE_URL``, so all server processes share them).
"""

import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle


class TokenGuessing:
    """The bad-token count of one client IP, and its block once over the limit."""

    def __init__(self, client_ip: str) -> None:
        self.failures_key = f"api-auth-failures:{client_ip}"
        self.blocked_key = f"api-auth-blocked:{client_ip}"

    def wait_s(self) -> int:
        """Seconds until the IP may present tokens again; 0 when it may now."""
        until: float | None = cache.get(self.blocked_key)
        return max(0, math.ceil(until - time.time())) if until else 0

    def record_failure(self) -> None:
        window = settings.API_AUTH_FAILURE_WINDOW_S
        # add() starts the window with the first failure; incr() is atomic in Redis.
        cache.add(self.failures_key, 0, timeout=math.ceil(window))
        try:
            failures = cache.incr(self.failures_key)
        except ValueError:  # the window expired between add() and incr()
            cache.set(self.failures_key, failures := 1, timeout=math.ceil(window))
        if failures >= settings.API_AUTH_FAILURE_LIMIT:
            cache.set(self.blocked_key, time.time() + window, timeout=math.ceil(window))
            cache.delete(self.failures_key)


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, refusing IPs that guess (see the module)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        if not get_authorization_header(request).split():
            return None  # no credentials presented: nothing to guess
        guessing = TokenGuessing(str(BaseThrottle().get_ident(request)))
        if wait := guessing.wait_s():
            # DRF adds "Expected available in N seconds." and the Retry-After header.
            raise Throttled(
                wait=wait, detail="Too many failed token authentications from your address."
            )
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            guessing.record_failure()
            raise
