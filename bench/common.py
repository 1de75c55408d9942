"""What the benchmarks share: free ports, and champions trained with the real CLI into a scratch home."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from driftloop.settings import TELEMETRY_OFF

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_versions(home: Path, estimators: Sequence[str]) -> float:
    """`driftloop train --estimator E` for each estimator into ``home`` (its own Prefect server, stopped after).

    Returns the seconds it took. The output goes to ``home/train.log``.

    Raises:
        RuntimeError: A training run failed (the message ends with the log's tail).
    """
    env = {**os.environ, **TELEMETRY_OFF, "DRIFTLOOP_HOME": str(home), "DRIFTLOOP_START_MLFLOW_UI": "false"}
    env["DRIFTLOOP_PREFECT_PORT"] = str(free_port())
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "train.log"
    started = time.perf_counter()
    try:
        for estimator in estimators:
            with log.open("ab") as out:
                done = subprocess.run(
                    [str(VENV_BIN / "driftloop"), "train", "--estimator", estimator],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False,
                )  # fmt: skip
            if done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"driftloop train failed (exit {done.returncode}, log {log}):\n{tail}")
    finally:
        subprocess.run([str(VENV_BIN / "driftloop"), "down"], cwd=ROOT, env=env, capture_output=True, check=False)
    return time.perf_counter() - started
