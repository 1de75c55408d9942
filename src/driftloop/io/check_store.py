"""The monitoring store: every drift check's figures, one row each, in the prediction log's database.

Beside the predictions they were computed from, so one database (SQLite, or the stack's PostgreSQL) holds the
traffic and what the loop concluded about it; ``driftloop monitor`` and the server's Prometheus metrics read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from driftloop.core.check_record import CheckRecord
from driftloop.errors import ServiceError
from driftloop.io.prediction_store import SqlPredictionStore, open_prediction_log

metadata = sa.MetaData()
drift_checks = sa.Table(
    "drift_checks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("verdict", sa.String(40), nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("weighted_share", sa.Float, nullable=True),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("drifted_columns", sa.Text, nullable=False),  # JSON list
    sa.Column("columns", sa.Text, nullable=False),  # JSON list of per-column figures
    sa.Column("prediction_drift", sa.Boolean, nullable=True),
    sa.Column("target_drift", sa.Boolean, nullable=True),
    sa.Column("estimate", sa.String(40), nullable=False),
    sa.Column("estimated_accuracy", sa.Float, nullable=True),
    sa.Column("estimated_low", sa.Float, nullable=True),
    sa.Column("estimated_high", sa.Float, nullable=True),
    sa.Column("estimated_roc_auc", sa.Float, nullable=True),
    sa.Column("labels", sa.String(40), nullable=False),
    sa.Column("realized_metric", sa.String(40), nullable=False),
    sa.Column("realized_value", sa.Float, nullable=True),
    sa.Column("labelled_rows", sa.Integer, nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("episode", sa.String(200), nullable=True),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
    sa.Column("segments", sa.Text, nullable=False),  # JSON list of per-segment figures
    sa.Index("ix_drift_checks_model_ts", "model_name", "ts"),
)
_JSON_FIELDS = ("drifted_columns", "columns", "segments")


class CheckStore:
    """The ``drift_checks`` table in a prediction log's database (created on first use); it shares the log's engine.

    Raises:
        ServiceError: The table cannot be created.
    """

    def __init__(self, log: SqlPredictionStore) -> None:
        self._engine: Engine = log.engine
        try:
            metadata.create_all(self._engine)
        except SQLAlchemyError as error:
            raise ServiceError(f"monitoring store {log.url} is unusable: {error}") from error

    def write(self, record: CheckRecord) -> None:
        row: dict[str, Any] = {c.name: getattr(record, c.name) for c in drift_checks.columns if c.name != "id"}
        for name in _JSON_FIELDS:
            row[name] = orjson.dumps(row[name]).decode()
        with self._engine.begin() as connection:
            connection.execute(drift_checks.insert(), [row])

    def read(self, model_name: str, *, last: int | None = None, since: datetime | None = None) -> list[CheckRecord]:
        """The model's checks, oldest first: the ``last`` newest, or all since a moment."""
        table = drift_checks.c
        query = sa.select(drift_checks).where(table.model_name == model_name)
        if since is not None:
            query = query.where(table.ts >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
        query = query.order_by(table.ts.desc(), table.id.desc())
        if last is not None:
            query = query.limit(last)
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [_record(dict(row)) for row in reversed(rows)]

    def latest(self) -> dict[str, CheckRecord]:
        """Each model's newest check."""
        table = drift_checks.c
        newest = sa.select(table.model_name, sa.func.max(table.id).label("id")).group_by(table.model_name).subquery()
        query = sa.select(drift_checks).join(newest, drift_checks.c.id == newest.c.id)
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return {row["model_name"]: _record(dict(row)) for row in rows}

    def close(self) -> None:
        """Close the database connections, the prediction log's included (they share them)."""
        self._engine.dispose()


def open_check_store(url: str) -> CheckStore:
    """The monitoring store at a prediction log URL (``open_prediction_log``'s checks and directory creation).

    Raises:
        ConfigError: The URL is malformed or names a driver that is not installed.
        ServiceError: The database cannot be reached or the table cannot be created.
    """
    log = open_prediction_log(url)
    try:
        return CheckStore(log)
    except ServiceError:
        log.close()
        raise


def _record(row: dict[str, Any]) -> CheckRecord:
    row.pop("id", None)
    for name in _JSON_FIELDS:
        row[name] = orjson.loads(row[name])
    for name in ("ts", "window_start", "window_end"):
        if isinstance(row[name], datetime) and row[name].tzinfo is None:
            row[name] = row[name].replace(tzinfo=UTC)  # SQLite keeps no zone; everything stored is UTC
    return CheckRecord(**row)
