"""The API as the ASGI server runs it (controlplane.asgi: the middleware chain and the views as
one sync call per request): same answers as through Django's test client."""

import json
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.db import connection
from rest_framework.authtoken.models import Token

from controlplane.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_connections_after_each_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each request runs in a thread of its own, with a connection of its own: closed when the
    # request ends, as with the web server's pool, so none outlives the test database.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


async def call(path: str, token: str | None = None, method: str = "GET") -> tuple[int, Any]:
    headers = [(b"host", b"testserver")]
    if token is not None:
        headers.append((b"authorization", f"Token {token}".encode()))
    communicator = HttpCommunicator(application, method, path, headers=headers)
    response = await communicator.get_response()
    await communicator.wait(5)  # the request's end: request_finished closes its connection
    return response["status"], json.loads(response["body"])


@pytest.fixture
def viewer(fleet: Any) -> str:
    return str(Token.objects.get_or_create(user=fleet.users["viewer"])[0].key)


@pytest.fixture
def expected(fleet: Any, client_for: Any) -> Any:
    return client_for(fleet.users["viewer"]).get("/api/v1/policies/?page_size=100").json()


async def test_a_list_answers_as_through_the_test_client(viewer: str, expected: Any) -> None:
    status, body = await call("/api/v1/policies/?page_size=100", viewer)
    assert status == 200 and body == expected
    assert [p["tenant"] for p in body["results"]] == ["team-a"]


async def test_errors_keep_their_statuses_through_the_chain(fleet: Any, viewer: str) -> None:
    assert (await call("/api/v1/policies/"))[0] == 401
    foreign = fleet.workloads["g"].policy.pk
    assert await call(f"/api/v1/policies/{foreign}/", viewer) == (404, {"detail": "Not found."})
    own = fleet.workloads["a"].pk
    status, body = await call(f"/api/v1/workloads/{own}/reconcile/", viewer, "POST")
    assert status == 403 and "role" in body["detail"]
