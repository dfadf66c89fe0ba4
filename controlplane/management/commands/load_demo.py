"""Load the demo fleet: 2 clusters, 4 GPU types, 2 organisations with 6 teams, quotas,
12 workloads with policies, and demo users. Idempotent: running it again changes nothing that
is already there. ``--reset`` first deletes the demo's own objects (its clusters with their
workloads, policies and decisions, its tenants with their quotas, memberships and namespaces,
its users) and loads them afresh, undoing every edit; the history of changes is kept, as an
audit trail should be. Refuses to run in production mode (DEBUG off)."""

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clusters.models import Cluster
from quotas.models import GpuType, Quota
from scaling.models import ScalingPolicy, Workload
from simulator.config import load_config
from tenants.models import Membership, Role, Tenant

DEMO_PASSWORD = "demo-password"

GPU_TYPES = [
    # name, memory GiB, throughput relative to A100-80GB, USD/hour, nvidia.com/gpu.product
    ("H100-80GB", 80, 2.0, "4.50", "NVIDIA-H100-80GB-HBM3"),
    ("A100-80GB", 80, 1.0, "2.20", "NVIDIA-A100-SXM4-80GB"),
    ("A40-48GB", 48, 0.45, "0.90", "NVIDIA-A40"),
    ("L4-24GB", 24, 0.3, "0.60", "NVIDIA-L4"),
]

ORGANISATIONS = {
    "acme": ("Acme Corp", ["acme-chat", "acme-code", "acme-search"]),
    "globex": ("Globex Research", ["globex-research", "globex-support", "globex-ml"]),
}
TEAM_PRIORITY = {"acme-chat": 10, "globex-support": 10}

# tenant -> {gpu type: (nominal, borrowing limit, lending limit)}
QUOTAS: dict[str, dict[str, tuple[int, int | None, int | None]]] = {
    "acme-chat": {"A100-80GB": (8, 4, 2), "H100-80GB": (8, 0, None)},
    "acme-code": {"A100-80GB": (4, 4, None), "L4-24GB": (4, 2, None)},
    "acme-search": {"A100-80GB": (4, 2, 2), "L4-24GB": (8, None, 4)},
    "globex-research": {"H100-80GB": (8, 4, None), "A40-48GB": (4, 2, None)},
    "globex-support": {"A100-80GB": (6, 2, 2), "A40-48GB": (4, 2, 2)},
    "globex-ml": {"A100-80GB": (4, 4, None), "L4-24GB": (6, 2, None)},
}

# The clusters and their workloads come from the simulator's demo fleet (simulator/demo.json),
# so the demo cluster serves exactly these Deployments. Each gets a policy:
# Deployment -> (algorithm, metric, target, min, max).
POLICIES: dict[str, tuple[str, str, float, int, int]] = {
    "chat-llama-8b": ("hpa", "vllm:num_requests_running", 16, 1, 8),
    "chat-llama-70b": ("kpa", "vllm:num_requests_running", 12, 1, 2),
    "code-qwen-7b": ("predictive", "vllm:num_requests_running", 16, 1, 6),
    "search-mistral-7b": ("apa", "vllm:kv_cache_usage_perc", 0.7, 1, 4),
    "search-phi-3": ("hpa", "DCGM_FI_DEV_GPU_UTIL", 70, 1, 8),
    "research-llama-70b": ("kpa", "vllm:num_requests_running", 12, 0, 3),
    "support-llama-8b": ("hpa", "vllm:num_requests_waiting", 4, 1, 8),
    "support-mistral-7b": ("apa", "vllm:num_requests_running", 12, 1, 4),
    "ml-qwen-14b": ("predictive", "vllm:num_requests_running", 12, 1, 4),
    "ml-phi-3": ("hpa", "DCGM_FI_DEV_GPU_UTIL", 70, 1, 6),
    "code-qwen-1b": ("kpa", "vllm:num_requests_running", 24, 0, 4),
    "research-mixtral": ("hpa", "vllm:num_requests_running", 8, 1, 2),
}

# username -> (staff, {tenant: role})
USERS: dict[str, tuple[bool, dict[str, str]]] = {
    "admin": (True, {}),
    "alice": (False, {"acme": Role.OPERATOR}),
    "bob": (False, {"globex-support": Role.VIEWER, "globex-ml": Role.OPERATOR}),
}


class Command(BaseCommand):
    help = "Load the demo fleet (idempotent; --reset undoes edits; refused in production mode)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="delete the demo's clusters, tenants, users and what hangs off them, then load",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("load_demo refuses to run in production mode (DEBUG is off).")
        with transaction.atomic():
            if options["reset"]:
                self.stdout.write(f"Deleted the demo's objects ({self.reset()} rows).")
            created = self.load()
        self.stdout.write(f"Demo fleet loaded ({created} new objects).")
        self.stdout.write(
            f"Log in as admin / {DEMO_PASSWORD} (staff), alice / {DEMO_PASSWORD} (operator of "
            f"acme), bob / {DEMO_PASSWORD} (viewer of globex-support, operator of globex-ml)."
        )

    def reset(self) -> int:
        """Delete what ``load`` creates (GPU types stay: other workloads may use them; ``load``
        puts their demo values back). Order matters: workloads protect their tenant, cluster
        and GPU type, and organisations protect their teams."""
        slugs = [slug for org, (_, teams) in ORGANISATIONS.items() for slug in (org, *teams)]
        clusters = Cluster.objects.filter(name__in=[c.name for c in load_config(None).clusters])
        deleted = Workload.objects.filter(cluster__in=clusters).delete()[0]
        deleted += Workload.objects.filter(tenant__slug__in=slugs).delete()[0]
        deleted += clusters.delete()[0]
        deleted += Tenant.objects.filter(slug__in=slugs, parent__isnull=False).delete()[0]
        deleted += Tenant.objects.filter(slug__in=slugs).delete()[0]
        deleted += get_user_model().objects.filter(username__in=USERS).delete()[0]
        return int(deleted)

    def load(self) -> int:
        created = 0
        gpu_types = {}
        for name, memory, throughput, cost, label in GPU_TYPES:
            gpu_types[name], new = GpuType.objects.update_or_create(
                name=name,
                defaults={
                    "memory_gib": memory,
                    "relative_throughput": throughput,
                    "hourly_cost": cost,
                    "node_label": label,
                },
            )
            created += new
        fleet = load_config(None)
        clusters = {}
        port = os.environ.get("SIMULATOR_PORT", "9400")
        for config in fleet.clusters:
            base = f"http://127.0.0.1:{port}/{config.name}"
            clusters[config.name], new = Cluster.objects.get_or_create(
                name=config.name,
                defaults={
                    "api_url": base,
                    "metrics_source": "exporter",
                    "metrics_url": f"{base}/metrics",
                    "pool_url": f"{base}/pool",
                },
            )
            created += new
        tenants = {}
        for org_slug, (org_name, teams) in ORGANISATIONS.items():
            org, new = Tenant.objects.get_or_create(slug=org_slug, defaults={"name": org_name})
            tenants[org_slug] = org
            created += new
            for team in teams:
                tenants[team], new = Tenant.objects.get_or_create(
                    slug=team,
                    defaults={
                        "name": team.replace("-", " ").title(),
                        "parent": org,
                        "priority": TEAM_PRIORITY.get(team, 0),
                    },
                )
                created += new
        for team, per_type in QUOTAS.items():
            for gpu, (nominal, borrowing, lending) in per_type.items():
                _, new = Quota.objects.get_or_create(
                    tenant=tenants[team],
                    gpu_type=gpu_types[gpu],
                    defaults={
                        "nominal": nominal,
                        "borrowing_limit": borrowing,
                        "lending_limit": lending,
                    },
                )
                created += new
        for config in fleet.clusters:
            for w in config.workloads:
                workload, new = Workload.objects.get_or_create(
                    cluster=clusters[config.name],
                    namespace=w.namespace,
                    deployment=w.name,
                    defaults={
                        "tenant": tenants[w.namespace],
                        "model_name": w.model,
                        "gpu_type": gpu_types[w.gpu_type],
                        "gpus_per_replica": w.gpus_per_replica,
                        "desired_replicas": w.replicas,
                    },
                )
                created += new
                algorithm, metric, target, low, high = POLICIES[w.name]
                _, new = ScalingPolicy.objects.get_or_create(
                    workload=workload,
                    defaults={
                        "algorithm": algorithm,
                        "metric": metric,
                        "target": target,
                        "min_replicas": low,
                        "max_replicas": high,
                        "cold_start_s": w.cold_start_s,
                        "mode": "enforce",
                    },
                )
                created += new
        return created + self.load_users(tenants)

    def load_users(self, tenants: dict[str, Tenant]) -> int:
        created = 0
        user_model = get_user_model()
        for username, (staff, roles) in USERS.items():
            user = user_model.objects.filter(username=username).first()
            if user is None:
                user = user_model.objects.create_user(
                    username, password=DEMO_PASSWORD, is_staff=staff, is_superuser=staff
                )
                created += 1
            for tenant, role in roles.items():
                _, new = Membership.objects.get_or_create(
                    user=user, tenant=tenants[tenant], defaults={"role": role}
                )
                created += new
        return created
