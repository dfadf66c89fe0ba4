"""System checks for the environment-driven settings, each with its own id.

controlplane.E001/E002/E003: a variable could not be read (reported from settings).
controlplane.E004: DASHBOARD_FANOUT is neither local nor layer.
controlplane.E005: LOGIN_IP_FAILURE_LIMIT below LOGIN_FAILURE_LIMIT (the IP-wide lockout would
  come before the per-user one it is meant to back up).
controlplane.E010: production without SECRET_KEY (reported from settings).
controlplane.E011: CREDENTIAL_KEYS missing or not valid Fernet keys (reported from settings).
controlplane.W020: production on SQLite (one machine only, no concurrent writers).
controlplane.W021: production without REDIS_URL (no fan-out across ASGI processes).
controlplane.E022: the filesystem broker's folders cannot be created.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.compatibility)
def check_environment(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = [Error(msg, id=cid) for cid, msg in settings.SETTINGS_PROBLEMS]
    production = settings.PRODUCTION
    engine = settings.DATABASES["default"].get("ENGINE", "")
    if production and engine.endswith("sqlite3"):
        messages.append(
            Warning(
                "Production mode on SQLite.",
                hint="Set DATABASE_URL=postgres://...",
                id="controlplane.W020",
            )
        )
    if production and not settings.REDIS_URL:
        messages.append(
            Warning(
                "Production mode without Redis: live streams reach only one ASGI process.",
                hint="Set REDIS_URL=redis://...",
                id="controlplane.W021",
            )
        )
    if settings.LOGIN_IP_FAILURE_LIMIT < settings.LOGIN_FAILURE_LIMIT:
        messages.append(
            Error(
                f"LOGIN_IP_FAILURE_LIMIT={settings.LOGIN_IP_FAILURE_LIMIT} is below "
                f"LOGIN_FAILURE_LIMIT={settings.LOGIN_FAILURE_LIMIT}.",
                hint="Failures per client IP count over every username: set it higher.",
                id="controlplane.E005",
            )
        )
    if not settings.REDIS_URL:
        messages += _check_broker_folders()
    return messages


def _check_broker_folders() -> list[CheckMessage]:
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    for key in ("data_folder_in", "control_folder"):
        try:
            Path(options[key]).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return [
                Error(
                    f"Cannot create the Celery broker folder {options[key]}: {exc}",
                    id="controlplane.E022",
                )
            ]
    return []
