"""API fixtures: two organisations with teams, users with each role, token-authenticated
clients. Throttling is off here (its own test turns it on) so request-heavy tests never flake."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

# Every collection under /api/v1/ with a list and a detail route.
RESOURCES = [
    "tenants",
    "memberships",
    "namespaces",
    "gpu-types",
    "clusters",
    "quotas",
    "workloads",
    "policies",
    "decisions",
    "backtests",
]

# The fields of a workload's public status (scaling.status.WorkloadStatus), as clients read them.
PUBLIC_STATUS_KEYS = {
    "at",
    "policy_version",
    "algorithm",
    "outcome",
    "reason",
    "current",
    "raw_desired",
    "desired",
    "steps",
    "metrics",
    "failure",
    "error",
    "observed_at",
    "since",
    "evaluations",
    "infeasible",
    "types",
    "mix",
}


@pytest.fixture(autouse=True)
def _fast_and_unthrottled(settings: Any) -> None:
    settings.API_THROTTLE_RATE = None
    # Each fixture user hashes a password; the production hasher costs ~0.3 s per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


@dataclass
class Fleet:
    gpu: Any
    cluster: Any
    acme: Any
    team_a: Any
    team_b: Any
    globex: Any
    globex_ml: Any
    users: dict[str, Any]
    workloads: dict[str, Any]
    quotas: dict[str, Any]
    decisions: dict[str, Any]
    backtests: dict[str, Any]


def make_backtest(workload: Any, status: str = "succeeded") -> Any:
    """A back-test job as the API and a worker leave it (no replay run: it is a record)."""
    from dataclasses import asdict

    from scaling.backtest.jobs import replay_settings
    from scaling.models import BacktestJob

    policy = workload.policy
    done = status in ("succeeded", "failed")
    return BacktestJob.objects.create(
        policy=policy,
        policy_version=policy.version,
        trace="conv",
        duration_s=120.0,
        params=asdict(policy.engine_params()),
        replay=replay_settings(workload, policy, 120.0),
        status=status,
        progress=1.0 if done else 0.0,
        result={"results": [], "oracle": None, "attribution": "test"} if done else None,
    )


def make_decision(workload: Any, minutes_ago: int = 0, outcome: str = "applied") -> Any:
    from django.utils import timezone

    from scaling.models import Decision

    return Decision.objects.create(
        workload=workload,
        policy=workload.policy,
        policy_version=workload.policy.version,
        at=timezone.now() - dt.timedelta(minutes=minutes_ago),
        algorithm="hpa",
        metrics={"vllm:num_requests_running": 12.0},
        current_replicas=1,
        raw_desired_replicas=2,
        steps=[{"step": "raw", "value": 2}],
        final_replicas=2,
        outcome=outcome,
        reason="load above target",
    )


@pytest.fixture
def fleet(gpu_type: Any, cluster: Any, make_user: Any, make_workload: Any) -> Fleet:
    from quotas.models import Quota
    from tenants.models import Namespace, Tenant

    acme = Tenant.objects.create(slug="acme", name="Acme")
    team_a = Tenant.objects.create(slug="team-a", name="Team A", parent=acme)
    team_b = Tenant.objects.create(slug="team-b", name="Team B", parent=acme)
    globex = Tenant.objects.create(slug="globex", name="Globex")
    globex_ml = Tenant.objects.create(slug="globex-ml", name="Globex ML", parent=globex)
    users = {
        "staff": make_user("root", staff=True),
        "org_operator": make_user("alice", acme, "operator"),
        "viewer": make_user("vera", team_a, "viewer"),
        "operator": make_user("olga", team_a, "operator"),
        "admin": make_user("adam", team_a, "admin"),
        "outsider": make_user("gina", globex, "operator"),
        "nobody": make_user("nemo"),
    }
    # Mapped namespaces (a mapping replaces the slug default, so the slug's own is listed too).
    for tenant in (team_b, globex_ml):
        for name in (tenant.slug, f"{tenant.slug}-batch"):
            Namespace.objects.create(tenant=tenant, cluster=cluster, name=name)
    workloads = {
        "a": make_workload(team_a, cluster, gpu_type, "chat"),
        "b": make_workload(team_b, cluster, gpu_type, "embed"),
        "g": make_workload(globex_ml, cluster, gpu_type, "vision"),
    }
    quotas = {
        "a": Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=8),
        "b": Quota.objects.create(tenant=team_b, gpu_type=gpu_type, nominal=4),
        "g": Quota.objects.create(tenant=globex_ml, gpu_type=gpu_type, nominal=16),
    }
    decisions = {key: make_decision(w) for key, w in workloads.items()}
    backtests = {key: make_backtest(w) for key, w in workloads.items()}
    return Fleet(
        gpu_type,
        cluster,
        acme,
        team_a,
        team_b,
        globex,
        globex_ml,
        users,
        workloads,
        quotas,
        decisions,
        backtests,
    )


@pytest.fixture
def client_for() -> Any:
    """An APIClient authenticated with the user's token (``None``: anonymous)."""

    def make(user: Any | None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make
