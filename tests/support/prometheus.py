"""A real Prometheus (Debian's ``prometheus``) scraping real servers, for the dashboards' and alerts' queries.

Skipped without the binary, failed in CI (``CI=true``), where .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.host import free_port

Labels = Mapping[str, Mapping[str, str]]  # target (host:port) → its extra series labels


@dataclass(frozen=True)
class Prometheus:
    url: str
    config: Path

    def scrape(self, targets: list[str], interval: str = "1s", labels: Labels | None = None) -> None:
        """Scrape these targets from now on (the config rewritten, then reloaded)."""
        _write_config(self.config, targets, interval, labels)
        assert httpx.post(f"{self.url}/-/reload", timeout=10).status_code == 200

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now, or at the Unix time ``at``; fails the test if Prometheus refuses it."""
        params: dict[str, str | float] = {"query": expr} if at is None else {"query": expr, "time": at}
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": start, "end": end, "step": step}
        answer = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=30).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The first non-empty answer to ``expr``."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            assert time.monotonic() < deadline, f"Prometheus had no {expr} after {timeout:.0f} s"
            time.sleep(0.5)


def require_prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        reason = "the prometheus binary is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"Prometheus is required in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return binary


@contextmanager
def prometheus_scraping(
    directory: Path, targets: list[str], interval: str = "1s", labels: Labels | None = None
) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (host:port, /metrics) every ``interval``, ready; stopped after.

    ``labels`` gives a target's series extra labels, as a Kubernetes scrape job's relabelling would (the pod's
    namespace and labels).
    """
    binary = require_prometheus()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    _write_config(config, targets, interval, labels)
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    running = Prometheus(f"http://127.0.0.1:{port}", config)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{running.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (directory / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus was not ready within 60 s"
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _write_config(path: Path, targets: list[str], interval: str, labels: Labels | None = None) -> None:
    static = [{"targets": [target], "labels": dict((labels or {}).get(target, {}))} for target in targets]
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "scrape_configs": [{"job_name": "driftloop-serving", "static_configs": static}],
            }
        )
    )
