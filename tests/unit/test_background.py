"""core.background: one call on a thread of its own, its result or its error through a Future."""

from __future__ import annotations

import threading

import pytest

from driftloop.core.background import completed, in_background


def _thread_name() -> str:
    return threading.current_thread().name


def test_the_call_runs_on_another_thread_and_gives_its_result() -> None:
    assert in_background(_thread_name).result(timeout=10) != threading.current_thread().name
    assert in_background(sorted, [3, 1, 2], reverse=True).result(timeout=10) == [3, 2, 1]


def test_the_calls_error_is_raised_by_result() -> None:
    future = in_background(int, "not a number")
    with pytest.raises(ValueError, match="not a number"):
        future.result(timeout=10)


def test_the_thread_ends_with_its_call() -> None:
    started = threading.Event()
    release = threading.Event()

    def wait() -> str:
        started.set()
        release.wait(10)
        return _thread_name()

    future = in_background(wait)
    assert started.wait(10)
    name = next(t.name for t in threading.enumerate() if t.name.startswith("driftloop-background"))
    release.set()
    assert future.result(timeout=10) == name
    for thread in threading.enumerate():
        if thread.name == name:
            thread.join(10)
    assert all(t.name != name for t in threading.enumerate())


def test_completed_holds_its_value() -> None:
    future = completed({"share": 0.5})
    assert future.done()
    assert future.result(timeout=0) == {"share": 0.5}
