"""Integration fixtures: a real Prefect server (started once per session) and the real `driftloop` CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from driftloop.io import services
from driftloop.settings import TELEMETRY_OFF

VENV_BIN = Path(sys.executable).parent
PROJECT_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=30)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port with its own SQLite database, for the whole session."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    spec = services.ServiceSpec(
        name="prefect-server",
        argv=(str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)),
        health_url=f"{api}/health",
        listen_url=api,
        env={**TELEMETRY_OFF, "PREFECT_HOME": str(home / "prefect"), "PREFECT_UI_API_URL": api},
        run_dir=home / "run",
    )
    try:
        services.start_all([spec], timeout=180)
    except Exception as error:
        pytest.fail(f"could not start a Prefect server for the integration tests: {error}")
    yield PrefectServer(api_url=api, home=home)
    services.stop(spec)


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
    home = tmp / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))}
    env.update(TELEMETRY_OFF)
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DRIFTLOOP_HOME": str(home),
            "PREFECT_API_URL": prefect.api_url,
            "DRIFTLOOP_START_MLFLOW_UI": "false",
            "COLUMNS": "200",
        }
    )
    env.update({f"DRIFTLOOP_{key.upper()}": value for key, value in settings.items()})
    return Driftloop(home=home, env=env)


@pytest.fixture
def driftloop(tmp_path: Path, prefect_server: PrefectServer) -> Driftloop:
    """A fresh data directory (empty registry) using the session's Prefect server."""
    return make_driftloop(tmp_path, prefect_server)
