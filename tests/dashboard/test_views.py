def test_fleet_page_requires_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_fleet_page_lists_only_what_the_user_may_see(
    client, team_a, team_b, cluster, gpu_type, make_user, make_workload
):
    make_workload(team_a, cluster, gpu_type, "visible-chat")
    make_workload(team_b, cluster, gpu_type, "hidden-chat")
    client.force_login(make_user("viewer", team_a))
    body = client.get("/").content.decode()
    assert "visible-chat" in body and "team-a" in body
    assert "hidden-chat" not in body and "team-b" not in body


def test_login_page_and_login(client, make_user):
    make_user("op")
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "op", "password": "pw-for-tests-1"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_fleet_page_lists_the_gpu_inventory(client, cluster, gpu_type, make_user):
    from django.utils import timezone

    from clusters.models import GpuNode

    for i in range(3):
        GpuNode.objects.create(
            cluster=cluster,
            name=f"a100-{i}",
            gpu_product=gpu_type.node_label,
            gpu_capacity=8,
            gpu_allocatable=8,
            ready=i < 2,
            seen_at=timezone.now(),
        )
    client.force_login(make_user("viewer"))
    body = client.get("/").content.decode()
    inventory = body.split('id="inventory"')[1].split("</table>")[0]
    assert "A100-80GB" in inventory and "3 (2)" in inventory and ">24<" in inventory
