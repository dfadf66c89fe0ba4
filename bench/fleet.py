"""The fleet the database benchmarks list and serve: 1,000 tenants (100 organisations of 9
teams each, plus the organisations themselves) and one workload with a policy per
``policies``, spread evenly over the tenants. Import after ``django.setup()``."""

from clusters.models import Cluster
from quotas.models import GpuType
from scaling.models import ScalingPolicy, Workload
from tenants.models import Tenant


def create_fleet(tenants: int, policies: int) -> tuple[list[Tenant], list[ScalingPolicy]]:
    """Bulk-create the fleet; returns the tenants (organisations first) and the policies."""
    gpu = GpuType.objects.create(name="A100-80GB", memory_gib=80, node_label="NVIDIA-A100")
    cluster = Cluster.objects.create(name="bench", api_url="http://127.0.0.1:9400/bench")
    orgs = Tenant.objects.bulk_create(
        [Tenant(slug=f"org-{i}", name=f"Org {i}") for i in range(tenants // 10)]
    )
    teams = Tenant.objects.bulk_create(
        [
            Tenant(slug=f"team-{i}", name=f"Team {i}", parent=orgs[i % len(orgs)])
            for i in range(tenants - len(orgs))
        ]
    )
    everyone = orgs + teams
    workloads = Workload.objects.bulk_create(
        [
            Workload(
                tenant=everyone[i % tenants],
                cluster=cluster,
                gpu_type=gpu,
                namespace=everyone[i % tenants].slug,
                deployment=f"model-{i}",
                model_name="meta-llama/Llama-3.1-8B-Instruct",
            )
            for i in range(policies)
        ],
        batch_size=1000,
    )
    created = ScalingPolicy.objects.bulk_create(
        [ScalingPolicy(workload=w, target=8) for w in workloads], batch_size=1000
    )
    return everyone, created
