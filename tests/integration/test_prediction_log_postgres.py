"""The prediction log against a real PostgreSQL: the same store contract as on SQLite, plus the logger end to end.

A private cluster is started for this module (tests/support/postgres.py); without PostgreSQL binaries the module is
skipped, or fails under CI=true.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from driftloop.io.prediction_store import SqlPredictionStore, open_prediction_log
from driftloop.serving.prediction_log import PredictionLogger
from tests.support.postgres import running_postgres
from tests.support.prediction_log import (
    T0,
    check_first_label_wins,
    check_forget_requests,
    check_round_trip,
    check_windows,
    make_event,
)

pytestmark = pytest.mark.integration

_models = itertools.count()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture
def store(postgres_url: str) -> Iterator[SqlPredictionStore]:
    opened = open_prediction_log(postgres_url)
    yield opened
    opened.close()


@pytest.fixture
def model() -> str:
    """A model name of its own per test: the tests share one database."""
    return f"churn-{next(_models)}"


def test_table_has_a_timezone_aware_ts_and_the_window_index(postgres_url: str, store: SqlPredictionStore) -> None:
    engine = sa.create_engine(postgres_url)
    inspector = sa.inspect(engine)
    columns = {column["name"]: column["type"] for column in inspector.get_columns("predictions")}
    indexes = {index["name"]: index["column_names"] for index in inspector.get_indexes("predictions")}
    engine.dispose()
    assert isinstance(columns["ts"], sa.DateTime)
    assert columns["ts"].timezone is True
    assert indexes["ix_predictions_model_ts_version"] == ["model_name", "ts", "model_version"]


def test_round_trip_keeps_values_and_missing(store: SqlPredictionStore, model: str) -> None:
    check_round_trip(store, model)


def test_windows_filter_and_order(store: SqlPredictionStore, model: str) -> None:
    check_windows(store, model)


def test_a_failed_runs_requests_are_forgotten_and_nothing_else(store: SqlPredictionStore, model: str) -> None:
    check_forget_requests(store, model)


def test_a_second_store_on_the_same_database_sees_the_rows(
    postgres_url: str, store: SqlPredictionStore, model: str
) -> None:
    store.write([make_event(T0, "r", rows=4, model=model)])
    reader = SqlPredictionStore(postgres_url)  # create_all on an existing table is a no-op
    try:
        assert reader.count(model) == 4
        assert reader.read_window(model)["request_id"].tolist() == ["r"] * 4
    finally:
        reader.close()


def test_logger_flushes_everything_on_close(store: SqlPredictionStore, model: str) -> None:
    logger = PredictionLogger(store, batch_max_rows=1_000)
    events = [make_event(T0 + i / 1000, f"r{i}", rows=1 + i % 4, model=model, seed=i) for i in range(4000)]
    assert all(logger.submit(event) for event in events)
    logger.close()
    assert (logger.written, logger.dropped, logger.pending) == (10_000, 0, 0)
    assert store.count(model) == 10_000
    window = store.read_window(model, last=5)
    assert window["request_id"].tolist() == ["r3998"] + ["r3999"] * 4  # r3998 has 3 rows, r3999 has 4


def test_the_first_label_of_a_row_wins(store: SqlPredictionStore, model: str) -> None:
    check_first_label_wins(store, model)
