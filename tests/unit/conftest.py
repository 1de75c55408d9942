"""Unit-test session settings: what the machine does for the tests, never what they check."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits

from tests.support.health_server import HealthServer


@pytest.fixture(scope="session", autouse=True)
def _one_native_thread() -> Iterator[None]:
    """OpenMP and BLAS run one thread each in the unit tests.

    Their threads spin while they wait for work. On a two-core machine shared with other work (the other engineers'
    runs, an integration suite), a spinning thread waiting for a core another process holds made one
    HistGradientBoosting fit take 18 s instead of half a second; with one thread a fit takes as long as with two
    when the machine is idle, and as long whatever else runs. The libraries are loaded by now (collection imported
    them), so the limits reach them.
    """
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session", autouse=True)
def _imports_out_of_the_collectors_way() -> Iterator[None]:
    """Everything collection imported (MLflow, Evidently, scikit-learn, ...) moves to the permanent generation.

    Python's full collections walk every live object: with these libraries loaded, a few million, and the suite's
    twenty full collections took six seconds. Frozen objects are skipped (they are freed as usual when their last
    reference goes; only a cycle among them would wait for the end of the session). The server does the same
    after it starts (serving/server.py).
    """
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def health() -> Iterator[HealthServer]:
    """A real health endpoint (tests/support/health_server.py), stopped after the test unless it stopped it."""
    server = HealthServer()
    server.start()
    yield server
    if server.running:
        server.stop()
