"""A snapshot from a database: URLs told from paths, the password kept out of what is recorded, a query read
through SQLAlchemy (SQLite here; PostgreSQL in tests/integration/test_sql_source.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from driftloop.errors import ConfigError, DatasetError
from driftloop.io.datasets import describe_source, read_source, record_source, source_from_text
from driftloop.io.sql_source import SqlQuery, is_database_url, read_sql, read_sql_chunks
from driftloop.settings import Settings

URL = "postgresql+psycopg2://loans:pa55@db.internal:5432/lending?sslmode=require"


def test_the_password_setting_reaches_the_workers_flow_runs_but_not_a_repr() -> None:
    settings = Settings(sql_password="pa55")  # type: ignore[arg-type]  # pydantic turns str into SecretStr
    assert settings.process_env()["DRIFTLOOP_SQL_PASSWORD"] == "pa55"
    assert "pa55" not in repr(settings)


def test_database_urls_are_told_from_paths() -> None:
    assert is_database_url(URL)
    assert is_database_url("sqlite:////tmp/x.db")
    assert not is_database_url("data/loans.csv")
    assert not is_database_url("C:/data/loans.csv")


def test_what_is_recorded_holds_no_password_and_reads_back() -> None:
    source = source_from_text(URL, "SELECT * FROM loans")
    assert isinstance(source, SqlQuery)
    assert source.safe_url == "postgresql+psycopg2://loans@db.internal:5432/lending?sslmode=require"
    recorded = record_source(source)
    assert "pa55" not in recorded
    assert "pa55" not in describe_source(source)
    again = source_from_text(recorded)
    assert again == SqlQuery(source.safe_url, "SELECT * FROM loans")
    assert source_from_text("data/loans.csv") == Path("data/loans.csv")


@pytest.mark.parametrize(
    ("data", "query", "message"),
    [
        (URL, None, "is a database: give the rows' SQL with --query"),
        ("loans.csv", "SELECT 1", "--query needs --data to be a database URL"),
    ],
)
def test_a_url_needs_a_query_and_a_query_a_url(data: str, query: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        source_from_text(data, query)
    assert "pa55" not in str(caught.value)


def test_a_query_is_read_and_its_failures_are_named(tmp_path: Path) -> None:
    db = tmp_path / "loans.db"
    with sqlite3.connect(db) as connection:
        pd.DataFrame({"amount": [1.5, 2.5, 3.5], "defaulted": ["no", "yes", "no"]}).to_sql("loans", connection)
    url = f"sqlite:///{db}"
    frame = read_source(SqlQuery(url, "SELECT amount, defaulted FROM loans WHERE amount > 2"))
    assert frame.to_dict(orient="list") == {"amount": [2.5, 3.5], "defaulted": ["yes", "no"]}
    with pytest.raises(DatasetError, match=r"cannot read sqlite:///.*\(SELECT \* FROM nowhere\): .*no such table"):
        read_sql(SqlQuery(url, "SELECT * FROM nowhere"))
    with pytest.raises(DatasetError, match="returned no rows"):
        read_sql(SqlQuery(url, "SELECT * FROM loans WHERE amount > 99"))
    with pytest.raises(DatasetError, match="cannot use the database URL nosuchdialect://x@h/db"):
        read_sql(SqlQuery("nosuchdialect://x:pw@h/db", "SELECT 1"))
    missing = tmp_path / "nothere.db"
    with pytest.raises(DatasetError, match=f"no SQLite database file {missing}"):
        read_sql(SqlQuery(f"sqlite:///{missing}", "SELECT * FROM loans"))
    assert not missing.exists()  # not created empty on the way
    chunks = list(read_sql_chunks(SqlQuery(url, "SELECT amount FROM loans ORDER BY amount"), chunk_rows=2))
    assert [chunk["amount"].tolist() for chunk in chunks] == [[1.5, 2.5], [3.5]]
    with pytest.raises(DatasetError, match="returned no rows"):
        list(read_sql_chunks(SqlQuery(url, "SELECT * FROM loans WHERE amount > 99")))
