"""An exclusive ``flock`` on a file, waited for up to a bound: the kernel lets go when its holder dies."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(
    path: Path, wait_seconds: float, refused: Callable[[], Exception], *, poll: float = 0.05, mode: int = 0o644
) -> Iterator[int]:
    """Hold the lock on ``path`` (created with ``mode``) for the block; yields its file descriptor.

    Waits up to ``wait_seconds`` for whoever holds it, then raises ``refused()``. Not re-entrant, and not
    inherited by child processes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise refused() from None
                time.sleep(poll)
        yield fd
    finally:
        os.close(fd)
