"""Settings for the GPU control plane: one file, driven by environment variables.

With no variables set, everything runs on one machine with no services: a SQLite file, an
in-memory channel layer, Celery over kombu's filesystem transport (works across processes on one
machine), DEBUG on, and generated keys kept under ``var/``.

Variables (all optional in development; see README "Configuration"):

- ``DJANGO_DEBUG``: ``0`` turns production mode on (DEBUG off, HTTPS-only cookies, HSTS).
- ``SECRET_KEY``: required in production.
- ``CREDENTIAL_KEYS``: comma-separated Fernet keys encrypting stored cluster credentials; the
  first encrypts, all decrypt (rotation). Required in production.
- ``DATABASE_URL``: ``postgres://user:pass@host:5432/name`` selects PostgreSQL.
- ``DATABASE_POOL``: PostgreSQL connections pooled per process (the web server's default is 10,
  set in ``controlplane/asgi.py``; 0, one persistent connection per thread, elsewhere).
- ``REDIS_URL``: ``redis://host:6379/0`` selects the Redis channel layer and Celery broker.
- ``ALLOWED_HOSTS``, ``CSRF_TRUSTED_ORIGINS``: comma-separated.
- ``SECURE_SSL_REDIRECT`` (default on in production), ``SECURE_PROXY_SSL_HEADER`` (``1`` trusts
  ``X-Forwarded-Proto`` from a TLS-terminating proxy), ``SECURE_HSTS_SECONDS``.
- ``CACHE_URL``: ``redis://host:6379/1`` for Django's cache (throttle counters); defaults to
  ``REDIS_URL``, else an in-process cache.
- ``LOGIN_FAILURE_LIMIT``, ``LOGIN_IP_FAILURE_LIMIT``, ``LOGIN_COOLOFF_S``: browser login lockout.
- ``API_AUTH_FAILURE_LIMIT``, ``API_AUTH_FAILURE_WINDOW_S``: bad API tokens per client IP.
- ``CONTROL_LOOP_INTERVAL``: seconds between control-loop ticks (default 5).
- ``LOOP_LEASE_S``: how long a tick's lease on its cluster lasts unless renewed (default 10).
- ``VAR_DIR``: where local state lives (default ``./var``).

Problems found while reading variables are not raised here (that would hide them behind a
traceback); they are collected in ``SETTINGS_PROBLEMS`` and reported by the system checks in
``controlplane.checks`` with their own ids.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import plotly
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))

# (check id, message) pairs reported by controlplane.checks.
SETTINGS_PROBLEMS: list[tuple[str, str]] = []


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    SETTINGS_PROBLEMS.append(("controlplane.E001", f"{name}={raw!r} is not a boolean (1 or 0)."))
    return default


def _env_number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        SETTINGS_PROBLEMS.append(
            ("controlplane.E002", f"{name}={raw!r} must be a finite number >= {minimum}.")
        )
        return default
    return value


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _local_secret(filename: str, make: Any) -> str:
    """Read a development secret from var/, generating it on first use."""
    path = VAR_DIR / filename
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = _env_bool("DJANGO_DEBUG", True)
# Fixed at start-up: the test runner turns DEBUG off, but that is not production.
PRODUCTION = not DEBUG

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = _local_secret("secret_key", lambda: secrets.token_urlsafe(50))
if not SECRET_KEY:
    SETTINGS_PROBLEMS.append(("controlplane.E010", "SECRET_KEY is not set (50+ characters)."))

CREDENTIAL_KEYS = _env_list("CREDENTIAL_KEYS", [])
if not CREDENTIAL_KEYS and DEBUG:
    CREDENTIAL_KEYS = [_local_secret("credential_key", lambda: Fernet.generate_key().decode())]
try:
    for _key in CREDENTIAL_KEYS:
        Fernet(_key)
except ValueError:
    SETTINGS_PROBLEMS.append(
        ("controlplane.E011", "CREDENTIAL_KEYS holds a value that is not a Fernet key.")
    )
if not CREDENTIAL_KEYS:
    SETTINGS_PROBLEMS.append(
        (
            "controlplane.E011",
            "CREDENTIAL_KEYS is not set: stored cluster credentials cannot be encrypted. "
            "Generate a key with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'",
        )
    )

ALLOWED_HOSTS = _env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",  # failed-login lockout (controlplane/lockout.py); its attempts show in the admin
    "controlplane.apps.ControlPlaneConfig",
    "history",
    "tenants",
    "clusters",
    "quotas",
    "scaling",
    "dashboard",
    "api",
]

MIDDLEWARE = [
    "controlplane.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login refused by the lockout into the lockout page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    try:
        _database = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        SETTINGS_PROBLEMS.append(("controlplane.E003", f"DATABASE_URL is not usable: {exc}"))
        _database = {}
else:
    _database = {}
if not _database:
    _database = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(VAR_DIR / "db.sqlite3"),
        # Several processes (web, worker, beat) share the file: wait for locks, don't fail.
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
# DATABASE_POOL=N keeps up to N PostgreSQL connections per process in a pool (Django's
# psycopg_pool support). Under an ASGI server every request runs its sync code in a thread of
# its own, so a persistent (thread-local) connection is never reused: each API request opened
# a new one, a third of a detail request's time. controlplane/asgi.py turns it on for the web
# server; workers and commands keep one persistent connection.
DATABASE_POOL = int(_env_number("DATABASE_POOL", 0, minimum=0))
if DATABASE_POOL and _database.get("ENGINE") == "django.db.backends.postgresql":
    _database["CONN_MAX_AGE"] = 0  # the pool keeps the connections
    _database.setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DATABASE_POOL),
        "max_size": DATABASE_POOL,
        "timeout": 10,  # seconds a request waits for a free connection
    }
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and Celery broker ------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 100, "expiry": 10},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"visibility_timeout": 300}
else:
    # In-process layer: one ASGI server process fans out to its own sockets.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # kombu's filesystem transport: a real broker on disk, shared by every process on this
    # machine (unlike task_always_eager, tasks run in the worker, not the caller).
    _broker_dir = VAR_DIR / "celery" / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT = "controlplane.broker:Transport"  # atomic writes, see there
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }

# Django's cache holds the API's throttle counters: shared by every process through Redis,
# otherwise per process (fine for one machine; a limit then counts per server process). Keys are
# prefixed, but cache.clear() (tests) empties the whole Redis database: CACHE_URL can name a
# database of its own (redis://host:6379/1).
CACHE_URL = os.environ.get("CACHE_URL", "") or REDIS_URL
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "controlplane",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery: set up for a level-triggered control loop ------------------------------------------

CONTROL_LOOP_INTERVAL = _env_number("CONTROL_LOOP_INTERVAL", 5.0, minimum=0.5)
INVENTORY_SYNC_INTERVAL = _env_number("INVENTORY_SYNC_INTERVAL", 60.0, minimum=1)
# How long a tick's lease on its cluster lasts unless renewed (scaling.loop.Lease): a worker
# killed mid-tick delays its cluster's next tick by at most this much.
LOOP_LEASE_S = _env_number("LOOP_LEASE_S", 10.0, minimum=1)
DECISION_RETENTION_DAYS = _env_number("DECISION_RETENTION_DAYS", 14.0, minimum=0.01)
# How long the signal history (scaling.signal_store) is kept: at tick resolution for the last
# hour, as 1-minute means before that. A day covers the dashboard's longest what-if window.
SIGNAL_HISTORY_RETENTION_S = _env_number("SIGNAL_HISTORY_RETENTION_S", 86400.0, minimum=3600)
# Every call to an outside system has a timeout (seconds).
KUBERNETES_CONNECT_TIMEOUT_S = 3.0
KUBERNETES_TIMEOUT_S = _env_number("KUBERNETES_TIMEOUT_S", 10.0, minimum=0.1)
METRICS_TIMEOUT_S = _env_number("METRICS_TIMEOUT_S", 5.0, minimum=0.1)
POOL_TIMEOUT_S = _env_number("POOL_TIMEOUT_S", 5.0, minimum=0.1)
CELERY_TASK_ACKS_LATE = True  # tasks are idempotent: redelivery after a crash is safe
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a tick never waits behind another worker's backlog
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_IGNORE_RESULT = True  # results live in the database (Decisions), not a backend
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Periodic tasks expire after one interval: a tick that could not start in time is dropped,
# the next one recomputes everything anyway.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "control-loop": {
        "task": "scaling.tasks.tick_all_clusters",
        "schedule": CONTROL_LOOP_INTERVAL,
        "options": {"expires": CONTROL_LOOP_INTERVAL},
    },
    "inventory": {
        "task": "clusters.tasks.sync_all_inventories",
        "schedule": INVENTORY_SYNC_INTERVAL,
        "options": {"expires": INVENTORY_SYNC_INTERVAL},
    },
    "prune-decisions": {
        "task": "scaling.tasks.prune_decisions",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "compact-signal-history": {
        "task": "scaling.tasks.compact_signal_history",
        "schedule": 600.0,
        "options": {"expires": 600.0},
    },
    "prune-login-records": {
        "task": "controlplane.tasks.prune_login_records",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth, API ----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Browser logins (/accounts/login/ and the admin's) through django-axes, see
# controlplane/lockout.py: a (username, client IP) pair is locked after LOGIN_FAILURE_LIMIT
# failures, a client IP after LOGIN_IP_FAILURE_LIMIT failures over any usernames, each for
# LOGIN_COOLOFF_S seconds after the last failure. The client IP is REMOTE_ADDR: behind a proxy,
# let the ASGI server set it from X-Forwarded-For (uvicorn --forwarded-allow-ips).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before checking
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT = int(_env_number("LOGIN_FAILURE_LIMIT", 5, minimum=1))
LOGIN_IP_FAILURE_LIMIT = int(_env_number("LOGIN_IP_FAILURE_LIMIT", 50, minimum=1))
LOGIN_COOLOFF_S = _env_number("LOGIN_COOLOFF_S", 900, minimum=1)
AXES_HANDLER = "controlplane.lockout.LoginLockoutHandler"
AXES_LOCKOUT_PARAMETERS: list[Any] = [["username", "ip_address"], "ip_address"]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_COOLOFF_S)
AXES_LOCKOUT_CALLABLE = "controlplane.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_RESET_ON_SUCCESS = True  # a user's own failures end with a login (see the handler)
AXES_ENABLE_ACCESS_FAILURE_LOG = True  # every failure, with "locked out", in the admin
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)  # never a client-set header
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Requests per user (per token) before 429, e.g. "50/s", "1000/min"; "off" disables.
_throttle_rate = os.environ.get("API_THROTTLE_RATE", "").strip() or "50/s"
API_THROTTLE_RATE: str | None = None if _throttle_rate.lower() == "off" else _throttle_rate

# Bad API tokens (api/authentication.py): after API_AUTH_FAILURE_LIMIT failures from one client
# IP within API_AUTH_FAILURE_WINDOW_S seconds, every token from that IP answers 429 for that
# long, a valid one too (or a guess that succeeds would still be told so).
API_AUTH_FAILURE_LIMIT = int(_env_number("API_AUTH_FAILURE_LIMIT", 20, minimum=1))
API_AUTH_FAILURE_WINDOW_S = _env_number("API_AUTH_FAILURE_WINDOW_S", 300, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
    "DEFAULT_PARSER_CLASSES": ["api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["api.renderers.JSONRenderer"],  # orjson
    "DEFAULT_PAGINATION_CLASS": "api.pagination.ApiPagination",
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.UserRateThrottle"],
    "EXCEPTION_HANDLER": "api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # A client's address is REMOTE_ADDR, not a client-set X-Forwarded-For (see AXES above).
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Control Plane API",
    "DESCRIPTION": "Tenants, GPU quotas, clusters, workloads, scaling policies and decisions. "
    "See docs/api.md.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Separate request and response components: read-only fields are required in responses.
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "tenants.models.Role",
        "PolicyModeEnum": "scaling.models.ScalingPolicy.Mode",
        "AlgorithmEnum": "scaling.models.ScalingPolicy.Algorithm",
        "OutcomeEnum": "scaling.models.Decision.Outcome",
    },
}

# --- Static files ------------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"  # filled by collectstatic in production
if DEBUG:
    # Under an ASGI server WhiteNoise serves static files straight from the finders.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Plotly.js is served from the installed plotly package (no CDN, no 4 MB copy in git).
STATICFILES_DIRS = [BASE_DIR / "static", ("plotly", Path(plotly.__file__).parent / "package_data")]

# --- Live dashboard (docs/dashboard.md) ---------------------------------------------------------

# Seconds between the poller's metrics reads (one read per cluster per tick per process).
DASHBOARD_TICK_S = _env_number("DASHBOARD_TICK_S", 1.0, minimum=0.1)
# A series whose newest sample is older than this is stale (drawn as a gap, never as zero):
# two scrape intervals. With a Prometheus source set it to twice Prometheus' scrape interval.
DASHBOARD_STALE_AFTER_S = _env_number("DASHBOARD_STALE_AFTER_S", 2 * DASHBOARD_TICK_S, 0.1)
# Frames waiting per socket; a slower client loses its oldest frames.
DASHBOARD_SOCKET_QUEUE = int(_env_number("DASHBOARD_SOCKET_QUEUE", 8, minimum=1))
# "local": per-process queues (default); "layer": channel-layer groups (see the docs).
DASHBOARD_FANOUT = os.environ.get("DASHBOARD_FANOUT", "local")
if DASHBOARD_FANOUT not in {"local", "layer"}:
    SETTINGS_PROBLEMS.append(("controlplane.E004", "DASHBOARD_FANOUT must be local or layer."))
    DASHBOARD_FANOUT = "local"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Dates and times in one format across pages and admin (controlplane/formats/en/formats.py).
FORMAT_MODULE_PATH = ["controlplane.formats"]

# --- Production hardening (DEBUG off) -----------------------------------------------------------

if not DEBUG:
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
    # Probes and scrapers talk plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = int(_env_number("SECURE_HSTS_SECONDS", 31536000, minimum=0))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if _env_bool("SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
