"""Settings modes, checked in fresh processes (settings are read once per process)."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "SECRET_KEY": "x7!" + "k" * 20 + "".join(chr(65 + i) for i in range(26)) + "q9#z",
    "CREDENTIAL_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "gpu.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def run_manage(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "DJANGO_DEBUG",
            "SECRET_KEY",
            "CREDENTIAL_KEYS",
            "ALLOWED_HOSTS",
        }
    }
    clean.update(env, VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_shell(tmp_path: Path, env: dict[str, str], code: str) -> str:
    result = run_manage(tmp_path, env, "shell", "--no-imports", "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_production_mode_passes_check_deploy(tmp_path):
    result = run_manage(tmp_path, PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_secrets_is_reported_by_id(tmp_path):
    env = {"DJANGO_DEBUG": "0", "ALLOWED_HOSTS": "gpu.example.com"}
    result = run_manage(tmp_path, env, "check")
    assert result.returncode != 0
    assert "controlplane.E010" in result.stderr
    assert "controlplane.E011" in result.stderr


def test_unreadable_variables_are_reported_by_id(tmp_path):
    result = run_manage(
        tmp_path, {"DJANGO_DEBUG": "maybe", "CONTROL_LOOP_INTERVAL": "nan"}, "check"
    )
    assert result.returncode != 0
    assert "controlplane.E001" in result.stderr and "DJANGO_DEBUG" in result.stderr
    assert "controlplane.E002" in result.stderr and "CONTROL_LOOP_INTERVAL" in result.stderr


def test_no_variables_means_local_mode(tmp_path):
    out = run_shell(
        tmp_path,
        {},
        (
            "from django.conf import settings as s;"
            "print(s.DEBUG, s.DATABASES['default']['ENGINE'],"
            " s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_BROKER_URL, bool(s.SECRET_KEY))"
        ),
    )
    assert out == (
        "True django.db.backends.sqlite3 channels.layers.InMemoryChannelLayer filesystem:// True"
    )
    # The generated secret key is kept, so sessions survive a restart.
    assert (tmp_path / "secret_key").read_text() == (tmp_path / "secret_key").read_text()
    again = run_shell(tmp_path, {}, "from django.conf import settings as s; print(s.SECRET_KEY)")
    assert again == (tmp_path / "secret_key").read_text().strip()


def test_service_urls_select_postgres_and_redis(tmp_path):
    env = {"DATABASE_URL": PRODUCTION["DATABASE_URL"], "REDIS_URL": PRODUCTION["REDIS_URL"]}
    out = run_shell(
        tmp_path,
        env,
        (
            "from django.conf import settings as s;"
            "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'],"
            " s.CELERY_BROKER_URL)"
        ),
    )
    assert out == (
        "django.db.backends.postgresql channels_redis.core.RedisChannelLayer "
        "redis://127.0.0.1:6379/0"
    )
