"""The real `driftloop` console script for integration tests, against one data directory and a Prefect server."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from driftloop.io.prefect_http import prefect_api_client
from driftloop.settings import TELEMETRY_OFF
from tests.support.host import VENV_BIN


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path

    def client(self) -> httpx.Client:
        return prefect_api_client(self.api_url)


@dataclass(frozen=True)
class Driftloop:
    """Runs the real console script against one data directory and the session's Prefect server."""

    home: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(VENV_BIN / "driftloop"), *args],
            env=self.env,
            cwd=self.home.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"driftloop {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
            )
        return result

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"


def make_driftloop(tmp: Path, prefect: PrefectServer, **settings: str) -> Driftloop:
    """A fresh data directory under ``tmp`` using ``prefect``; ``settings`` become ``DRIFTLOOP_<KEY>`` variables."""
    home = tmp / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))}
    env.update(TELEMETRY_OFF)
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DRIFTLOOP_HOME": str(home),
            "PREFECT_API_URL": prefect.api_url,
            "DRIFTLOOP_START_MLFLOW_UI": "false",
            # Evidently's HTML report costs a drifting check about 13 s of CPU; the tests that read it ask for it.
            "DRIFTLOOP_DRIFT_REPORT": "false",
            # Logging the scikit-learn pipeline beside the ONNX model costs a training run about 2.3 s of CPU; the
            # tests that load it ask for it.
            "DRIFTLOOP_LOG_SKLEARN_MODEL": "false",
            "COLUMNS": "200",
        }
    )
    env.update({f"DRIFTLOOP_{key.upper()}": value for key, value in settings.items()})
    return Driftloop(home=home, env=env)
