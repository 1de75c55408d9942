"""Real model bundles for the serving tests, trained and written once per session (tests/support/bundles.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bundles import TrainedModel, train_model, write_bundle


@pytest.fixture(scope="session")
def served_model() -> TrainedModel:
    return train_model(rows=600, seed=0)


@pytest.fixture(scope="session")
def other_model() -> TrainedModel:
    """Another fit (other rows): its answers differ from ``served_model``'s."""
    return train_model(rows=400, seed=1)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, served_model: TrainedModel) -> Path:
    """``served_model`` as version 1 of churn. Read-only: tests that change a bundle write their own."""
    return write_bundle(tmp_path_factory.mktemp("bundle") / "v1", served_model, "1")


@pytest.fixture(scope="session")
def other_bundle_dir(tmp_path_factory: pytest.TempPathFactory, other_model: TrainedModel) -> Path:
    """``other_model`` as version 2 of churn."""
    return write_bundle(tmp_path_factory.mktemp("bundle") / "v2", other_model, "2")


@pytest.fixture(scope="session")
def broken_bundle_dir(
    tmp_path_factory: pytest.TempPathFactory, served_model: TrainedModel, other_model: TrainedModel
) -> Path:
    """Version 3: ``served_model``'s graphs with ``other_model``'s self-check, so the server's self-check fails."""
    return write_bundle(tmp_path_factory.mktemp("bundle") / "v3", served_model, "3", selfcheck=other_model.selfcheck())
