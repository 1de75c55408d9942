"""A computation on a thread of its own, as a ``Future``, for work that releases the GIL (numpy's sorts).

No pool is kept: the thread ends with its one call. A result the caller never asks for is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def in_background(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Start ``call(*args, **kwargs)`` on a new thread; its ``Future`` gives the result or raises its error."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftloop-background")
    try:
        return pool.submit(call, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)


def completed(value: T) -> Future[T]:
    """A ``Future`` that already holds ``value``: the same shape as ``in_background`` for work already done."""
    future: Future[T] = Future()
    future.set_result(value)
    return future
