"""Slow clients against the real server process (`python -m driftloop.serving`, real sockets): bounded, in seconds.

The finding: 200 of 200 slowloris sockets (headers dribbled for 40 s) and 200 of 200 slow bodies stayed open.
Here, with the deadlines set to 1 s (headers) and 2 s (body), 50 of each must be closed within a second or two of
their deadline, while an ordinary client is still answered during the attack.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.bundles import TrainedModel
from tests.support.serving import ServerProcess, server_process

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
SOCKETS = 50
SLACK = 2.0  # seconds past its deadline by which a socket must be closed (the loop is busy with 100 of them)


@pytest.fixture
def server(tmp_path: Path, bundle_dir: Path) -> Iterator[ServerProcess]:
    env = {"DRIFTLOOP_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "DRIFTLOOP_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with server_process(tmp_path, bundle_dir, **env) as running:
        yield running


def dribble(sock: socket.socket, first: bytes, then: bytes, every: float, stop: threading.Event) -> None:
    """Send ``first``, then one byte of ``then`` every ``every`` seconds, until the server closes or ``stop``."""
    try:
        sock.sendall(first)
        for byte in then:
            if stop.wait(every):
                return
            sock.sendall(bytes([byte]))
    except OSError:
        return  # closed by the server: what the test waits for


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before closing."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def attack(server: ServerProcess, first: bytes, then: bytes, wait: float) -> list[tuple[bool, bytes]]:
    stop = threading.Event()
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(SOCKETS)]
    threads = [threading.Thread(target=dribble, args=(s, first, then, 0.2, stop), daemon=True) for s in sockets]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        # An ordinary client is answered meanwhile.
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        results = [closed_within(s, wait) for s in sockets]
    finally:
        stop.set()
        for s in sockets:
            s.close()
    return results


def test_headers_dribbled_get_408_and_the_socket_closed(server: ServerProcess) -> None:
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    results = attack(server, request[:20], request[20:], HEADER_TIMEOUT + SLACK)
    assert all(closed for closed, _ in results), sum(not closed for closed, _ in results)
    assert all(sent.startswith(b"HTTP/1.1 408 ") for _, sent in results), {sent[:40] for _, sent in results}


def test_a_body_that_never_ends_gets_the_socket_closed(server: ServerProcess, served_model: TrainedModel) -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    results = attack(server, head + b'{"features": ', b" " * 1000, HEADER_TIMEOUT + BODY_TIMEOUT + SLACK)
    assert all(closed for closed, _ in results), sum(not closed for closed, _ in results)
    assert all(sent == b"" for _, sent in results)  # nobody left to answer
    # The server is none the worse for it.
    answer = httpx.post(server.url + "/predict", json={"features": served_model.records(1)[0]}, timeout=5)
    assert answer.status_code == 200, answer.text
