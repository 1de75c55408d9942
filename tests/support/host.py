"""This machine as the tests see it: the venv's commands, the checkout, and free TCP ports."""

from __future__ import annotations

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
