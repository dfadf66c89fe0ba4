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


def test_fleet_page_lists_the_gpu_inventory(
    client, cluster, gpu_type, make_user, make_workload, team_a
):
    from django.utils import timezone

    from clusters.models import GpuNode

    for i, requested in enumerate((5, 6, 0)):
        GpuNode.objects.create(
            cluster=cluster,
            name=f"a100-{i}",
            gpu_product=gpu_type.node_label,
            gpu_capacity=8,
            gpu_allocatable=8,
            gpu_requested=requested,
            ready=i < 2,
            seen_at=timezone.now(),
        )
    chat = make_workload(team_a, cluster, gpu_type, "chat")
    chat.gpus_per_replica = 4
    chat.save()
    client.force_login(make_user("viewer"))
    body = client.get("/").content.decode()
    inventory = body.split('id="inventory"')[1].split("</table>")[0]
    # 3 + 2 GPUs free on the ready nodes: no 4-GPU replica fits anywhere.
    cells = [c.split(">", 1)[1] for c in inventory.split("</td>")[5:8]]
    assert cells[0] == "5" and cells[1].startswith("3 GPUs")
    assert cells[2].startswith("5 <span") and "for 4-GPU replicas (0 more fit)" in cells[2]
    assert "A100-80GB" in inventory and "3 (2)" in inventory and ">24<" in inventory
