"""Shared fixtures: a small fleet built through the ORM, and users with each role.

Django models are imported inside the fixtures: the simulator and engine tests are pure Python
and must collect without Django settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from clusters.models import Cluster
    from quotas.models import GpuType
    from scaling.models import Workload
    from tenants.models import Tenant


@pytest.fixture
def gpu_type(db: Any) -> GpuType:
    from quotas.models import GpuType

    return GpuType.objects.create(
        name="A100-80GB",
        memory_gib=80,
        relative_throughput=1.0,
        hourly_cost="2.20",
        node_label="NVIDIA-A100-SXM4-80GB",
    )


@pytest.fixture
def cluster(db: Any) -> Cluster:
    from clusters.models import Cluster

    return Cluster.objects.create(name="east", api_url="http://127.0.0.1:9400/east")


@pytest.fixture
def org(db: Any) -> Tenant:
    from tenants.models import Tenant

    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def team_a(org: Tenant) -> Tenant:
    return type(org).objects.create(slug="team-a", name="Team A", parent=org)


@pytest.fixture
def team_b(org: Tenant) -> Tenant:
    return type(org).objects.create(slug="team-b", name="Team B", parent=org)


@pytest.fixture
def other_org(db: Any) -> Tenant:
    from tenants.models import Tenant

    return Tenant.objects.create(slug="globex", name="Globex")


@pytest.fixture
def make_workload(db: Any) -> Any:
    def make(tenant: Tenant, cluster: Cluster, gpu_type: GpuType, name: str) -> Workload:
        from scaling.models import ScalingPolicy, Workload

        workload = Workload.objects.create(
            tenant=tenant,
            cluster=cluster,
            namespace=tenant.slug,
            deployment=name,
            model_name="meta-llama/Llama-3.1-8B-Instruct",
            gpu_type=gpu_type,
        )
        ScalingPolicy.objects.create(workload=workload, target=8)
        return workload

    return make


@pytest.fixture
def make_user(db: Any) -> Any:
    def make(
        username: str, tenant: Tenant | None = None, role: str = "viewer", staff: bool = False
    ) -> User:
        from django.contrib.auth.models import User

        from tenants.models import Membership

        user = User.objects.create_user(
            username, password="pw-for-tests-1", is_staff=staff, is_superuser=staff
        )
        if tenant is not None:
            Membership.objects.create(user=user, tenant=tenant, role=role)
        return user

    return make
