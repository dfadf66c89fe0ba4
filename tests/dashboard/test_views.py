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
