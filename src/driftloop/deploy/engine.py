"""The Docker engine: one way to get a client, and a clear error when no engine answers."""

from __future__ import annotations

import os
import socket

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

from driftloop.errors import DeployError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Image builds stream their log; a quiet step (a large pip download) must not time the read out.
CLIENT_TIMEOUT_SECONDS = 300


def engine_address() -> str:
    """Where docker-py looks for the engine: ``DOCKER_HOST``, else the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def docker_client(timeout: float = CLIENT_TIMEOUT_SECONDS) -> docker.DockerClient:
    """A client of the engine at ``DOCKER_HOST`` (or the default socket) that has answered a ping.

    The API version is negotiated, never pinned: docker-py's default would be too new for older engines.

    Raises:
        DeployError: No engine answers there; the message says how to start one.
    """
    unreachable = _unix_socket_error(engine_address())
    if unreachable is not None:
        raise _no_engine(unreachable)
    try:
        client = docker.from_env(timeout=int(timeout))
    except (DockerException, RequestException) as error:
        raise _no_engine(error) from None
    try:
        client.ping()
    except (DockerException, RequestException) as error:
        client.close()  # its connection pool holds a socket
        raise _no_engine(error) from None
    return client


def _unix_socket_error(address: str) -> OSError | None:
    """Why nothing accepts a connection on ``address``'s Unix socket (None: something does, or it is not one).

    Tried here first because docker-py leaves its socket open when the connection is refused or the file is absent.
    """
    if not address.startswith("unix://"):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(address.removeprefix("unix://"))
        except OSError as error:
            return error
    return None


def _no_engine(error: Exception) -> DeployError:
    return DeployError(
        f"no Docker engine answers at {engine_address()} ({error}). Start one (`systemctl start docker`, "
        "or as root `dockerd &`) or point DOCKER_HOST at a running engine (with DRIFTLOOP_DEPLOY=local, the "
        "default, training and serving need none; build-image, rollout and status always do)"
    )
