"""The quota preview of a GPU type that a workload runs on as a variant (a further GPU type,
scaling.variants) names the workload, the type and its Deployment, as the loop recorded them."""

import pytest

from quotas.models import GpuType, Quota
from scaling.loop import tick_cluster
from scaling.models import WorkloadVariant
from tests.scaling.test_loop import register
from tests.scaling.test_loop_mix import mixed_fleet

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def preview_rows(client, quota: Quota, nominal: int) -> list[list[str]]:
    url = f"/admin/quotas/quota/{quota.pk}/preview/"
    query = {"tenant": quota.tenant_id, "gpu_type": quota.gpu_type_id, "nominal": nominal}
    response = client.post(url, query)
    assert response.status_code == 200
    table = response.content.decode().split("<tbody>")[1].split("</tbody>")[0]
    rows = [r for r in table.split("<tr>") if "<td>" in r]
    return [[c.split("</td>")[0] for c in r.split("<td>")[1:]] for r in rows]


def test_the_preview_of_a_variants_quota_names_the_workload_and_its_gpu_type(
    start_simulator, gpu_type, team_a, client, make_user
):
    a40 = GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.30", node_label="NVIDIA-A40"
    )
    quota = Quota.objects.create(tenant=team_a, gpu_type=a40, nominal=4)
    url = start_simulator(mixed_fleet(), speed=4.0)
    cluster, workload = register(url, gpu_type, team_a, target=1000, min_replicas=3)
    variant = WorkloadVariant.objects.create(
        workload=workload, gpu_type=a40, deployment="chat-a40", max_replicas=6
    )
    tick_cluster(cluster.pk)
    client.force_login(make_user("root", staff=True))

    rows = preview_rows(client, quota, nominal=0)
    assert [row[:2] for row in rows] == [[str(variant), "team-a"]]
    assert str(variant) == "east/team-a/chat on A40-48GB: chat-a40"
