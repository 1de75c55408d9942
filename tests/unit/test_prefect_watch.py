"""The watch on the Prefect API, against a real HTTP health endpoint that is stopped and started again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from driftloop.io.prefect_watch import watch_prefect_api
from tests.support.host import free_port

PROBE_SECONDS = 0.2  # the watch's interval here (2 s in the CLI)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


class HealthServer:
    """A real health endpoint on a fixed port that can go away and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/health"
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Health)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    server.start()
    yield server
    if server._server is not None:
        server.stop()


def test_a_server_gone_for_the_patience_is_given_up(health: HealthServer) -> None:
    lost: list[float] = []
    patience = 1.0
    with watch_prefect_api(health.url, patience, lost.append, PROBE_SECONDS):
        time.sleep(PROBE_SECONDS * 1.5)
        assert lost == []  # answering: nothing happens
        health.stop()
        deadline = time.monotonic() + patience + 30  # a loaded machine may run the watcher late; never this late
        while not lost and time.monotonic() < deadline:
            time.sleep(PROBE_SECONDS)
    assert len(lost) == 1
    assert lost[0] >= patience


def test_a_server_back_within_the_patience_costs_the_run_nothing(health: HealthServer) -> None:
    lost: list[float] = []
    patience = 20 * PROBE_SECONDS
    with watch_prefect_api(health.url, patience, lost.append, PROBE_SECONDS):
        for _ in range(2):  # twice gone for less than the patience, answering in between
            health.stop()
            time.sleep(6 * PROBE_SECONDS)
            health.start()
            time.sleep(2 * PROBE_SECONDS)
    assert lost == []


def test_a_watch_that_ended_never_calls_back(health: HealthServer) -> None:
    lost: list[float] = []
    with watch_prefect_api(health.url, 1.0, lost.append, PROBE_SECONDS):
        pass
    health.stop()
    time.sleep(1.0 + 4 * PROBE_SECONDS)
    assert lost == []
