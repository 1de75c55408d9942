"""Data fixtures shared by every test: the bundled churn snapshot and the synthetic loans snapshot."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.io.datasets import load_schema, read_snapshot
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA
from tests.support.loans import write_loans


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def pytest_sessionstart(session: pytest.Session) -> None:
    """SIGTERM (a CI job cancelled, ``timeout make test``) unwinds like Ctrl-C, so fixtures tear down.

    Otherwise pytest dies at once and leaves what the integration fixtures started running: servers, the
    compose stack's containers and volumes, and its Prefect worker, which goes on training and deploying.
    """
    signal.signal(signal.SIGTERM, _interrupt)


# `make test` runs the suite on pytest-xdist workers that each take a whole module at a time, in collection order
# (--dist loadfile --no-loadscope-reorder): a module's tests share module-scoped fixtures (a trained registry, built
# images, a running server). The longest modules go first, so no worker starts one of them last while the others
# sit idle; the short ones fill in at the end. A module missing here only runs later: when a new module takes more
# than a minute in CI's --durations, put it in its place. Seconds as measured in `.ci/run` (three workers on a busy
# 2-core machine, setup included), 2026-12-07.
LONGEST_MODULES_FIRST = (
    "integration/test_decisions",  # ~620 s
    "integration/test_training_flow",  # ~450 s
    "integration/test_tasks",  # ~440 s
    "integration/test_drift_loop",  # ~420 s
    "integration/test_compose_stack",  # ~390 s
    "integration/test_many_models",  # ~350 s
    "integration/test_score",  # ~340 s
    "integration/test_ship",  # ~330 s
    "unit/test_cli_checks",  # ~320 s
    "integration/test_monitoring_history",  # ~270 s
    "integration/test_prefect_lost",  # ~260 s
    "integration/test_gate_other_data",  # ~250 s
    "integration/test_schema_evolution",  # ~220 s
    "integration/test_promotion_race",  # ~220 s
    "integration/test_champion_guard",  # ~220 s
    "integration/test_serving",  # ~210 s
    "integration/test_rollout",  # ~210 s
    "integration/test_control_plane_auth",  # ~120 s
    "integration/test_score_deployment",  # ~110 s
    "integration/test_rollout_many_models",  # ~110 s
    "integration/test_performance_estimate",  # ~110 s
    "integration/test_drift_weighted",  # ~90 s
    "unit/test_training_window",  # ~60 s
    "integration/test_big_window",  # ~60 s
    "integration/test_concurrent_start",  # ~50 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_MODULES_FIRST)}
    tests = Path(__file__).parent
    # A stable sort: tests keep their order within a module, and the other modules theirs after these.
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).with_suffix("").as_posix(), len(rank)))


MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _no_mlflow_uri_left_in_the_environment() -> Iterator[None]:
    """A test that pointed MLflow somewhere must not leave that store to the next test on its worker.

    MLflow keeps the URIs in process globals and in the environment; both are put back.

    ``Settings`` reads ``MLFLOW_TRACKING_URI``; a URI left in the environment by one module (``mlflow.set_tracking_uri``
    writes it there) made another module's in-process rollouts use the first module's registry.
    """
    before = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:  # its process-wide URIs too: a client given only a tracking URI uses the registry one
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def churn_schema() -> DatasetSchema:
    return load_schema(BUNDLED_SCHEMA)


@pytest.fixture(scope="session")
def _churn_frame_once() -> pd.DataFrame:
    return read_snapshot(BUNDLED_DATA)


@pytest.fixture
def churn_frame(_churn_frame_once: pd.DataFrame) -> pd.DataFrame:
    """The bundled churn snapshot; a fresh copy per test, so tests may modify it."""
    return _churn_frame_once.copy()


@pytest.fixture
def loans_dir(tmp_path: Path) -> Path:
    """A directory holding ``loans.parquet`` and ``loans.schema.yaml`` (see tests/support/loans.py)."""
    directory = tmp_path / "loans"
    write_loans(directory)
    return directory
