"""Browser login lockout (django-axes, controlplane/lockout.py): a (username, IP) pair after
LOGIN_FAILURE_LIMIT failures, a client IP after LOGIN_IP_FAILURE_LIMIT, until the cool-off ends;
the same for the admin's login; every failure and lockout visible in the admin."""

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"  # tests/conftest.py make_user
ATTACKER, OTHER = "10.2.0.1", "10.2.0.2"


@pytest.fixture(autouse=True)
def _fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(
    client: Client, username: str, password: str, ip: str, path: str = "/accounts/login/"
) -> Any:
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def fail(client: Client, username: str, times: int, ip: str = ATTACKER, **kw: Any) -> list[int]:
    return [log_in(client, username, "wrong", ip, **kw).status_code for _ in range(times)]


def test_a_username_is_locked_from_one_ip_after_the_limit(make_user: Any) -> None:
    make_user("vera")
    make_user("bob")
    limit = django_settings.LOGIN_FAILURE_LIMIT
    assert limit == 5  # the documented default
    # The failure that reaches the limit already answers with the lockout page.
    assert fail(Client(), "vera", limit) == [200] * (limit - 1) + [429]

    refused = log_in(Client(), "vera", PASSWORD, ATTACKER)
    assert refused.status_code == 429 and not logged_in(refused)
    assert refused["Retry-After"] == str(int(django_settings.LOGIN_COOLOFF_S))
    page = refused.content.decode()
    assert "Too many failed logins" in page and "Try again in 15 minutes" in page

    # Per (username, IP): the same user from elsewhere, and another user from here, log in.
    assert logged_in(log_in(Client(), "vera", PASSWORD, OTHER))
    assert logged_in(log_in(Client(), "bob", PASSWORD, ATTACKER))


def test_the_right_password_works_again_after_the_cool_off(make_user: Any) -> None:
    from axes.models import AccessAttempt

    make_user("vera")
    fail(Client(), "vera", django_settings.LOGIN_FAILURE_LIMIT)
    assert log_in(Client(), "vera", PASSWORD, ATTACKER).status_code == 429
    # Each attempt during the lockout restarted the cool-off; let all of it pass.
    AccessAttempt.objects.update(
        attempt_time=dt.datetime.now(dt.UTC)
        - dt.timedelta(seconds=django_settings.LOGIN_COOLOFF_S + 1)
    )
    assert logged_in(log_in(Client(), "vera", PASSWORD, ATTACKER))


def test_a_client_ip_is_locked_after_failures_over_many_usernames(make_user: Any) -> None:
    make_user("vera")
    limit = django_settings.LOGIN_IP_FAILURE_LIMIT
    assert limit == 50  # the documented default
    client = Client()
    # One guess per username: no pair reaches its limit, the IP as a whole does.
    statuses = [log_in(client, f"user{n}", "wrong", ATTACKER).status_code for n in range(limit)]
    assert statuses == [200] * (limit - 1) + [429]
    assert log_in(Client(), "vera", PASSWORD, ATTACKER).status_code == 429
    assert logged_in(log_in(Client(), "vera", PASSWORD, OTHER))


def test_a_login_clears_only_its_own_failures(make_user: Any, settings: Any) -> None:
    from axes.models import AccessAttempt

    settings.LOGIN_IP_FAILURE_LIMIT = 8
    make_user("mallory")
    make_user("vera")
    assert fail(Client(), "vera", 4) == [200] * 4
    assert fail(Client(), "mallory", 3) == [200] * 3  # 7 from this IP
    assert logged_in(log_in(Client(), "mallory", PASSWORD, ATTACKER))
    # mallory's own failures are forgiven (4 left from this IP), vera's are not: a sprayer
    # with an account of its own cannot reset the IP-wide count by logging in.
    assert not AccessAttempt.objects.filter(username="mallory").exists()
    assert AccessAttempt.objects.get(username="vera").failures_since_start == 4
    assert [fail(Client(), name, 1)[0] for name in ("bob", "carol", "dave", "erin")] == [
        200,
        200,
        200,
        429,
    ]


def test_the_admin_login_is_covered(make_user: Any) -> None:
    make_user("root", staff=True)
    limit = django_settings.LOGIN_FAILURE_LIMIT
    assert fail(Client(), "root", limit, path="/admin/login/") == [200] * (limit - 1) + [429]
    refused = log_in(Client(), "root", PASSWORD, ATTACKER, path="/admin/login/")
    assert refused.status_code == 429 and not logged_in(refused)
    assert "on the admin site" in refused.content.decode()
    # The lockout is per (username, IP), whichever login page counted the failures.
    assert log_in(Client(), "root", PASSWORD, ATTACKER).status_code == 429


def test_failures_and_lockouts_are_logged_and_shown_in_the_admin(
    make_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    make_user("vera")
    with caplog.at_level(logging.WARNING, logger="axes"):
        fail(Client(), "vera", django_settings.LOGIN_FAILURE_LIMIT)
    assert any("Locking out" in r.getMessage() for r in caplog.records)

    admin = Client()
    admin.force_login(make_user("root", staff=True))
    attempts = admin.get("/admin/axes/accessattempt/?locked_out=yes")
    assert attempts.status_code == 200
    assert "vera" in attempts.content.decode() and ATTACKER in attempts.content.decode()
    failures = admin.get("/admin/axes/accessfailurelog/")
    assert failures.status_code == 200 and "vera" in failures.content.decode()
    from axes.models import AccessFailureLog

    assert AccessFailureLog.objects.filter(username="vera", locked_out=True).count() == 1
    # The admin lifts the lock by deleting the attempt; vera logs in again at once.
    from axes.models import AccessAttempt

    AccessAttempt.objects.filter(username="vera").delete()
    assert logged_in(log_in(Client(), "vera", PASSWORD, ATTACKER))


def test_an_ip_limit_below_the_user_limit_is_reported(settings: Any) -> None:
    from controlplane.checks import check_environment

    settings.LOGIN_IP_FAILURE_LIMIT = 3
    assert "controlplane.E005" in [m.id for m in check_environment(None)]
    settings.LOGIN_IP_FAILURE_LIMIT = 50
    assert "controlplane.E005" not in [m.id for m in check_environment(None)]


@pytest.mark.django_db(transaction=True)
async def test_the_lockout_page_under_asgi(make_user: Any, async_client: Any) -> None:
    """The web server runs Django under ASGI, where axes' middleware takes its async path."""
    from asgiref.sync import sync_to_async

    await sync_to_async(make_user)("vera")
    body = {"username": "vera", "password": "wrong"}
    statuses = [
        (await async_client.post("/accounts/login/", body, REMOTE_ADDR=ATTACKER)).status_code
        for _ in range(django_settings.LOGIN_FAILURE_LIMIT)
    ]
    assert statuses[-1] == 429
    body["password"] = PASSWORD
    refused = await async_client.post("/accounts/login/", body, REMOTE_ADDR=ATTACKER)
    assert refused.status_code == 429 and "Try again in 15 minutes" in refused.content.decode()
    assert refused["Retry-After"] == str(int(django_settings.LOGIN_COOLOFF_S))


def test_the_lockout_and_cache_variables_are_read_and_checked(tmp_path: Path) -> None:
    from tests.controlplane.test_settings import run_manage, run_shell

    env = {"LOGIN_COOLOFF_S": "60", "LOGIN_FAILURE_LIMIT": "3", "REDIS_URL": "redis://r:6379/0"}
    out = run_shell(
        tmp_path,
        env,
        "from django.conf import settings as s; print(s.AXES_COOLOFF_TIME.total_seconds(),"
        " s.AXES_FAILURE_LIMIT, s.CACHES['default']['BACKEND'], s.CACHES['default']['LOCATION'])",
    )
    assert out == "60.0 3 django.core.cache.backends.redis.RedisCache redis://r:6379/0"
    bad = run_manage(tmp_path, {"LOGIN_COOLOFF_S": "soon", "LOGIN_IP_FAILURE_LIMIT": "2"}, "check")
    assert bad.returncode != 0
    assert "controlplane.E002" in bad.stderr and "LOGIN_COOLOFF_S" in bad.stderr
    assert "controlplane.E005" in bad.stderr


def test_login_records_older_than_the_retention_are_pruned(make_user: Any, settings: Any) -> None:
    from axes.models import AccessFailureLog, AccessLog
    from django.utils import timezone

    from controlplane.tasks import prune_login_records

    make_user("carol")
    fail(Client(), "carol", 2)
    log_in(Client(), "carol", PASSWORD, OTHER)
    assert AccessFailureLog.objects.count() == 2 and AccessLog.objects.count() == 1
    old = timezone.now() - dt.timedelta(days=settings.DECISION_RETENTION_DAYS + 1)
    AccessFailureLog.objects.filter(pk=AccessFailureLog.objects.earliest("pk").pk).update(
        attempt_time=old
    )
    assert prune_login_records() == 1
    assert AccessFailureLog.objects.count() == 1 and AccessLog.objects.count() == 1
