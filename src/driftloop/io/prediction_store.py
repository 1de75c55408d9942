"""The prediction log's store: served predictions and their later true labels, in SQL (SQLite or PostgreSQL).

The server queues each request's rows (a ``PredictionEvent``, or a ``PredictionRow`` for a one-row request: the
request's own two feature matrices) and a writer thread hands them to ``SqlPredictionStore.write`` in batches
(``serving/prediction_log.py``). Rows live in one ``predictions`` table, true labels in ``feedback``;
``read_window`` gives them back as a DataFrame with one column per feature, for the drift check and the retrain.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from driftloop.core.layout import FeatureLayout
from driftloop.errors import ConfigError, ServiceError

if TYPE_CHECKING:
    import pandas as pd  # the reader only: the server writes without loading pandas


TABLE = "predictions"
WINDOW_COLUMNS = ("ts", "request_id", "model_version", "label", "probability", "actual", "labelled_at")
ROW_COLUMNS = (
    "ts",
    "request_id",
    "row_index",
    "model_name",
    "model_version",
    "label",
    "probability",
    "probabilities",
    "features",
    "client_request_id",
)
_NUMERIC_KINDS = frozenset({"floating", "integer", "mixed-integer-float", "empty"})
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_VALUES_PER_INSERT = 500

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
    # The id a client (or a proxy) sent with the request, if any: kept beside the server's own, never as it.
    sa.Column("client_request_id", sa.String(128), nullable=True),
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
    # One label per predicted row: the first one (a later label is refused, see write_feedback).
    sa.UniqueConstraint("model_name", "request_id", "row_index", name="uq_feedback_row"),
)
FEEDBACK_KEY = ["model_name", "request_id", "row_index"]


@dataclass(frozen=True, slots=True)
class Feedback:
    """The true class of one predicted row, as it became known later."""

    request_id: str
    row_index: int
    actual: str


@dataclass(frozen=True, slots=True)
class FeedbackWritten:
    """What became of a request's labels: written, or left alone because the row had a label already."""

    accepted: int
    already_labelled: int


def _insert_ignoring_labelled(dialect: sa.Dialect) -> Any:
    """An insert into ``feedback`` that skips a row labelled already, where the database can say so."""
    if dialect.name == "sqlite":
        return sqlite_insert(feedback).on_conflict_do_nothing(index_elements=FEEDBACK_KEY)
    if dialect.name == "postgresql":
        return postgresql_insert(feedback).on_conflict_do_nothing(index_elements=FEEDBACK_KEY)
    return feedback.insert()  # the rows were filtered in the same transaction; a racing writer gets an error


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    """One served request of one or more rows, exactly as the model saw and answered it.

    Attributes:
        ts: Seconds since the epoch (``time.time()``) when the request was served.
        features: The ONNX feed: ``(n, 1)`` float32 with NaN for missing, or ``(n, 1)`` str objects with ""
            for missing.
        labels: The class name predicted for each row (a regressor's value, as text).
        probabilities: ``(n, k)`` float32, one column per class (a regressor's values: ``(n, 1)``).
    """

    ts: float
    request_id: str
    model_name: str
    model_version: str
    features: Mapping[str, np.ndarray]
    labels: Sequence[str] | np.ndarray
    probabilities: np.ndarray
    client_request_id: str | None = None

    @property
    def rows(self) -> int:
        return len(self.probabilities)


class PredictionRow(NamedTuple):
    """A one-row request, logged from the arrays the request already built: what the server queues for one row.

    No Python object per feature value is made on the request path: the server pays for every object the event
    loop creates and the writer frees. Under load on one core, queuing a row as 19 values, a list and a
    dataclass cost about 7 µs a request; this tuple of the request's own arrays about 4 µs.

    Attributes:
        ts: Seconds since the epoch (``time.time()``) when the request was served.
        layout: Where each feature sits in the two matrices, one object shared by all the rows of a model.
        numeric: ``(1, k)`` float32, NaN for missing; ``categorical``: ``(1, m)`` str objects, "" for missing.
        label: The class name predicted (a regressor's value, as text).
        probabilities: The class probabilities (float32), in class order (a regressor's value: one).
    """

    ts: float
    request_id: str
    model_name: str
    model_version: str
    layout: FeatureLayout
    numeric: np.ndarray
    categorical: np.ndarray
    label: str
    probabilities: np.ndarray
    client_request_id: str | None = None

    @property
    def rows(self) -> int:
        return 1

    @property
    def features(self) -> dict[str, float | str]:
        """The row's features in schema order, as Python values."""
        values = self.layout.in_schema_order(self.numeric[0].tolist(), self.categorical[0].tolist())
        return dict(zip(self.layout.names, values, strict=True))


Logged = PredictionEvent | PredictionRow


class PredictionStore(Protocol):
    def write(self, events: Sequence[Logged]) -> int: ...

    def read_window(
        self,
        model_name: str,
        *,
        model_version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        last: int | None = None,
        labelled: bool = False,
        labelled_after: datetime | None = None,
    ) -> pd.DataFrame: ...

    def read_window_chunks(
        self, model_name: str, *, model_version: str | None = None, last: int, chunk_rows: int
    ) -> Iterator[pd.DataFrame]: ...

    def write_feedback(self, model_name: str, items: Sequence[Feedback]) -> FeedbackWritten: ...

    def count(self, model_name: str | None = None) -> int: ...

    def count_labelled(self, model_name: str, labelled_after: datetime | None = None) -> int: ...

    def forget_requests(self, model_name: str, prefix: str, since: datetime) -> int: ...

    def close(self) -> None: ...


def _float_column(values: np.ndarray) -> list[float | None]:
    """A 1-D array's values."""
    # orjson writes float32 in its shortest form (0.1, not 0.10000000149011612) and non-finite values as null,
    # so one C round trip gives the values the model saw as Python floats, with None for missing.
    column: list[float | None] = orjson.loads(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY))
    return column


def _float_rows(values: np.ndarray) -> list[list[float | None]]:
    """A 2-D array's rows, each as ``_float_column`` gives a column."""
    rows: list[list[float | None]] = orjson.loads(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY))
    return rows


def _score(outputs: list[float | None]) -> float | None:
    """The ``probability`` column: the row's score.

    The positive class's probability (binary), the predicted class's (multiclass), the value (a regressor).
    """
    if len(outputs) == 2:
        return outputs[1]
    if len(outputs) == 1:
        return outputs[0]
    return max((p for p in outputs if p is not None), default=None)


def _text_values(values: list[Any]) -> list[Any]:
    return [None if value is None or value == "" or value != value else value for value in values]


def _text_column(values: np.ndarray) -> list[Any]:
    return _text_values(values.tolist())


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


def _layout_columns(layout: FeatureLayout, numeric: np.ndarray, categorical: np.ndarray) -> list[list[Any]]:
    """Each feature's values from the two matrices, in schema order; None where missing."""
    numbers: list[Any] = _float_rows(np.ascontiguousarray(numeric.T)) if numeric.size else []
    texts = [_text_values(column) for column in categorical.T.tolist()]
    return layout.in_schema_order(numbers, texts)


def _timestamps(events: Sequence[Logged], sqlite: bool) -> list[Any]:
    """Each event's ``ts`` as a UTC datetime, or on SQLite as the text SQLAlchemy stores for one."""
    if not sqlite:
        return [datetime.fromtimestamp(event.ts, UTC) for event in events]
    # datetime.fromtimestamp's rounding (half-even on the fraction's microseconds), vectorised.
    seconds = np.array([event.ts for event in events], dtype=np.float64)
    whole = np.floor(seconds)
    micros = whole.astype(np.int64) * 1_000_000 + np.rint((seconds - whole) * 1e6).astype(np.int64)
    texts = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us").tolist()
    return [f"{text[:10]} {text[11:]}" for text in texts]  # "2026-09-21 14:13:20.250000"


def _event_parts(events: Sequence[PredictionEvent], names: list[str]) -> tuple[list[list[Any]], list[Any], Any]:
    """Feature columns, labels and probabilities of ``PredictionEvent``s, each feature converted once."""
    total = sum(event.rows for event in events)
    columns = [_column(np.concatenate([event.features[name] for event in events]).reshape(-1)) for name in names]
    if any(len(column) != total for column in columns):
        _raise_misshapen(events)
    labels: list[Any] = []
    for event in events:
        given = event.labels.tolist() if isinstance(event.labels, np.ndarray) else event.labels
        if len(given) != event.rows:
            raise ValueError(f"request {event.request_id}: {len(given)} label(s) for {event.rows} row(s)")
        labels.extend(given)
    return columns, labels, np.concatenate([event.probabilities for event in events])


def _rows_of(events: Sequence[Logged], sqlite: bool) -> list[tuple[Any, ...]]:
    """Database rows for events of one kind and feature set: each feature converted once for all of them."""
    if type(events[0]) is PredictionRow:
        rows: Sequence[PredictionRow] = events  # type: ignore[assignment]
        layout = rows[0].layout
        names = list(layout.names)
        columns = _layout_columns(
            layout,
            np.concatenate([row.numeric for row in rows]),
            np.concatenate([row.categorical for row in rows]),
        )
        labels: list[Any] = [row.label for row in rows]
        probabilities = np.stack([row.probabilities for row in rows])
    else:
        names = list(events[0].features)
        columns, labels, probabilities = _event_parts(events, names)  # type: ignore[arg-type]
    dumps = orjson.dumps
    feature_texts = [dumps(dict(zip(names, values, strict=True))).decode() for values in zip(*columns, strict=True)]
    pairs = _float_rows(probabilities)
    stamps = _timestamps(events, sqlite)
    if len(labels) == len(events):
        fields: list[Any] = [
            stamps, [event.request_id for event in events], [0] * len(events),
            [event.model_name for event in events], [event.model_version for event in events],
        ]  # fmt: skip
        clients = [event.client_request_id for event in events]
    else:
        fields = [
            [value for event, value in zip(events, values, strict=True) for _ in range(event.rows)]
            for values in (stamps, [event.request_id for event in events])
        ]
        fields.append([index for event in events for index in range(event.rows)])
        fields += [
            [getattr(event, key) for event in events for _ in range(event.rows)]
            for key in ("model_name", "model_version")
        ]
        clients = [event.client_request_id for event in events for _ in range(event.rows)]
    return list(
        zip(
            *fields,
            map(str, labels),
            [_score(pair) for pair in pairs],
            [dumps(pair).decode() for pair in pairs],
            feature_texts,
            clients,
            strict=True,
        )
    )


def event_rows(events: Sequence[Logged], *, sqlite: bool = False) -> list[tuple[Any, ...]]:
    """The ``predictions`` rows for events, as tuples in ``ROW_COLUMNS`` order; missing values become JSON null.

    ``ts`` is a UTC datetime, or with ``sqlite`` the text SQLAlchemy stores for it on SQLite.
    """
    groups: dict[tuple[Any, ...], list[Logged]] = {}
    for event in events:
        # By model and version too: models of one server may share feature names but not their outputs' width.
        if type(event) is PredictionRow:
            # By identity: the rows of one model share one layout, which the group keeps alive.
            key = (PredictionRow, event.model_name, event.model_version, id(event.layout))
            groups.setdefault(key, []).append(event)
        elif event.rows:
            groups.setdefault((PredictionEvent, event.model_name, event.model_version, *event.features), []).append(
                event
            )
    return list(chain.from_iterable(_rows_of(group, sqlite) for group in groups.values()))


def _as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _feature_frame(texts: list[str], index: pd.Index) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([orjson.loads(text) for text in texts], index=index)
    # Text columns are object in pandas 2 and str in pandas 3; numbers and all-missing columns are float.
    for name in [n for n, kind in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(kind)]:
        column = frame[name]
        # JSON keeps numbers and strings apart, so a category such as "12" stays text. A feature missing in
        # every row cannot tell its kind and comes back as float NaN, like a numeric one.
        if pd.api.types.infer_dtype(column.to_numpy(), skipna=True) in _NUMERIC_KINDS:
            frame[name] = pd.to_numeric(column).astype(np.float64)
        elif column.hasnans:
            # A feature absent from some rows (a newer model added it) comes out of pandas as NaN.
            # pandas-stubs reject other=None, which pandas takes (None where missing, on object dtype)
            frame[name] = column.astype(object).where(column.notna(), None)  # type: ignore[call-overload]
    return frame


def _insert_statement(dialect: sa.Dialect) -> tuple[str, str] | None:
    """``INSERT INTO predictions (...) VALUES `` and one row's placeholders, in the driver's paramstyle.

    None for a paramstyle that binds no tuples (named): such a database is written through Core.
    """
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if mark is None:
        return None
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(column) for column in ROW_COLUMNS)
    head = f"INSERT INTO {quote(TABLE)} ({columns}) VALUES "  # noqa: S608 (constant identifiers, values bound)
    return head, f"({', '.join([mark] * len(ROW_COLUMNS))})"


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
        self._insert = _insert_statement(self._engine.dialect)
        self._rows_per_insert = _VALUES_PER_INSERT
        try:
            metadata.create_all(self._engine)
            _add_missing_columns(self._engine)
        except SQLAlchemyError as error:
            self._engine.dispose()
            raise ServiceError(f"prediction log database {self._where} is unusable: {error}") from error
        if self._sqlite:
            # SQLite before 3.32 binds at most 999 values a statement.
            with self._engine.connect() as connection:
                driver = connection.connection.driver_connection
                limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
            self._rows_per_insert = max(1, min(_VALUES_PER_INSERT, limit // len(ROW_COLUMNS)))

    @property
    def url(self) -> str:
        """The URL with any password hidden."""
        return self._where

    @property
    def engine(self) -> Engine:
        """The database's engine, for the monitoring tables that live beside the log (``io.check_store``)."""
        return self._engine

    def write(self, events: Sequence[Logged]) -> int:
        # Rows go straight to the driver (SQLAlchemy's per-row parameter processing cost more than building
        # them), with ts as SQLAlchemy would have stored it; through Core for a driver that binds no tuples.
        rows = event_rows(events, sqlite=self._sqlite and self._insert is not None)
        if not rows:
            return 0
        with self._engine.begin() as connection:
            if self._insert is None:
                connection.execute(predictions.insert(), [dict(zip(ROW_COLUMNS, row, strict=True)) for row in rows])
                return len(rows)
            # Multi-row INSERTs: psycopg2's executemany costs a round trip per row, and SQLite's releases the
            # GIL around every row, a thread switch each time while the event loop is busy.
            head, values = self._insert
            for start in range(0, len(rows), self._rows_per_insert):
                page = rows[start : start + self._rows_per_insert]
                connection.exec_driver_sql(head + ", ".join([values] * len(page)), tuple(chain.from_iterable(page)))
        return len(rows)

    def write_feedback(self, model_name: str, items: Sequence[Feedback]) -> FeedbackWritten:
        """Record true classes; the first label of a row wins: a row labelled already keeps its label.

        One statement for the lot (``INSERT ... ON CONFLICT DO NOTHING``), whatever the number of items. The
        count of rows labelled already is read in the same transaction; a label written by another request
        between that read and the insert is still never replaced, only counted as accepted.
        """
        first = {(i.request_id, i.row_index): i for i in reversed(items)}  # a repeated row in one request: its first
        if not first:
            return FeedbackWritten(0, 0)
        now = datetime.now(UTC)
        rows = [
            {"ts": now, "model_name": model_name, "request_id": i.request_id, "row_index": i.row_index,
             "actual": i.actual}
            for i in first.values()
        ]  # fmt: skip
        table = feedback.c
        ids = sorted({request_id for request_id, _ in first})
        with self._engine.begin() as connection:
            labelled = {
                (request_id, row)
                for start in range(0, len(ids), _VALUES_PER_INSERT)
                for request_id, row in connection.execute(
                    sa.select(table.request_id, table.row_index).where(
                        (table.model_name == model_name) & table.request_id.in_(ids[start : start + _VALUES_PER_INSERT])
                    )
                )
            }
            new = [row for row in rows if (row["request_id"], row["row_index"]) not in labelled]
            if new:
                connection.execute(_insert_ignoring_labelled(self._engine.dialect), new)
        return FeedbackWritten(accepted=len(new), already_labelled=len(rows) - len(new))

    def _select(
        self,
        model_name: str,
        model_version: str | None,
        since: datetime | None,
        until: datetime | None,
        last: int | None,
        labelled: bool = False,
        labelled_after: datetime | None = None,
    ) -> sa.Select[Any]:
        table = predictions.c
        truth = feedback.c
        # SQLite keeps ts as ISO text: pandas parses the whole column at once, far faster than row by row.
        as_text = sa.String if self._sqlite else None
        query = (
            sa.select(
                sa.type_coerce(table.ts, as_text) if as_text else table.ts,
                table.request_id,
                table.model_version,
                table.label,
                table.probability,
                table.features,
                truth.actual,
                sa.type_coerce(truth.ts, as_text) if as_text else truth.ts,
            )
            .select_from(self._joined(labelled or labelled_after is not None))
            .where(table.model_name == model_name)
        )
        if labelled_after is not None:
            query = query.where(truth.ts > _as_utc(labelled_after))
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

    def _joined(self, labelled: bool) -> sa.Join:
        table = predictions.c
        truth = feedback.c
        return predictions.join(
            feedback,
            (truth.model_name == table.model_name)
            & (truth.request_id == table.request_id)
            & (truth.row_index == table.row_index),
            isouter=not labelled,
        )

    def read_window(
        self,
        model_name: str,
        *,
        model_version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        last: int | None = None,
        labelled: bool = False,
        labelled_after: datetime | None = None,
        features: bool = True,
    ) -> pd.DataFrame:
        """Logged rows of one model, oldest first, one column per feature after ``WINDOW_COLUMNS``.

        The ``actual`` column holds the true class where feedback arrived (None elsewhere) and ``labelled_at``
        when it arrived; ``labelled=True`` keeps only those rows.

        Args:
            model_name: The served model.
            model_version: Only rows served by this version.
            since: Only rows served at or after this moment (naive datetimes are taken as UTC).
            until: Only rows served before this moment.
            last: Only the ``last`` most recent rows that pass the other filters.
            labelled: Only rows whose true class arrived as feedback.
            labelled_after: Only rows whose true class arrived after this moment (implies ``labelled``).
            features: False: ``WINDOW_COLUMNS`` only (the features are not parsed).

        Returns:
            ``ts`` and ``labelled_at`` are UTC. Numeric features are float64 with NaN for missing, categorical
            ones object with None.
        """
        if last is not None and last < 1:
            raise ValueError(f"last must be a positive number of rows, got {last}")
        query = self._select(model_name, model_version, since, until, last, labelled, labelled_after)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        if last is not None:
            rows = rows[::-1]
        return self._frame(rows, features)

    def read_window_chunks(
        self, model_name: str, *, model_version: str | None = None, last: int, chunk_rows: int
    ) -> Iterator[pd.DataFrame]:
        """``read_window(model_name, model_version=..., last=...)`` as frames of at most ``chunk_rows`` rows.

        The same rows in the same order, streamed from the database: memory holds one chunk, whatever ``last``.
        """
        if last < 1 or chunk_rows < 1:
            raise ValueError(f"last and chunk_rows must be positive, got {last} and {chunk_rows}")
        table = predictions.c
        # The window is every row from its oldest one on, in the index's order.
        selected = sa.select(table.ts, table.model_version, table.id).where(table.model_name == model_name)
        if model_version is not None:
            selected = selected.where(table.model_version == model_version)
        newest_first = selected.order_by(table.ts.desc(), table.model_version.desc(), table.id.desc())
        oldest_first = selected.order_by(table.ts, table.model_version, table.id)
        with self._engine.connect() as connection:
            first = connection.execute(newest_first.offset(last - 1).limit(1)).first()
            if first is None:  # fewer rows than ``last``: all of them
                first = connection.execute(oldest_first.limit(1)).first()
            if first is None:
                yield self._frame([], features=True)
                return
            query = self._select(model_name, model_version, None, None, None).where(
                sa.tuple_(table.ts, table.model_version, table.id) >= sa.tuple_(*first)
            )
            streamed = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            for part in streamed.partitions(chunk_rows):
                yield self._frame(part, features=True)

    def _frame(self, rows: Sequence[Any], features: bool) -> pd.DataFrame:
        """Rows of ``_select`` as ``read_window`` returns them."""
        import pandas as pd

        columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 8
        ts, request_ids, versions, labels, probabilities, feature_texts, actual, labelled_at = columns
        time_format = "ISO8601" if self._sqlite else None
        frame = pd.DataFrame(
            {
                "ts": pd.to_datetime(ts, utc=True, format=time_format).as_unit("ns"),  # pandas 3 infers the unit
                "request_id": pd.Series(request_ids, dtype=object),
                "model_version": pd.Series(versions, dtype=object),
                "label": pd.Series(labels, dtype=object),
                "probability": np.array(probabilities, dtype=np.float64),
                "actual": pd.Series(actual, dtype=object),
                "labelled_at": pd.to_datetime(pd.Series(labelled_at, dtype=object), utc=True, format=time_format),
            }
        )
        if not features:
            return frame
        expanded = _feature_frame(feature_texts, frame.index)
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

    def count_labelled(self, model_name: str, labelled_after: datetime | None = None) -> int:
        """Predicted rows of ``model_name`` whose true class arrived (after ``labelled_after``, when given)."""
        query = sa.select(sa.func.count()).select_from(self._joined(True)).where(predictions.c.model_name == model_name)
        if labelled_after is not None:
            query = query.where(feedback.c.ts > _as_utc(labelled_after))
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def forget_requests(self, model_name: str, prefix: str, since: datetime) -> int:
        """Delete ``model_name``'s rows logged from ``since`` on whose request id starts with ``prefix``; how many.

        What a batch scoring run that failed had logged (``batch_scoring.score_with_dask``): scoring again would
        log its rows a second time. ``since`` keeps the search to the index's recent end.
        """
        query = predictions.delete().where(
            predictions.c.model_name == model_name,
            predictions.c.ts >= _as_utc(since),
            predictions.c.request_id.startswith(prefix, autoescape=True),
        )
        with self._engine.begin() as connection:
            return int(connection.execute(query).rowcount)

    def close(self) -> None:
        self._engine.dispose()


def _add_missing_columns(engine: Engine) -> None:
    """Columns added to ``predictions`` since a log was created (nullable ones only), added to that log."""
    present = {column["name"] for column in sa.inspect(engine).get_columns(TABLE)}
    with engine.begin() as connection:
        for column in predictions.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {TABLE} ADD COLUMN {column.name} {kind}")


def open_prediction_log(url: str) -> SqlPredictionStore:
    """A ``SqlPredictionStore``, creating the directory of a SQLite file first."""
    if (database := sqlite_file(url)) is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    return SqlPredictionStore(url)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for a database server's, SQLite in memory or a ``file:`` URI."""
    parsed: URL = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)
