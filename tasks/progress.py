"""Progress lines of the long training steps: rows read, split, fitted on, evaluated and checked.

They go to the flow run's log, which `driftloop train` shows as it runs; a step called outside a flow run (a
benchmark calling ``.fn``) logs to the ``driftloop.training`` logger instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

HEARTBEAT_SECONDS = 30.0  # a step that takes longer says it is still running this often

_Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def _logger() -> _Logger:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("driftloop.training")


def progress(message: str, *args: object) -> None:
    _logger().info(message, *args)


@contextmanager
def timed_step(
    message: str, *args: object, every: float = HEARTBEAT_SECONDS, done_so_far: Callable[[], str | None] | None = None
) -> Iterator[None]:
    """Log ``message``, then ``…: still running, 1 min 30 s`` every ``every`` seconds, then how long it took.

    For a step that reports nothing while it runs (a scikit-learn fit, an ONNX export): the heartbeat says it is
    alive and for how long, and, given ``done_so_far``, how far along it is (``…, 1 min 30 s: 37 of 100 stages``)
    whenever that says (``core.fit_progress``); the last line says it too. The logger is taken here, on the caller's
    thread, where the flow run's context is. The last line is left out when the step fails.
    """
    logger = _logger()
    text = message % args if args else message
    logger.info("%s", text)
    finished = threading.Event()
    started = time.monotonic()

    def so_far() -> str:
        said = done_so_far() if done_so_far is not None else None
        return f": {said}" if said else ""

    def beat() -> None:
        while not finished.wait(every):
            logger.info("%s: still running, %s%s", text, elapsed(time.monotonic() - started), so_far())

    heartbeat = threading.Thread(target=beat, name="driftloop-heartbeat", daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        finished.set()
        heartbeat.join()
    logger.info("%s: done in %s%s", text, elapsed(time.monotonic() - started), so_far())


def elapsed(seconds: float) -> str:
    """``42.0 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
