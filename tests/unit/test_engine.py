"""Finding the Docker engine: a socket nobody answers on is a clear error, and leaves no socket open."""

from __future__ import annotations

import gc
import socket
from pathlib import Path

import pytest

from driftloop.deploy.engine import docker_client
from driftloop.errors import DeployError


def _stale_socket(path: Path) -> Path:
    """A socket file left by an engine that is gone: it exists, and every connection is refused."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
    return path


@pytest.mark.parametrize("kind", ["absent", "stale"])
def test_no_engine_on_the_socket_says_how_to_start_one(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "docker.sock"
    if kind == "stale":
        _stale_socket(path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    with pytest.raises(DeployError, match=rf"no Docker engine answers at unix://{path} .*Start one"):
        docker_client(timeout=5)
    gc.collect()  # an unclosed socket would be reported here: the session turns ResourceWarning into an error
