"""Metrics and cluster failures read as sentences (issue 15, part 2): real failures on the
adapters, a closed port, a server that hangs and one that answers 503."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clusters import exporters, kubernetes, prometheus
from clusters.kubernetes import ClusterError
from clusters.metrics import MetricsError
from clusters.models import Cluster

READERS = {
    "Prometheus at": lambda url: prometheus.read_samples(url, ["up"], 0.0),
    "the exporter at": lambda url: exporters.read_samples(url, ["up"], 0.0),
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local HTTP server that hangs (`hang`) or answers 503 (`unavailable`)."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if request.param == "hang":
                release.wait(10)
                return
            self.send_response(503)
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"unavailable")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("source", list(READERS))
def test_a_closed_port_says_the_connection_was_refused(source):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(MetricsError) as failure:
        READERS[source](url)
    assert str(failure.value) == f"{source} {url} refused the connection"


@pytest.mark.parametrize("server", ["hang"], indirect=True)
@pytest.mark.parametrize("source", list(READERS))
def test_a_server_that_hangs_did_not_answer_within_the_timeout(source, server, settings):
    settings.METRICS_TIMEOUT_S = 0.5
    with pytest.raises(MetricsError) as failure:
        READERS[source](server)
    assert str(failure.value) == f"{source} {server} did not answer within 0.5 s"


@pytest.mark.parametrize("server", ["unavailable"], indirect=True)
@pytest.mark.parametrize("source", list(READERS))
def test_a_503_says_the_status(source, server):
    with pytest.raises(MetricsError) as failure:
        READERS[source](server)
    assert str(failure.value) == f"{source} {server} answered HTTP 503"


def _cluster(api_url: str) -> Cluster:
    return Cluster.objects.create(name="west", api_url=api_url, metrics_source="exporter")


@pytest.mark.django_db
def test_a_refused_cluster_api_reads_as_a_sentence():
    west = _cluster(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(ClusterError) as failure:
        kubernetes.list_pods(west)
    assert failure.value.sentence("west") == "cluster west's API refused the connection (list pods)"


@pytest.mark.django_db
@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_a_hanging_cluster_api_did_not_answer_within_the_timeout(server, settings):
    settings.KUBERNETES_TIMEOUT_S = 0.5
    west = _cluster(server)
    with pytest.raises(ClusterError) as failure:
        kubernetes.list_pods(west)
    assert failure.value.sentence("west") == (
        "cluster west's API did not answer within 0.5 s (list pods)"
    )
