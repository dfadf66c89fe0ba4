"""Housekeeping of the control plane's own records."""

from celery import shared_task
from django.conf import settings

from controlplane.lockout import LoginLockoutHandler


@shared_task(ignore_result=True)
def prune_login_records() -> int:
    """Delete login records (axes' access and failure logs) older than
    DECISION_RETENTION_DAYS: a flood of guesses under ever new usernames must not grow the
    tables for ever. Active lockouts (AccessAttempt) expire with their cool-off."""
    handler = LoginLockoutHandler()
    days = settings.DECISION_RETENTION_DAYS
    return handler.reset_logs(age_days=days) + handler.reset_failure_logs(age_days=days)
