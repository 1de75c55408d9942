"""A concurrent client POSTing /predict in a loop, counting every non-2xx, transport error and answering version."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from driftloop.deploy.routing import ProxyLimits

KEPT_FAILURES = 50
# A client waits on an answer as long as the proxy waits on a slot, and a little longer: a request that fails is then
# the proxy's answer (504 after its read timeout), not this client's impatience. A starved canary's few requests
# took over 30 s on a loaded CI machine before the rollback took it out.
CLIENT_TIMEOUT = ProxyLimits().read + 10


@dataclass
class LoadReport:
    requests: int = 0
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)  # x-model-version of the 200s
    failures: list[str] = field(default_factory=list)  # the first few, for the assertion message

    @property
    def failed(self) -> int:
        return self.requests - self.ok


class PredictLoad:
    """``threads`` clients hitting ``url`` + ``path`` (``/predict``) until the ``with`` block ends.

    ``keep_alive=False`` opens a connection per request (see tests/integration/test_rollout.py for why a proxy
    reload can lose a request sent on a kept-alive connection at the wrong instant).
    """

    def __init__(
        self,
        url: str,
        rows: Sequence[dict[str, Any]],
        threads: int = 4,
        *,
        keep_alive: bool = True,
        path: str = "/predict",
    ) -> None:
        self.url = url
        self.path = path
        self.rows = list(rows)
        self.report = LoadReport()
        self._limits = httpx.Limits(max_keepalive_connections=10 if keep_alive else 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT, limits=self._limits) as client:
            n = index
            while not self._stop.is_set():
                n += 1
                try:
                    answer = client.post(self.path, json={"features": self.rows[n % len(self.rows)]})
                except httpx.HTTPError as error:
                    self._count(None, f"transport: {error!r}", type(error).__name__)
                    continue
                if answer.status_code == 200:
                    self._count(answer.headers.get("x-model-version", "?"), None, None, answer.status_code)
                else:
                    self._count(None, f"{answer.status_code} {answer.text[:200]}", None, answer.status_code)

    def _count(self, version: str | None, failure: str | None, error: str | None, status: int | None = None) -> None:
        report = self.report
        with self._lock:
            report.requests += 1
            if status is not None:
                report.statuses[status] += 1
            if error is not None:
                report.errors[error] += 1
            if version is not None:
                report.ok += 1
                report.versions[version] += 1
            if failure is not None and len(report.failures) < KEPT_FAILURES:
                report.failures.append(failure)

    def __enter__(self) -> PredictLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 10)
