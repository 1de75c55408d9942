"""Where a model came from: the code's git commit and who asked for an action."""

from __future__ import annotations

import getpass
import socket
import subprocess
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[3]


def git_commit(directory: Path = PROJECT_DIR) -> str:
    """HEAD's sha (``-dirty`` when tracked files have uncommitted changes), or ``unknown`` outside a checkout."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def flow_run_url(prefect_ui: str, flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI (the same link Prefect logs as "View at")."""
    return f"{prefect_ui}/runs/flow-run/{flow_run_id}"


def local_actor(command: str) -> str:
    """``user@host via <command>``: who moved an alias from the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} via {command}"
