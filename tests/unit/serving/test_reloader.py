"""The reloader: ``ModelHolder`` follows its source's version and swaps atomically; ``ModelWatcher`` drives it.

The source is ``MovingSource`` (tests/support/serving.py): the ``ModelSource`` seam over real bundle directories, as
the registry's champion alias moves. Version 1 and 2 are two different fitted models; version 3 fails its
self-check.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from driftloop.serving.model import ServingModel
from driftloop.serving.reloader import ModelHolder, ModelWatcher
from tests.support.bundles import TrainedModel
from tests.support.serving import MovingSource, wait_until

WATCHER_THREAD = "driftloop-watcher-model"  # ModelWatcher names its thread after its model ("model" unnamed)

Reload = tuple[str, str | None, str | None]


@pytest.fixture
def source(bundle_dir: Path, other_bundle_dir: Path, broken_bundle_dir: Path) -> MovingSource:
    return MovingSource({"1": bundle_dir, "2": other_bundle_dir, "3": broken_bundle_dir})


@pytest.fixture
def reloads() -> list[Reload]:
    """What ``on_reload`` was told: (result, version of the model swapped in, error)."""
    return []


@pytest.fixture
def holder(source: MovingSource, reloads: list[Reload]) -> ModelHolder:
    def on_reload(result: str, model: ServingModel | None, error: str | None) -> None:
        reloads.append((result, model.version if model else None, error))

    return ModelHolder(source, max_rows=100, unknown_categories="error", on_reload=on_reload)


def proba_of(model: ServingModel, trained: TrainedModel, rows: int = 5) -> np.ndarray:
    _, proba = model.predict(model.parser.from_records(trained.records(rows)))
    return proba


def test_nothing_is_served_until_the_source_names_a_version(holder: ModelHolder, source: MovingSource) -> None:
    assert holder.refresh() is False
    assert holder.model is None
    assert (holder.last_failure, holder.last_check_error, source.fetched) == (None, None, [])


def test_a_new_version_is_loaded_checked_and_swapped_in(
    holder: ModelHolder,
    source: MovingSource,
    reloads: list[Reload],
    served_model: TrainedModel,
    other_model: TrainedModel,
) -> None:
    source.current = "1"
    assert holder.refresh() is True
    first = holder.model
    assert first is not None
    assert first.version == "1"
    assert holder.refresh() is False  # the same version: nothing fetched again
    assert source.fetched == ["1"]

    source.current = "2"
    assert holder.refresh() is True

    second = holder.model
    assert second is not None
    assert second.version == "2"
    assert reloads == [("success", "1", None), ("success", "2", None)]
    # A request that read the old model before the swap finishes with it, unchanged and whole.
    np.testing.assert_allclose(proba_of(first, served_model), served_model.probabilities[:5], rtol=1e-6)
    assert not np.allclose(proba_of(second, served_model), proba_of(first, served_model))


def test_a_version_failing_its_self_check_is_refused_and_the_old_one_keeps_serving(
    holder: ModelHolder, source: MovingSource, reloads: list[Reload]
) -> None:
    source.current = "2"
    holder.refresh()
    serving = holder.model

    source.current = "3"
    assert holder.refresh() is False

    assert holder.model is serving
    failure = holder.last_failure
    assert failure is not None
    assert failure.version == "3"
    assert failure.error.startswith("SelfCheckFailed: version 3 (serving.onnx): probabilities differ")
    assert time.time() - failure.at < 60
    assert reloads[-1] == ("failure", None, failure.error)
    # Refused once: the same version is not downloaded and checked again at every refresh.
    assert holder.refresh() is False
    assert source.fetched == ["2", "3"]
    assert holder.last_failure is failure

    source.current = "1"  # the alias moves on (a rollback): the next good version clears the failure
    assert holder.refresh() is True
    assert holder.model is not None
    assert holder.model.version == "1"
    assert holder.last_failure is None


def test_a_source_that_cannot_be_read_is_reported_and_serving_goes_on(
    holder: ModelHolder, source: MovingSource
) -> None:
    source.current = "1"
    holder.refresh()
    serving = holder.model

    source.failure = ConnectionError("registry unreachable")
    assert holder.refresh() is False

    assert holder.model is serving
    assert holder.last_check_error == "ConnectionError: registry unreachable"
    assert holder.last_failure is None

    source.failure = None
    source.current = "2"
    assert holder.refresh() is True
    assert holder.last_check_error is None


def test_readers_always_see_one_whole_model_while_versions_swap(
    holder: ModelHolder, source: MovingSource, served_model: TrainedModel, other_model: TrainedModel
) -> None:
    source.current = "1"
    holder.refresh()
    assert holder.model is not None
    expected = {"1": proba_of(holder.model, served_model)}
    source.current = "2"
    holder.refresh()
    assert holder.model is not None
    expected["2"] = proba_of(holder.model, served_model)
    stop = threading.Event()
    seen: list[str] = []
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            model = holder.model  # what a request does: read once, use that object to the end
            if model is None:
                problems.append("no model")
                continue
            if not np.array_equal(proba_of(model, served_model), expected[model.version]):
                problems.append(f"version {model.version} answered as another version")
            seen.append(model.version)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for version in ["1", "2"] * 3:
            source.current = version
            start = len(seen)
            assert holder.refresh() is True
            # Each swap stays in place until a reader has used it (a busy machine may not schedule them otherwise).
            deadline = time.monotonic() + 10
            while version not in seen[start:] and time.monotonic() < deadline and not problems:
                time.sleep(0.001)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=10)
    assert problems == []
    assert {"1", "2"} <= set(seen)


def test_the_watcher_follows_the_source_and_stops_cleanly(holder: ModelHolder, source: MovingSource) -> None:
    source.current = "1"
    watcher = ModelWatcher(holder, interval=0.01)
    watcher.start()
    try:
        wait_until("version 1 to serve", lambda: holder.model is not None and holder.model.version == "1")
        source.current = "2"
        wait_until("version 2 to serve", lambda: holder.model is not None and holder.model.version == "2")
    finally:
        began = time.monotonic()
        watcher.stop()
        stopped_in = time.monotonic() - began

    assert stopped_in < 1.0
    assert WATCHER_THREAD not in {thread.name for thread in threading.enumerate()}
    source.current = "1"
    time.sleep(0.05)  # five intervals: a watcher still running would have swapped by now
    assert holder.model is not None
    assert holder.model.version == "2"


def test_a_watcher_stopped_mid_wait_does_not_wait_out_its_interval(holder: ModelHolder) -> None:
    watcher = ModelWatcher(holder, interval=3600)
    watcher.start()
    assert WATCHER_THREAD in {thread.name for thread in threading.enumerate()}

    began = time.monotonic()
    watcher.stop()

    assert time.monotonic() - began < 1.0
    assert WATCHER_THREAD not in {thread.name for thread in threading.enumerate()}
