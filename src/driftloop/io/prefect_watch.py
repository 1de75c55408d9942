"""Watch the Prefect API while a flow runs in this process; give the run up when the API stays gone.

Once Prefect's client has connected, it retries every call five times with back-off (about a minute), a task
that calls the API retries that again, and at exit each queued event waits 7 s for a websocket: a flow whose
server died takes many minutes to end. Nothing can record the run's states then, so waiting serves nobody.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from driftloop.io.services import is_healthy

PROBE_SECONDS = 2.0  # between two probes, and each probe's timeout


@contextmanager
def watch_prefect_api(
    health_url: str,
    patience: float,
    on_lost: Callable[[float], None],
    interval: float = PROBE_SECONDS,
) -> Iterator[None]:
    """Call ``on_lost(seconds gone)`` from a watcher thread once ``health_url`` has failed for ``patience`` seconds.

    It is probed every ``interval`` seconds, each probe waiting as long. One answer resets the count, so a server
    that restarts within ``patience`` costs the run nothing. From the last answer to ``on_lost`` takes at most
    ``patience`` plus three probes and their waits (12 s at the default interval).
    """
    stop = threading.Event()

    def watch() -> None:
        gone_since: float | None = None
        while not stop.wait(interval):
            if is_healthy(health_url, interval):
                gone_since = None
                continue
            now = time.monotonic()
            gone_since = now if gone_since is None else gone_since
            if now - gone_since >= patience and not stop.is_set():
                on_lost(now - gone_since)
                return

    watcher = threading.Thread(target=watch, name="driftloop-prefect-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
