"""The prediction log's writer: served predictions queued off the request path and written in batches.

The request path builds one ``PredictionEvent`` per request (arrays as they came out of the model, no per-row
work), or a ``PredictionRow`` for a one-row request, and hands it to ``PredictionLogger.submit``, which only
appends to a bounded in-memory queue. One writer thread hands queued events to the store
(``io/prediction_store.py``) in batches.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from driftloop.io.prediction_store import Logged, PredictionStore

log = logging.getLogger(__name__)


class PredictionLogger:
    """Queues events from the request path and writes them in batches from one daemon thread.

    The queue holds at most ``max_queue`` rows, counting those the writer has taken but not yet written, so
    memory stays bounded even when the store stalls. ``submit`` never blocks: an event that does not fit is
    dropped. Rows whose ``store.write`` raised are lost too and also count as dropped: ``on_error`` gets the
    exception and ``on_drop`` the rows, and the writer carries on with the next batch.

    Callbacks run on the caller's thread (``on_drop`` for a full queue) or on the writer thread (``on_write``,
    ``on_drop`` after a failed write, ``on_error``), so they must be thread-safe, as Prometheus counters are.
    """

    enabled = True

    def __init__(
        self,
        store: PredictionStore,
        *,
        max_queue: int = 20_000,
        batch_max_rows: int = 2_000,
        flush_interval: float = 0.25,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if max_queue < 1 or batch_max_rows < 1 or flush_interval <= 0:
            raise ValueError("max_queue and batch_max_rows must be >= 1 and flush_interval > 0")
        self._store = store
        self._max_queue = max_queue
        self._batch_max_rows = batch_max_rows
        self._flush_interval = flush_interval
        self._on_drop = on_drop
        self._on_write = on_write
        self._on_error = on_error
        self._queue: deque[Logged] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._pending = 0
        self._written = 0
        self._dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def pending(self) -> int:
        """Rows submitted and not yet written or dropped."""
        return self._pending

    @property
    def alive(self) -> bool:
        """Whether the writer thread is running."""
        return self._thread.is_alive()

    def submit(self, event: Logged) -> bool:
        """Queue an event without blocking; False if it was dropped (queue full) or the logger is closed."""
        rows = event.rows
        with self._ready:
            if self._closed:
                return False
            pending = self._pending + rows
            if pending > self._max_queue:
                self._dropped += rows
                accepted = False
            else:
                self._queue.append(event)
                self._pending = pending
                accepted = True
                # Wake the writer once per full batch; otherwise it wakes on its own every flush_interval.
                if pending >= self._batch_max_rows > pending - rows:
                    self._ready.notify()
        if not accepted and self._on_drop is not None:
            self._call(self._on_drop, rows)
        return accepted

    def _take_batch(self) -> tuple[list[Logged], bool]:
        """The next events to write (up to ``batch_max_rows`` rows, at least one event) and whether to stop."""
        with self._ready:
            if not self._closed and self._pending < self._batch_max_rows:
                self._ready.wait(self._flush_interval)
            batch: list[Logged] = []
            rows = 0
            while self._queue and rows < self._batch_max_rows:
                event = self._queue.popleft()
                batch.append(event)
                rows += event.rows
            return batch, self._closed and not self._queue

    def _run(self) -> None:
        while True:
            batch, last = self._take_batch()
            if batch:
                self._write(batch)
            if last:
                return

    def _write(self, batch: list[Logged]) -> None:
        rows = sum(event.rows for event in batch)
        try:
            self._store.write(batch)
        except Exception as error:  # whatever the store raises, the writer must live on
            with self._ready:
                self._pending -= rows
                self._dropped += rows
            self._report_failure(error, rows)
            return
        with self._ready:
            self._pending -= rows
            self._written += rows
        if self._on_write is not None:
            self._call(self._on_write, rows)

    def _report_failure(self, error: Exception, rows: int) -> None:
        if self._on_error is None:
            log.error("prediction log: %d row(s) lost, the store failed: %s", rows, error)
        else:
            self._call(self._on_error, error)
        if self._on_drop is not None:
            self._call(self._on_drop, rows)

    @staticmethod
    def _call(callback: Callable[[Any], None], argument: Any) -> None:
        try:
            callback(argument)
        except Exception:
            log.exception("prediction log: callback %r failed", callback)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the writer; waits at most ``timeout`` seconds. Idempotent."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("prediction log: writer still busy after %.1f s with %d row(s) pending", timeout, self._pending)


class NullPredictionLogger:
    """The logger to use when the prediction log is off: keeps nothing, counts nothing."""

    enabled = False
    written = 0
    dropped = 0
    pending = 0
    alive = False

    def submit(self, event: Logged) -> bool:
        """Always False: the event is not logged (and not counted as dropped)."""
        return False

    def close(self, timeout: float = 10.0) -> None:
        return None
