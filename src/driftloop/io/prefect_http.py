"""An httpx client for Prefect's REST API that waits out a busy server the way Prefect's own client does.

Prefect's server answers 503 when its database is busy (SQLite locked, a connection pool timing out) and 429 when
it sheds load; its Python client sends such a request again after a pause. Code that calls the REST API with plain
httpx (the demo's polling) does the same here, so a busy server slows it down instead of failing it. Seen on a
loaded 2-core machine: a `create_flow_run` answered 503 while the server's scheduler wrote the next runs.
"""

from __future__ import annotations

import time

import httpx

RETRIED_STATUSES = frozenset({429, 503})
ATTEMPTS = 5
FIRST_PAUSE_SECONDS = 0.5
LONGEST_PAUSE_SECONDS = 8.0


def pause_before_retry(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): the server's Retry-After if it gave one, else doubling."""
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after), LONGEST_PAUSE_SECONDS)
    return min(FIRST_PAUSE_SECONDS * 2.0 ** (attempt - 1), LONGEST_PAUSE_SECONDS)


class _RetryBusy(httpx.BaseTransport):
    def __init__(self, attempts: int) -> None:
        self._inner = httpx.HTTPTransport()
        self._attempts = attempts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(1, self._attempts):
            response = self._inner.handle_request(request)
            if response.status_code not in RETRIED_STATUSES:
                return response
            response.read()
            response.close()
            time.sleep(pause_before_retry(attempt, response.headers.get("retry-after")))
        return self._inner.handle_request(request)  # the last attempt's answer, whatever it is

    def close(self) -> None:
        self._inner.close()


def prefect_api_client(
    api_url: str, timeout: float = 30, attempts: int = ATTEMPTS, auth: tuple[str, str] | None = None
) -> httpx.Client:
    """A client of the Prefect REST API at ``api_url`` (ending in ``/api``) that retries 429 and 503 answers."""
    return httpx.Client(base_url=api_url, timeout=timeout, auth=auth, transport=_RetryBusy(attempts))
