"""Follow the source's version: load, self-check and swap a new model in atomically, or keep the old one.

Requests read ``holder.model`` once and use that object to the end, so a swap (one attribute assignment)
never disturbs a request in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from driftloop.serving.model import ServingModel, load_model
from driftloop.serving.source import ModelSource

log = logging.getLogger("driftloop.serving")


@dataclass(frozen=True)
class ReloadFailure:
    version: str
    error: str
    at: float


class ModelHolder:
    """The model being served, the version that failed to replace it, and how to refresh."""

    def __init__(
        self,
        source: ModelSource,
        max_rows: int,
        unknown_categories: str,
        on_reload: Callable[[str, ServingModel | None, str | None], None] | None = None,
    ) -> None:
        self._source = source
        self._max_rows = max_rows
        self._unknown_categories = unknown_categories
        self._on_reload = on_reload
        self._lock = threading.Lock()  # one refresh at a time; requests never take it
        self.model: ServingModel | None = None
        self.last_failure: ReloadFailure | None = None
        self.last_check_error: str | None = None

    def refresh(self) -> bool:
        """Load the source's current version if it differs from the served one; True when a swap happened."""
        with self._lock:
            try:
                wanted = self._source.current_version()
                self.last_check_error = None
            except Exception as error:  # registry unreachable: keep serving, report, try again later
                self.last_check_error = f"{type(error).__name__}: {error}"
                log.warning("%s: cannot read the current model version: %s", self._source.name, self.last_check_error)
                return False
            current = self.model.version if self.model else None
            if wanted is None or wanted == current:
                return False
            if self.last_failure is not None and self.last_failure.version == wanted:
                return False  # already refused; wait for the alias to move again
            try:
                model = load_model(self._source.fetch(wanted), self._max_rows, self._unknown_categories)
            except Exception as error:
                message = f"{type(error).__name__}: {error}"
                self.last_failure = ReloadFailure(version=wanted, error=message, at=time.time())
                log.error(
                    "%s: version %s refused, still serving %s: %s",
                    self._source.name, wanted, current or "nothing", message,
                )  # fmt: skip
                if self._on_reload:
                    self._on_reload("failure", None, message)
                return False
            self.model = model
            self.last_failure = None
            log.info("%s: now serving version %s (was %s)", self._source.name, wanted, current or "nothing")
            if self._on_reload:
                self._on_reload("success", model, None)
            return True


class ModelWatcher:
    """A daemon thread calling ``holder.refresh()`` every ``interval`` seconds until stopped."""

    def __init__(self, holder: ModelHolder, interval: float, name: str = "model") -> None:
        self._holder = holder
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"driftloop-watcher-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._holder.refresh()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class ModelEntry:
    """One model a server serves: its name, the holder following its source, and the watcher refreshing it.

    Each model loads, self-checks and swaps on its own: one that fails to load leaves the others serving.
    """

    def __init__(
        self,
        source: ModelSource,
        max_rows: int,
        unknown_categories: str,
        reload_interval: float,
        on_reload: Callable[[str, ServingModel | None, str | None], None] | None = None,
    ) -> None:
        self.name = source.name
        self.holder = ModelHolder(source, max_rows, unknown_categories, on_reload)
        self.watcher = ModelWatcher(self.holder, reload_interval, self.name)

    def not_ready_reason(self) -> str:
        holder = self.holder
        if holder.last_failure is not None:
            return f"no model is serving: version {holder.last_failure.version} failed: {holder.last_failure.error}"
        if holder.last_check_error is not None:
            return f"no model yet: cannot read the model source: {holder.last_check_error}"
        # Its versions may exist and have been refused (the gate, the parity check): `models` says why (trial 18).
        return (
            f"no model yet: model {self.name!r} has no champion (`driftloop models` lists its versions and why none "
            "was promoted; `driftloop train` trains one)"
        )
