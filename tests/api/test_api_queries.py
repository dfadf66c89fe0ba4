"""List endpoints cost the same number of queries for one item as for a full page."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from quotas.models import GpuType, Quota
from scaling.models import Workload
from tenants.models import Membership, Namespace, Tenant

from .conftest import RESOURCES, make_backtest, make_decision

pytestmark = pytest.mark.django_db


def grow(fleet: Any, make_workload: Any, make_user: Any, count: int) -> None:
    """Add ``count`` of everything under team-a (so its viewer sees them too)."""
    from clusters.models import Cluster

    for i in range(count):
        team = Tenant.objects.create(slug=f"extra-{i}", name=f"Extra {i}", parent=fleet.acme)
        gpu = GpuType.objects.create(name=f"G{i}", memory_gib=24, node_label=f"label-{i}")
        extra = Cluster.objects.create(name=f"c{i}", api_url=f"http://127.0.0.1/{i}")
        Namespace.objects.create(tenant=fleet.team_a, cluster=extra, name=f"team-a-{i}")
        Quota.objects.create(tenant=fleet.team_a, gpu_type=gpu, nominal=i)
        workload = make_workload(fleet.team_a, fleet.cluster, gpu, f"w{i}")
        make_decision(workload)
        make_backtest(workload)
        Membership.objects.create(user=make_user(f"u{i}"), tenant=fleet.team_a)
        Membership.objects.create(user=fleet.users["org_operator"], tenant=team)


def count_queries(client: Any, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), len(response.json()["results"])


@pytest.mark.parametrize("role", ["staff", "viewer", "org_operator"])
def test_list_queries_do_not_grow_with_the_page(
    fleet: Any, client_for: Any, make_workload: Any, make_user: Any, role: str
) -> None:
    client = client_for(fleet.users[role])
    Namespace.objects.create(tenant=fleet.team_a, cluster=fleet.cluster, name="team-a-main")
    few = {name: count_queries(client, f"/api/v1/{name}/?page_size=100") for name in RESOURCES}
    grow(fleet, make_workload, make_user, 30)
    for name in RESOURCES:
        queries, rows = count_queries(client, f"/api/v1/{name}/?page_size=100")
        before, before_rows = few[name]
        assert queries == before, (
            f"{name}: {before} queries for {before_rows} rows, {queries} for {rows}"
        )
        grown = ("workloads", "policies", "decisions", "quotas", "gpu-types", "backtests")
        if name in (*grown, "namespaces"):
            assert rows >= before_rows + 30, name
    assert Workload.objects.count() == 33
