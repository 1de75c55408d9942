"""This machine as the tests see it: the venv's commands, the checkout, and free TCP ports."""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
PROJECT_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now (another process may still take it before the caller binds)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports_in_a_row(count: int) -> list[int]:
    """``count`` consecutive free ports below the kernel's ephemeral range (32768 up on Linux).

    For a base the code under test counts up from (a second model's slots take the next pair): above it, an
    ephemeral port, any outgoing connection of any process may take one of them at any moment.
    """
    rng = random.Random()  # noqa: S311 (a port number, not a secret)
    for _ in range(200):
        first = rng.randrange(20_000, 32_000 - count)
        ports = list(range(first, first + count))
        if all(_bindable(port) for port in ports):
            return ports
    raise RuntimeError(f"no {count} free ports in a row between 20000 and 32000")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
