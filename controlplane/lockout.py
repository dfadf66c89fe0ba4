"""Browser login lockout (django-axes): who is locked out, and the page they see.

Axes applies one failure limit to every lockout parameter. We want two: a (username, client
IP) pair is locked after ``LOGIN_FAILURE_LIMIT`` failures (guessing one user's password), and a
client IP after ``LOGIN_IP_FAILURE_LIMIT`` failures over any usernames (spraying one password
over many users). A username alone is never locked: anyone could then lock a victim out from
everywhere by failing on purpose.

Attempts live in the database (axes' AccessAttempt, AccessFailureLog and AccessLog, shown in
the admin), so every web server process sees the same counts.
"""

import math
from datetime import timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

LOCKOUT_TEMPLATE = "registration/lockout.html"


def _failures(attempts: QuerySet[Any]) -> int:
    return int(attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0)


class LoginLockoutHandler(AxesDatabaseHandler):
    """Axes' database handler with a limit of its own for the client-IP-wide count."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """Failures of this username from this IP; the per-user limit itself once the IP as a
        whole is over its own, larger limit (axes compares the result with AXES_FAILURE_LIMIT).
        The attempt groups come in the order of AXES_LOCKOUT_PARAMETERS: pair, then IP."""
        pair, client_ip = self.get_user_attempts(request, credentials)
        failures = _failures(pair)
        if _failures(client_ip) >= settings.LOGIN_IP_FAILURE_LIMIT:
            return max(failures, settings.AXES_FAILURE_LIMIT)
        return failures

    def reset_user_attempts(
        self, request: HttpRequest, credentials: dict[str, Any] | None = None
    ) -> int:
        """After a successful login, forget only that user's failures from that IP. Axes would
        also drop the IP-wide group, which lets a sprayer reset its count by logging in to an
        account of its own between guesses."""
        pair = self.get_user_attempts(request, credentials)[0]
        count, _ = pair.delete()
        return int(count)


def lockout_response(request: HttpRequest, *args: Any) -> HttpResponse:
    """The page a locked-out login gets (status AXES_HTTP_RESPONSE_CODE, 429), saying when to
    come back. Axes' async middleware passes its arguments in another order than the sync one,
    so the credentials are read from the request, where axes always leaves them."""
    cool_off: timedelta | None = get_cool_off(request)
    # Every failed attempt during the lockout restarts the cool-off (axes'
    # AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so it runs from now.
    seconds = math.ceil(cool_off.total_seconds()) if cool_off else None
    context = {
        "retry_after_s": seconds,
        "retry_after_minutes": math.ceil(seconds / 60) if seconds else None,
        "retry_at": timezone.now() + cool_off if cool_off else None,
        "admin": request.path.startswith("/admin/"),
    }
    response = render(request, LOCKOUT_TEMPLATE, context, status=settings.AXES_HTTP_RESPONSE_CODE)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
