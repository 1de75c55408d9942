"""A snapshot read from a database: a SQL query through a SQLAlchemy URL (PostgreSQL, MySQL, SQLite, ...).

What is recorded (flow parameters, tags, logs, errors) is the URL without its password; the password is given
apart (the ``DRIFTLOOP_SQL_PASSWORD`` setting) and put back into the URL only to connect.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from driftloop.errors import DatasetError

_RECORD_KEYS = {"sql_url", "query"}


def is_database_url(text: str) -> bool:
    """Whether ``text`` is a SQLAlchemy URL (``dialect[+driver]://...``) rather than a file path."""
    if "://" not in text:
        return False
    try:
        make_url(text)
    except ArgumentError:
        return False
    return True


@dataclass(frozen=True)
class SqlQuery:
    """The rows ``query`` returns from the database at ``url``."""

    url: str
    query: str

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        url = make_url(self.url)
        bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
        return bare.render_as_string(hide_password=False)

    def describe(self) -> str:
        text = " ".join(self.query.split())
        return f"{self.safe_url} ({text if len(text) <= 80 else text[:77] + '...'})"

    def record(self) -> str:
        """What a version records as its source: the URL without its password, and the query."""
        return json.dumps({"sql_url": self.safe_url, "query": self.query}, sort_keys=True)

    @classmethod
    def from_record(cls, text: str) -> SqlQuery | None:
        """The query ``record`` wrote, or None for any other text (a file path)."""
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, dict) or set(value) != _RECORD_KEYS:
            return None
        return cls(str(value["sql_url"]), str(value["query"]))


def read_sql(source: SqlQuery, password: str | None = None) -> pd.DataFrame:
    """The query's rows as a frame; ``password`` is used when the URL has none.

    Raises:
        DatasetError: the URL or its driver is unusable, the query fails, or it returns no rows (the message names
            the URL without its password).
    """
    with _connected(source, password) as (connection, secret):
        try:
            frame = pd.read_sql_query(sa.text(source.query), connection)
        except (SQLAlchemyError, pd.errors.DatabaseError) as error:  # pandas 3 wraps the driver's error in its own
            raise DatasetError(f"cannot read {source.describe()}: {_hidden(error, secret)}") from None
    if frame.empty:
        raise DatasetError(f"{source.describe()} returned no rows ({len(frame.columns)} column(s))")
    return frame


def read_sql_chunks(source: SqlQuery, password: str | None = None, chunk_rows: int = 50_000) -> Iterator[pd.DataFrame]:
    """The query's rows, ``chunk_rows`` at a time, through a server-side cursor where the driver has one.

    So a query returning more rows than fit in memory is read one chunk at a time (PostgreSQL's psycopg2 streams
    a named cursor; SQLite steps through its rows).

    Raises:
        DatasetError: as ``read_sql``, when the first chunk is asked for or while reading.
    """
    with _connected(source, password) as (connection, secret):
        streamed = connection.execution_options(stream_results=True, max_row_buffer=chunk_rows)
        try:
            chunks = pd.read_sql_query(sa.text(source.query), streamed, chunksize=chunk_rows)
            empty = True
            for chunk in chunks:
                if len(chunk):
                    empty = False
                    yield chunk
        except (SQLAlchemyError, pd.errors.DatabaseError) as error:
            raise DatasetError(f"cannot read {source.describe()}: {_hidden(error, secret)}") from None
    if empty:
        raise DatasetError(f"{source.describe()} returned no rows")


@contextmanager
def _connected(source: SqlQuery, password: str | None) -> Iterator[tuple[sa.Connection, str | None]]:
    """A connection to the source's database, and the password used (to mask it in errors)."""
    url = make_url(source.url)
    if url.password is None and password:
        url = url.set(password=password)
    secret = url.password if isinstance(url.password, str) else None
    database = url.database or ""
    local_file = url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and "file:" not in database
    if local_file and not Path(database).is_file():  # SQLite would create it empty, then miss the table
        raise DatasetError(f"cannot read {source.describe()}: no SQLite database file {database}")
    try:
        engine = sa.create_engine(url)
    except (ArgumentError, SQLAlchemyError, ImportError) as error:
        raise DatasetError(f"cannot use the database URL {source.safe_url}: {_hidden(error, secret)}") from None
    try:
        try:
            connection = engine.connect()
        except SQLAlchemyError as error:
            raise DatasetError(f"cannot read {source.describe()}: {_hidden(error, secret)}") from None
        with connection:
            yield connection, secret
    finally:
        engine.dispose()


def _hidden(error: BaseException, password: str | None) -> str:
    """The error's first line, with the password (should a driver echo it) masked."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else repr(error)
    return text.replace(password, "***") if password else text
