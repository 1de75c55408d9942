"""The prediction log against real SQLite files: round trip, windows, and the logger's queue under load and failure.

The store contract itself (``check_round_trip``, ``check_windows``) lives in tests/support/prediction_log.py: the
PostgreSQL integration test runs it too.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from driftloop.core.layout import FeatureLayout
from driftloop.errors import ConfigError, ServiceError
from driftloop.io.prediction_store import (
    ROW_COLUMNS,
    WINDOW_COLUMNS,
    Feedback,
    PredictionEvent,
    PredictionRow,
    SqlPredictionStore,
    open_prediction_log,
)
from driftloop.serving.prediction_log import NullPredictionLogger, PredictionLogger
from tests.support.prediction_log import (
    T0,
    check_first_label_wins,
    check_forget_requests,
    check_round_trip,
    check_windows,
    make_event,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log" / "predictions.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqlPredictionStore]:
    opened = open_prediction_log(f"sqlite:///{db}")
    yield opened
    opened.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)


class GatedStore:
    """A real store whose writes wait until the test opens the gate: a database that has stalled."""

    def __init__(self, inner: SqlPredictionStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write(self, events: Sequence[PredictionEvent]) -> int:
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        return self.inner.write(events)

    def read_window(self, model_name: str, **window: object) -> pd.DataFrame:
        return self.inner.read_window(model_name, **window)  # type: ignore[arg-type]

    def count(self, model_name: str | None = None) -> int:
        return self.inner.count(model_name)

    def close(self) -> None:
        self.inner.close()


def test_round_trip_keeps_values_and_missing(store: SqlPredictionStore) -> None:
    check_round_trip(store, "churn")


def test_windows_filter_and_order(store: SqlPredictionStore) -> None:
    check_windows(store, "churn")


def test_a_failed_runs_requests_are_forgotten_and_nothing_else(store: SqlPredictionStore) -> None:
    check_forget_requests(store, "churn")


def test_empty_window_has_the_fixed_columns(store: SqlPredictionStore) -> None:
    frame = store.read_window("churn")
    assert list(frame.columns) == list(WINDOW_COLUMNS)
    assert len(frame) == 0
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_feature_added_by_a_newer_version_is_missing_in_older_rows(store: SqlPredictionStore) -> None:
    old = make_event(T0, "old", rows=2, version="1")
    new = make_event(T0 + 1, "new", version="2")
    new = PredictionEvent(
        new.ts,
        new.request_id,
        new.model_name,
        new.model_version,
        {**new.features, "region": np.array([["north"]], dtype=object), "score": np.array([[0.5]], np.float32)},
        new.labels,
        new.probabilities,
    )
    store.write([old, new])
    frame = store.read_window("churn")
    assert frame["region"].tolist() == [None, None, "north"]
    np.testing.assert_array_equal(frame["score"].to_numpy(), [np.nan, np.nan, 0.5])


def test_models_sharing_feature_names_but_not_outputs_are_written_in_one_batch(store: SqlPredictionStore) -> None:
    """One server's models may read the same columns: a binary and a three-class model's rows in one write."""
    binary = make_event(T0, "a", rows=2)
    three = PredictionEvent(
        T0 + 1, "a", "wine", "1", binary.features, ["low", "high"], np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    )
    assert store.write([binary, three]) == 4
    assert store.read_window("wine")["label"].tolist() == ["low", "high"]
    np.testing.assert_allclose(store.read_window("wine")["probability"], [0.5, 0.6])
    assert len(store.read_window("churn")) == 2


def test_feature_missing_in_every_row_comes_back_as_float_nan(store: SqlPredictionStore) -> None:
    event = make_event(T0, "r", rows=2)
    blank = {**event.features, "contract": np.array([[""], [""]], dtype=object)}
    store.write([PredictionEvent(T0, "r", "churn", "1", blank, event.labels, event.probabilities)])
    contract = store.read_window("churn")["contract"]
    assert contract.dtype == np.float64
    assert contract.isna().all()


def test_feature_named_like_a_fixed_column_is_refused_on_read(store: SqlPredictionStore) -> None:
    event = make_event(T0, "r")
    store.write(
        [PredictionEvent(T0, "r", "churn", "1", {"label": event.features["contract"]}, ["No"], event.probabilities)]
    )
    with pytest.raises(ConfigError, match="clash"):
        store.read_window("churn")


def test_a_prediction_row_is_stored_as_its_one_row_event(db: Path, store: SqlPredictionStore) -> None:
    events = [make_event(T0 + i, f"r{i}", seed=i) for i in range(3)]
    missing = {"tenure": np.array([[np.nan]], dtype=np.float32), "contract": np.array([[""]], dtype=object)}
    events.append(PredictionEvent(T0 + 3, "r3", "churn", "1", missing, ["No"], events[0].probabilities))
    layout = FeatureLayout(names=("tenure", "contract"), positions=((False, 0), (True, 0)))
    rows = [
        PredictionRow(
            event.ts, event.request_id, event.model_name, event.model_version, layout,
            event.features["tenure"].reshape(1, 1), event.features["contract"].astype(object).reshape(1, 1),
            str(event.labels[0]), event.probabilities[0],
        )
        for event in events
    ]  # fmt: skip
    assert rows[0].features == {
        "tenure": events[0].features["tenure"].item(),
        "contract": events[0].features["contract"].item(),
    }
    assert store.write([*events, *rows]) == 8  # one batch holding both kinds
    with sqlite3.connect(db) as raw:
        stored = raw.execute("SELECT * FROM predictions ORDER BY id").fetchall()
    assert [row[1:] for row in stored[:4]] == [row[1:] for row in stored[4:]]
    features_at = ROW_COLUMNS.index("features") + 1  # after the id
    assert json.loads(stored[7][features_at]) == {"tenure": None, "contract": None}
    frame = store.read_window("churn")
    assert frame["probability"].iloc[0] == float(str(events[0].probabilities[0, 1]))  # float32's shortest text


def test_labels_are_read_with_their_arrival_time_and_filtered_by_it(store: SqlPredictionStore) -> None:
    store.write([make_event(T0 + i, f"r{i}", seed=i) for i in range(5)])
    assert store.count_labelled("churn") == 0
    assert store.read_window("churn", labelled=True).empty
    store.write_feedback("churn", [Feedback("r0", 0, "Yes"), Feedback("r1", 0, "No")])
    first = store.read_window("churn", labelled=True)
    assert first["request_id"].tolist() == ["r0", "r1"]
    assert first["labelled_at"].dt.tz is not None
    watermark = first["labelled_at"].max()
    time.sleep(0.01)
    store.write_feedback("churn", [Feedback("r3", 0, "Yes"), Feedback("unknown", 0, "Yes")])
    newer = store.read_window("churn", labelled_after=watermark.to_pydatetime())
    assert newer["request_id"].tolist() == ["r3"]
    assert newer["actual"].tolist() == ["Yes"]
    assert store.count_labelled("churn") == 3  # a label for no logged prediction joins nothing
    assert store.count_labelled("churn", watermark.to_pydatetime()) == 1
    assert store.count_labelled("churn", datetime.now(UTC) + timedelta(seconds=5)) == 0
    window = store.read_window("churn")
    assert window["labelled_at"].isna().tolist() == [False, False, True, False, True]


def test_event_with_mismatched_rows_is_refused(store: SqlPredictionStore) -> None:
    event = make_event(T0, "bad", rows=3)
    short = PredictionEvent(T0, "bad", "churn", "1", event.features, ["Yes", "No"], event.probabilities)
    with pytest.raises(ValueError, match="2 label"):
        store.write([short])
    assert store.count() == 0


def test_last_must_be_positive(store: SqlPredictionStore) -> None:
    with pytest.raises(ValueError, match="positive"):
        store.read_window("churn", last=0)


def test_open_creates_the_directory_and_uses_wal(db: Path, store: SqlPredictionStore) -> None:
    assert db.parent.is_dir()
    store.write([make_event(T0, "r")])
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writer_waits_for_another_writer_instead_of_failing(db: Path, store: SqlPredictionStore) -> None:
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # takes the write lock, as a second server or a cleanup job would

    def release() -> None:
        time.sleep(0.3)
        holder.execute("COMMIT")

    releaser = threading.Thread(target=release)
    releaser.start()
    started = time.monotonic()
    assert store.write([make_event(T0, "r")]) == 1
    assert time.monotonic() - started >= 0.25
    releaser.join()
    holder.close()
    assert store.count() == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [("not a url", "not a SQLAlchemy URL"), ("nosuchdb:///x", "unknown database or driver")],
)
def test_bad_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SqlPredictionStore(url)


def test_unreachable_database_is_a_service_error() -> None:
    with pytest.raises(ServiceError, match="unusable") as raised:
        SqlPredictionStore("postgresql+psycopg2://driftloop:secret@127.0.0.1:1/log?connect_timeout=2")
    assert "secret" not in str(raised.value)


def test_logger_flushes_everything_on_close(store: SqlPredictionStore) -> None:
    written: list[int] = []
    logger = PredictionLogger(store, batch_max_rows=500, on_write=written.append)
    events = [make_event(T0 + i / 1000, f"r{i}", rows=1 + i % 4, seed=i) for i in range(4000)]
    assert sum(event.rows for event in events) == 10_000
    assert all(logger.submit(event) for event in events)
    logger.close()
    assert store.count() == 10_000
    assert (logger.written, logger.dropped, logger.pending) == (10_000, 0, 0)
    assert sum(written) == 10_000
    assert max(written) <= 500 + 3  # batches stop at batch_max_rows (an event is never split)
    assert not logger.alive


def test_concurrent_submitters_lose_no_count(store: SqlPredictionStore) -> None:
    drops: list[int] = []
    logger = PredictionLogger(store, max_queue=300, batch_max_rows=100, flush_interval=0.01, on_drop=drops.append)
    events = [make_event(T0 + i / 1000, f"r{i}", seed=i) for i in range(2000)]
    accepted: list[int] = []

    def submit_all(offset: int) -> None:
        accepted.append(sum(logger.submit(event) for event in events[offset::4]))

    threads = [threading.Thread(target=submit_all, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.close()
    assert logger.written + logger.dropped == 2000
    assert logger.written == sum(accepted) == store.count()
    assert sum(drops) == logger.dropped


def test_logger_writes_within_the_flush_interval_without_close(store: SqlPredictionStore) -> None:
    logger = PredictionLogger(store, flush_interval=0.05)
    assert logger.submit(make_event(T0, "r", rows=3))
    # The writer counts the rows off after the store has them: wait for both, or a busy machine sees them apart.
    wait_for(lambda: store.count() == 3 and logger.pending == 0, timeout=5)
    assert logger.written == 3
    logger.close()


def test_overflow_drops_are_counted_exactly(store: SqlPredictionStore) -> None:
    gated = GatedStore(store)
    drops: list[int] = []
    logger = PredictionLogger(gated, max_queue=10, batch_max_rows=4, flush_interval=0.01, on_drop=drops.append)

    accepted = [logger.submit(make_event(T0 + i, f"ok{i}")) for i in range(10)]
    assert gated.entered.wait(timeout=5)  # the writer holds a batch: rows in flight still take queue room
    refused = [logger.submit(make_event(T0 + 10 + i, f"x{i}", rows=rows)) for i, rows in enumerate([1, 1, 5, 1])]

    assert accepted == [True] * 10
    assert refused == [False] * 4
    assert logger.dropped == 8
    assert drops == [1, 1, 5, 1]
    assert logger.pending == 10
    gated.gate.set()
    logger.close()
    assert (logger.written, logger.dropped, logger.pending) == (10, 8, 0)
    assert store.read_window("churn")["request_id"].tolist() == [f"ok{i}" for i in range(10)]


def test_failed_write_is_reported_and_the_writer_carries_on(db: Path, store: SqlPredictionStore) -> None:
    errors: list[Exception] = []
    drops: list[int] = []
    failed = threading.Event()

    def on_error(error: Exception) -> None:
        errors.append(error)
        failed.set()

    logger = PredictionLogger(store, flush_interval=0.01, on_error=on_error, on_drop=drops.append)
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TABLE predictions")  # the database loses the table under the running server
    assert logger.submit(make_event(T0, "lost", rows=3))
    assert failed.wait(timeout=5)
    assert isinstance(errors[0], sa.exc.OperationalError)
    assert "no such table" in str(errors[0])
    assert logger.alive
    assert (logger.dropped, drops) == (3, [3])

    SqlPredictionStore(f"sqlite:///{db}").close()  # creates the table again
    assert logger.submit(make_event(T0 + 1, "kept", rows=2))
    logger.close()
    assert (logger.written, logger.dropped) == (2, 3)
    assert store.read_window("churn")["request_id"].tolist() == ["kept", "kept"]


def test_failed_write_without_on_error_is_logged(
    db: Path, store: SqlPredictionStore, caplog: pytest.LogCaptureFixture
) -> None:
    logger = PredictionLogger(store, flush_interval=0.01)
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TABLE predictions")
    logger.submit(make_event(T0, "lost", rows=2))
    logger.close()
    assert logger.dropped == 2
    assert "2 row(s) lost" in caplog.text


def test_submit_after_close_returns_false(store: SqlPredictionStore) -> None:
    logger = PredictionLogger(store)
    logger.close()
    logger.close()  # idempotent
    assert not logger.alive
    assert logger.submit(make_event(T0, "late")) is False
    assert (logger.written, logger.dropped, logger.pending) == (0, 0, 0)
    assert store.count() == 0


def test_null_logger_keeps_nothing() -> None:
    logger = NullPredictionLogger()
    assert logger.enabled is False
    assert logger.submit(make_event(T0, "r")) is False
    logger.close()
    assert (logger.written, logger.dropped, logger.pending) == (0, 0, 0)


READER = """
import json, sys, time
from driftloop.io.prediction_store import SqlPredictionStore
store = SqlPredictionStore(sys.argv[1])
target, counts = int(sys.argv[2]), []
store.read_window("churn", last=50)  # warm up (pandas loads here) so the first reads are not seconds apart
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    counts.append(store.count("churn"))
    window = store.read_window("churn", last=50)
    assert list(window["request_id"]) == sorted(window["request_id"]), "window out of order"
    if counts[-1] >= target:
        break
print(json.dumps(counts))
"""


def test_another_process_reads_while_the_logger_writes(db: Path, store: SqlPredictionStore) -> None:
    logger = PredictionLogger(store, flush_interval=0.01, batch_max_rows=200)
    target = 3_000
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, f"sqlite:///{db}", str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    assert reader.stdout.readline() == "ready\n", reader.stderr.read() if reader.stderr else ""
    number = 0
    deadline = time.monotonic() + 60
    while reader.poll() is None and time.monotonic() < deadline:
        logger.submit(make_event(T0 + number / 1000, f"r{number:07d}", rows=10, seed=number))
        number += 1
        time.sleep(0.001)
    out, err = reader.communicate(timeout=30)
    logger.close()
    assert reader.returncode == 0, err
    counts = json.loads(out)
    assert counts == sorted(counts)
    assert len(set(counts)) > 2  # the reader saw the table grow while rows were being written
    assert counts[-1] >= target
    assert logger.dropped == 0
    assert store.count() == logger.written == number * 10


def test_the_first_label_of_a_row_wins(store: SqlPredictionStore) -> None:
    check_first_label_wins(store, "churn")


def test_a_clients_request_id_is_kept_beside_the_servers(db: Path, store: SqlPredictionStore) -> None:
    one = make_event(T0, "server-1", rows=2)
    given = PredictionEvent(T0, "server-2", "churn", "1", one.features, one.labels, one.probabilities, "client-7")
    assert store.write([one, given]) == 4
    with sqlite3.connect(db) as raw:
        stored = raw.execute("SELECT request_id, client_request_id FROM predictions ORDER BY id").fetchall()
    assert stored == [("server-1", None), ("server-1", None), ("server-2", "client-7"), ("server-2", "client-7")]


def test_a_log_made_before_a_column_existed_gets_it(db: Path) -> None:
    """A prediction log written by an older driftloop: its table lacks client_request_id until opened here."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as raw:
        raw.execute(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY, ts DATETIME NOT NULL, request_id VARCHAR(128) NOT NULL,"
            " row_index INTEGER NOT NULL, model_name VARCHAR(200) NOT NULL, model_version VARCHAR(100) NOT NULL,"
            " label VARCHAR(200) NOT NULL, probability FLOAT NOT NULL, probabilities TEXT NOT NULL,"
            " features TEXT NOT NULL)"
        )
        raw.execute(
            "INSERT INTO predictions VALUES (1, '2026-01-01 00:00:00.000000', 'old', 0, 'churn', '1', 'Yes', 0.7,"
            ' \'[0.3, 0.7]\', \'{"tenure": 3.0, "contract": "One year"}\')'
        )
    store = open_prediction_log(f"sqlite:///{db}")
    try:
        store.write([make_event(T0, "new")])
        assert store.read_window("churn")["request_id"].tolist() == ["old", "new"]
    finally:
        store.close()
