"""Integration fixtures: a real Prefect server (started once per session) and the real `driftloop` CLI.

The helpers they use (``Driftloop``, ``PrefectServer``, ``make_driftloop``, ``free_port``) live in tests/support.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.io import services
from driftloop.settings import TELEMETRY_OFF
from tests.support import prefect_db
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.host import VENV_BIN, free_port


@pytest.fixture(scope="session", autouse=True)
def _prefect_database_template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> None:
    """New Prefect servers start from one migrated, empty database (tests/support/prefect_db.py says why)."""
    base = tmp_path_factory.getbasetemp()
    prefect_db.share_under(base if worker_id == "master" else base.parent)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port with its own SQLite database, for the whole session."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    prefect_db.seed(home / "prefect")
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


@pytest.fixture
def driftloop(tmp_path: Path, prefect_server: PrefectServer) -> Driftloop:
    """A fresh data directory (empty registry) using the session's Prefect server."""
    return make_driftloop(tmp_path, prefect_server)
