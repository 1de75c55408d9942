"""The model server for tests: its settings, a model source the test moves, waiting for it; or a real process."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from driftloop.io.bundle import ModelBundle, read_bundle
from driftloop.settings import TELEMETRY_OFF, Settings
from tests.support.cli import Driftloop
from tests.support.host import VENV_BIN, free_port


def serving_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """A file-mode server's settings with everything it writes under ``tmp_path`` (the prediction log: SQLite)."""
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "model_name": "churn",
        "model_source": "file",
        "reload_interval": 3600.0,  # the watcher sleeps through a test unless the test asks otherwise
        "max_batch_rows": 10,
        "max_body_bytes": 16 * 1024,
        "unknown_categories": "error",
        "prediction_log": True,
        "prediction_log_url": f"sqlite:///{tmp_path / 'predictions.db'}",
        "redis_url": None,
    }
    values.update(overrides)
    return Settings(**values)


class MovingSource:
    """A ``ModelSource`` (serving/source.py) over real bundle directories whose current version the test moves.

    What the registry source does as the champion alias moves, without MLflow: ``current`` is the version the alias
    names (None: no champion), ``failure`` an exception ``current_version`` raises (an unreachable registry), and
    ``fetched`` lists every version the server downloaded.
    """

    def __init__(self, bundles: dict[str, Path], current: str | None = None, name: str = "churn") -> None:
        self.name = name
        self.bundles = bundles
        self.current = current
        self.failure: Exception | None = None
        self.fetched: list[str] = []

    def current_version(self) -> str | None:
        if self.failure is not None:
            raise self.failure
        return self.current

    def fetch(self, version: str) -> ModelBundle:
        self.fetched.append(version)
        return read_bundle(self.bundles[version])


def wait_until(what: str, condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


@dataclass(frozen=True)
class ServerProcess:
    """``python -m driftloop.serving`` in a process of its own, on a real socket."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def server_process(tmp_path: Path, bundle_dir: Path | None, **env: str) -> Iterator[ServerProcess]:
    """The serving image's entry point on ``bundle_dir`` (file mode, no prediction log), ready; stopped after.

    Without a bundle: a server following an empty registry, up but never ready, answering every prediction with a
    503 (``not_ready``): a real server fault, counted in its /metrics.
    """
    port = free_port()
    source = (
        {"DRIFTLOOP_MODEL_SOURCE": "file", "DRIFTLOOP_MODEL_DIR": str(bundle_dir)}
        if bundle_dir is not None
        else {"DRIFTLOOP_MODEL_SOURCE": "registry", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    )
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_"))},
        **TELEMETRY_OFF,
        "DRIFTLOOP_HOME": str(tmp_path / "home"),
        **source,
        "DRIFTLOOP_SERVE_PORT": str(port),
        "DRIFTLOOP_PREDICTION_LOG": "false",
        **env,
    }
    up = "/ready" if bundle_dir is not None else "/health"
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "python"), "-m", "driftloop.serving"], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    running = ServerProcess(port, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(running.url + up, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the server was not ready within 60 s"
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def driftloop_serve(dl: Driftloop, log_dir: Path) -> Iterator[str]:
    """`driftloop serve` of ``dl``'s data directory (the champion, the prediction log), ready; its URL. Stopped after.

    Sets ``DRIFTLOOP_SERVE_PORT`` in ``dl.env`` to a free port, so helpers that read it (``stack.replay``) find it.
    """
    port = free_port()
    dl.env["DRIFTLOOP_SERVE_PORT"] = str(port)
    log_path = log_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(VENV_BIN / "driftloop"), "serve"], env=dl.env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("the model server", lambda: _ready(url) or server.poll() is not None, timeout=120, every=0.5)
        assert server.poll() is None, log_path.read_text()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
