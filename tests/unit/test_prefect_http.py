"""The REST client for Prefect waits out 503 and 429 answers as Prefect's own client does, and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from driftloop.io.prefect_http import LONGEST_PAUSE_SECONDS, pause_before_retry, prefect_api_client


class _Scripted(ThreadingHTTPServer):
    """A real HTTP server answering each POST with the next status of ``statuses`` (the last one then repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses = statuses
        self.bodies: list[bytes] = []

    def next_status(self, body: bytes) -> int:
        self.bodies.append(body)
        return self.statuses[min(len(self.bodies), len(self.statuses)) - 1]


class _Handler(BaseHTTPRequestHandler):
    server: _Scripted

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.server.next_status(body)
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Iterator[_Scripted]:
    server = _Scripted(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _post(server: _Scripted, attempts: int = 5) -> int:
    host, port = server.server_address[:2]
    with prefect_api_client(f"http://{host!s}:{port}/api", attempts=attempts) as client:
        return client.post("/deployments/x/create_flow_run", json={"a": 1}).status_code


@pytest.mark.parametrize("scripted", [[503, 429, 201]], indirect=True)
def test_a_busy_answer_is_asked_again_with_the_same_body(scripted: _Scripted) -> None:
    assert _post(scripted) == 201
    assert scripted.bodies == [b'{"a":1}'] * 3


@pytest.mark.parametrize("scripted", [[503]], indirect=True)
def test_a_server_that_stays_busy_gets_its_last_answer_returned(scripted: _Scripted) -> None:
    assert _post(scripted, attempts=2) == 503
    assert len(scripted.bodies) == 2


@pytest.mark.parametrize("scripted", [[500, 201]], indirect=True)
def test_other_errors_are_not_retried(scripted: _Scripted) -> None:
    assert _post(scripted) == 500
    assert len(scripted.bodies) == 1


def test_the_pause_doubles_up_to_a_ceiling_and_follows_retry_after() -> None:
    assert [pause_before_retry(n, None) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert pause_before_retry(10, None) == LONGEST_PAUSE_SECONDS
    assert pause_before_retry(1, "3") == 3.0
    assert pause_before_retry(1, "3600") == LONGEST_PAUSE_SECONDS
    assert pause_before_retry(2, "Wed, 21 Oct 2026 07:28:00 GMT") == 1.0  # a date: the doubling instead
