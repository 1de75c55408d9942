"""The prediction log: served predictions queued off the request path and written to SQL for the drift monitor.

The request path builds one ``PredictionEvent`` per request (arrays as they came out of the model, no per-row
work) and hands it to ``PredictionLogger.submit``, which only appends to a bounded in-memory queue. One writer
thread turns queued events into rows and inserts them in batches through a ``PredictionStore``.
``SqlPredictionStore`` keeps them in one ``predictions`` table (SQLite or PostgreSQL); ``read_window`` gives
them back as a DataFrame with one column per feature.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from driftloop.errors import ConfigError, ServiceError

if TYPE_CHECKING:
    import pandas as pd  # the reader only: the server writes without loading pandas

log = logging.getLogger(__name__)

TABLE = "predictions"
WINDOW_COLUMNS = ("ts", "request_id", "model_version", "label", "probability", "actual")
_NUMERIC_KINDS = frozenset({"floating", "integer", "mixed-integer-float", "empty"})
_SQLITE_BUSY_TIMEOUT_MS = 30_000

metadata = sa.MetaData()
predictions = sa.Table(
    TABLE,
    metadata,
    # SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid); elsewhere 64 bits leave room.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("probabilities", sa.Text, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    # One index serves every window: ts right after model_name keeps "last N" and time ranges of a model an
    # index walk whatever the version filter, and model_version in the index filters without reading rows.
    # Each index costs the writer about 4 µs a row on SQLite.
    sa.Index("ix_predictions_model_ts_version", "model_name", "ts", "model_version"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("actual", sa.String(200), nullable=False),
    # One label per predicted row: a later label for the same row replaces the earlier one.
    sa.UniqueConstraint("model_name", "request_id", "row_index", name="uq_feedback_row"),
)


@dataclass(frozen=True, slots=True)
class Feedback:
    """The true class of one predicted row, as it became known later."""

    request_id: str
    row_index: int
    actual: str


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    """One served request of one or more rows, exactly as the model saw and answered it.

    Attributes:
        ts: Seconds since the epoch (``time.time()``) when the request was served.
        features: The ONNX feed: ``(n, 1)`` float32 with NaN for missing, or ``(n, 1)`` str objects with ""
            for missing.
        labels: The class name predicted for each row.
        probabilities: ``(n, 2)`` float32, column 1 the positive class.
    """

    ts: float
    request_id: str
    model_name: str
    model_version: str
    features: Mapping[str, np.ndarray]
    labels: Sequence[str] | np.ndarray
    probabilities: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.probabilities)


class PredictionStore(Protocol):
    def write(self, events: Sequence[PredictionEvent]) -> int: ...

    def read_window(
        self,
        model_name: str,
        *,
        model_version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        last: int | None = None,
        labelled: bool = False,
    ) -> pd.DataFrame: ...

    def write_feedback(self, model_name: str, items: Sequence[Feedback]) -> int: ...

    def count(self, model_name: str | None = None) -> int: ...

    def close(self) -> None: ...


def _float_column(values: np.ndarray) -> list[float | None]:
    # orjson writes float32 in its shortest form (0.1, not 0.10000000149011612) and non-finite values as null,
    # so one C round trip gives the values the model saw as Python floats, with None for missing.
    return orjson.loads(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY))  # type: ignore[no-any-return]


def _text_column(values: np.ndarray) -> list[Any]:
    return [None if value is None or value == "" or value != value else value for value in values.tolist()]


def _column(values: np.ndarray) -> list[Any]:
    if values.dtype.kind == "f":
        return _float_column(values)
    if values.dtype.kind in "iub":
        return values.tolist()  # type: ignore[no-any-return]
    return _text_column(values)


def _raise_misshapen(events: Sequence[PredictionEvent]) -> None:
    for event in events:
        lengths = {name: len(values) for name, values in event.features.items()}
        if any(length != event.rows for length in lengths.values()):
            raise ValueError(f"request {event.request_id}: feature lengths {lengths} differ from {event.rows} row(s)")
    raise ValueError("feature arrays of different lengths in one batch")


def _rows_of(events: Sequence[PredictionEvent]) -> list[dict[str, Any]]:
    """Database rows for events that share one feature set: each feature converted once for all of them."""
    names = list(events[0].features)
    columns = [_column(np.concatenate([event.features[name] for event in events]).reshape(-1)) for name in names]
    total = sum(event.rows for event in events)
    if any(len(column) != total for column in columns):
        _raise_misshapen(events)
    feature_texts = [
        orjson.dumps(dict(zip(names, values, strict=False))).decode() for values in zip(*columns, strict=True)
    ]
    pairs = _float_column(np.concatenate([event.probabilities for event in events]))
    rows: list[dict[str, Any]] = []
    start = 0
    for event in events:
        ts = datetime.fromtimestamp(event.ts, UTC)
        labels = event.labels.tolist() if isinstance(event.labels, np.ndarray) else event.labels
        if len(labels) != event.rows:
            raise ValueError(f"request {event.request_id}: {len(labels)} label(s) for {event.rows} row(s)")
        for index, label in enumerate(labels):
            pair = pairs[start + index]
            rows.append(
                {
                    "ts": ts,
                    "request_id": event.request_id,
                    "row_index": index,
                    "model_name": event.model_name,
                    "model_version": event.model_version,
                    "label": str(label),
                    "probability": pair[1],
                    "probabilities": orjson.dumps(pair).decode(),
                    "features": feature_texts[start + index],
                }
            )
        start += event.rows
    return rows


def event_rows(events: Sequence[PredictionEvent]) -> list[dict[str, Any]]:
    """The ``predictions`` rows (without ``id``) for events: missing values (NaN, "") become JSON null."""
    groups: dict[tuple[str, ...], list[PredictionEvent]] = {}
    for event in events:
        if event.rows:
            groups.setdefault(tuple(event.features), []).append(event)
    return list(chain.from_iterable(_rows_of(group) for group in groups.values()))


def _as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _feature_frame(texts: list[str], index: pd.Index) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([orjson.loads(text) for text in texts], index=index)
    for name in frame.select_dtypes(include="object").columns:
        column = frame[name]
        # JSON keeps numbers and strings apart, so a category such as "12" stays text. A feature missing in
        # every row cannot tell its kind and comes back as float NaN, like a numeric one.
        if pd.api.types.infer_dtype(column.to_numpy(), skipna=True) in _NUMERIC_KINDS:
            frame[name] = pd.to_numeric(column).astype(np.float64)
        elif column.hasnans:
            # A feature absent from some rows (a newer model added it) comes out of pandas as NaN.
            frame[name] = column.astype(object).where(column.notna(), None)
    return frame


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the drift monitor (another process) read while the server writes; the busy timeout makes a
    # second writer wait instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SqlPredictionStore:
    """The ``predictions`` table through SQLAlchemy Core: ``sqlite:///abs/path.db`` or ``postgresql+psycopg2://``.

    Raises:
        ConfigError: The URL is malformed or names a driver that is not installed.
        ServiceError: The database cannot be reached or the table cannot be created.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError as error:
            raise ConfigError(f"prediction log URL {url!r} is not a SQLAlchemy URL: {error}") from error
        self._where = parsed.render_as_string(hide_password=True)
        self._sqlite = parsed.get_backend_name() == "sqlite"
        try:
            self._engine: Engine = sa.create_engine(parsed, pool_pre_ping=not self._sqlite)
        except sa.exc.NoSuchModuleError as error:
            raise ConfigError(f"prediction log URL {self._where}: unknown database or driver ({error})") from error
        except ModuleNotFoundError as error:
            hint = " (SQLAlchemy 2.1 maps postgresql:// to psycopg 3: write postgresql+psycopg2://)"
            raise ConfigError(
                f"prediction log URL {self._where}: driver module {error.name!r} is not installed"
                + (hint if parsed.drivername == "postgresql" else "")
            ) from error
        if self._sqlite:
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self._engine)
        except SQLAlchemyError as error:
            self._engine.dispose()
            raise ServiceError(f"prediction log database {self._where} is unusable: {error}") from error

    @property
    def url(self) -> str:
        """The URL with any password hidden."""
        return self._where

    def write(self, events: Sequence[PredictionEvent]) -> int:
        rows = event_rows(events)
        if rows:
            with self._engine.begin() as connection:
                connection.execute(predictions.insert(), rows)
        return len(rows)

    def write_feedback(self, model_name: str, items: Sequence[Feedback]) -> int:
        """Record true classes; a row labelled again keeps only its latest label."""
        if not items:
            return 0
        now = datetime.now(UTC)
        rows = [
            {
                "ts": now,
                "model_name": model_name,
                "request_id": i.request_id,
                "row_index": i.row_index,
                "actual": i.actual,
            }
            for i in items
        ]
        table = feedback.c
        with self._engine.begin() as connection:
            for item in items:
                connection.execute(
                    feedback.delete().where(
                        (table.model_name == model_name)
                        & (table.request_id == item.request_id)
                        & (table.row_index == item.row_index)
                    )
                )
            connection.execute(feedback.insert(), rows)
        return len(rows)

    def _select(
        self,
        model_name: str,
        model_version: str | None,
        since: datetime | None,
        until: datetime | None,
        last: int | None,
        labelled: bool = False,
    ) -> sa.Select[Any]:
        table = predictions.c
        truth = feedback.c
        joined = predictions.join(
            feedback,
            (truth.model_name == table.model_name)
            & (truth.request_id == table.request_id)
            & (truth.row_index == table.row_index),
            isouter=not labelled,
        )
        query = (
            sa.select(
                # SQLite keeps ts as ISO text: pandas parses the whole column at once, far faster than row by row.
                sa.type_coerce(table.ts, sa.String) if self._sqlite else table.ts,
                table.request_id,
                table.model_version,
                table.label,
                table.probability,
                table.features,
                truth.actual,
            )
            .select_from(joined)
            .where(table.model_name == model_name)
        )
        if model_version is not None:
            query = query.where(table.model_version == model_version)
        if since is not None:
            query = query.where(table.ts >= _as_utc(since))
        if until is not None:
            query = query.where(table.ts < _as_utc(until))
        # The index order, so no sort step: rows of one request (same ts and version) stay in insertion order.
        if last is None:
            return query.order_by(table.ts, table.model_version, table.id)
        return query.order_by(table.ts.desc(), table.model_version.desc(), table.id.desc()).limit(last)

    def read_window(
        self,
        model_name: str,
        *,
        model_version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        last: int | None = None,
        labelled: bool = False,
    ) -> pd.DataFrame:
        """Logged rows of one model, oldest first, one column per feature after ``WINDOW_COLUMNS``.

        The ``actual`` column holds the true class where feedback arrived (None elsewhere); ``labelled=True``
        keeps only those rows.

        Args:
            model_name: The served model.
            model_version: Only rows served by this version.
            since: Only rows served at or after this moment (naive datetimes are taken as UTC).
            until: Only rows served before this moment.
            last: Only the ``last`` most recent rows that pass the other filters.
            labelled: Only rows whose true class arrived as feedback.

        Returns:
            ``ts`` is UTC. Numeric features are float64 with NaN for missing, categorical ones object with None.
        """
        import pandas as pd

        if last is not None and last < 1:
            raise ValueError(f"last must be a positive number of rows, got {last}")
        with self._engine.connect() as connection:
            rows = connection.execute(self._select(model_name, model_version, since, until, last, labelled)).all()
        if last is not None:
            rows.reverse()
        columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 7
        ts, request_ids, versions, labels, probabilities, features, actual = columns
        frame = pd.DataFrame(
            {
                "ts": pd.to_datetime(ts, utc=True, format="ISO8601" if self._sqlite else None),
                "request_id": pd.Series(request_ids, dtype=object),
                "model_version": pd.Series(versions, dtype=object),
                "label": pd.Series(labels, dtype=object),
                "probability": np.array(probabilities, dtype=np.float64),
                "actual": pd.Series(actual, dtype=object),
            }
        )
        expanded = _feature_frame(features, frame.index)
        clash = sorted(set(expanded.columns) & set(WINDOW_COLUMNS))
        if clash:
            raise ConfigError(f"feature name(s) {clash} clash with the prediction log's own columns {WINDOW_COLUMNS}")
        return pd.concat([frame, expanded], axis=1)

    def count(self, model_name: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(predictions)
        if model_name is not None:
            query = query.where(predictions.c.model_name == model_name)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def close(self) -> None:
        self._engine.dispose()


def open_prediction_log(url: str) -> SqlPredictionStore:
    """A ``SqlPredictionStore``, creating the directory of a SQLite file first."""
    parsed: URL = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    return SqlPredictionStore(url)


class PredictionLogger:
    """Queues events from the request path and writes them in batches from one daemon thread.

    The queue holds at most ``max_queue`` rows, counting those the writer has taken but not yet written, so
    memory stays bounded even when the store stalls. ``submit`` never blocks: an event that does not fit is
    dropped. Rows whose ``store.write`` raised are lost too and also count as dropped: ``on_error`` gets the
    exception and ``on_drop`` the rows, and the writer carries on with the next batch.

    Callbacks run on the caller's thread (``on_drop`` for a full queue) or on the writer thread (``on_write``,
    ``on_drop`` after a failed write, ``on_error``), so they must be thread-safe, as Prometheus counters are.
    """

    enabled = True

    def __init__(
        self,
        store: PredictionStore,
        *,
        max_queue: int = 20_000,
        batch_max_rows: int = 2_000,
        flush_interval: float = 0.25,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if max_queue < 1 or batch_max_rows < 1 or flush_interval <= 0:
            raise ValueError("max_queue and batch_max_rows must be >= 1 and flush_interval > 0")
        self._store = store
        self._max_queue = max_queue
        self._batch_max_rows = batch_max_rows
        self._flush_interval = flush_interval
        self._on_drop = on_drop
        self._on_write = on_write
        self._on_error = on_error
        self._queue: deque[PredictionEvent] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._pending = 0
        self._written = 0
        self._dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        return self._written

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def pending(self) -> int:
        """Rows submitted and not yet written or dropped."""
        return self._pending

    @property
    def alive(self) -> bool:
        """Whether the writer thread is running."""
        return self._thread.is_alive()

    def submit(self, event: PredictionEvent) -> bool:
        """Queue an event without blocking; False if it was dropped (queue full) or the logger is closed."""
        rows = event.rows
        with self._ready:
            if self._closed:
                return False
            pending = self._pending + rows
            if pending > self._max_queue:
                self._dropped += rows
                accepted = False
            else:
                self._queue.append(event)
                self._pending = pending
                accepted = True
                # Wake the writer once per full batch; otherwise it wakes on its own every flush_interval.
                if pending >= self._batch_max_rows > pending - rows:
                    self._ready.notify()
        if not accepted and self._on_drop is not None:
            self._call(self._on_drop, rows)
        return accepted

    def _take_batch(self) -> tuple[list[PredictionEvent], bool]:
        """The next events to write (up to ``batch_max_rows`` rows, at least one event) and whether to stop."""
        with self._ready:
            if not self._closed and self._pending < self._batch_max_rows:
                self._ready.wait(self._flush_interval)
            batch: list[PredictionEvent] = []
            rows = 0
            while self._queue and rows < self._batch_max_rows:
                event = self._queue.popleft()
                batch.append(event)
                rows += event.rows
            return batch, self._closed and not self._queue

    def _run(self) -> None:
        while True:
            batch, last = self._take_batch()
            if batch:
                self._write(batch)
            if last:
                return

    def _write(self, batch: list[PredictionEvent]) -> None:
        rows = sum(event.rows for event in batch)
        try:
            self._store.write(batch)
        except Exception as error:  # whatever the store raises, the writer must live on
            with self._ready:
                self._pending -= rows
                self._dropped += rows
            self._report_failure(error, rows)
            return
        with self._ready:
            self._pending -= rows
            self._written += rows
        if self._on_write is not None:
            self._call(self._on_write, rows)

    def _report_failure(self, error: Exception, rows: int) -> None:
        if self._on_error is None:
            log.error("prediction log: %d row(s) lost, the store failed: %s", rows, error)
        else:
            self._call(self._on_error, error)
        if self._on_drop is not None:
            self._call(self._on_drop, rows)

    @staticmethod
    def _call(callback: Callable[[Any], None], argument: Any) -> None:
        try:
            callback(argument)
        except Exception:
            log.exception("prediction log: callback %r failed", callback)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the writer; waits at most ``timeout`` seconds. Idempotent."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("prediction log: writer still busy after %.1f s with %d row(s) pending", timeout, self._pending)


class NullPredictionLogger:
    """The logger to use when the prediction log is off: keeps nothing, counts nothing."""

    enabled = False
    written = 0
    dropped = 0
    pending = 0
    alive = False

    def submit(self, event: PredictionEvent) -> bool:
        """Always False: the event is not logged (and not counted as dropped)."""
        return False

    def close(self, timeout: float = 10.0) -> None:
        return None
