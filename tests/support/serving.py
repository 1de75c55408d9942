"""The model server in-process: its settings for a test, a model source the test moves, and waiting for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driftloop.io.bundle import ModelBundle, read_bundle
from driftloop.settings import Settings


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
