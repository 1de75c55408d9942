"""The load-snapshot task on a user's file: what it trains on, what it ignores and says so, what it refuses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftloop.errors import DatasetError
from driftloop.settings import BUNDLED_SCHEMA
from tasks.data import load_snapshot


def test_extra_columns_are_ignored_by_name_and_listed(tmp_path: Path, churn_frame: pd.DataFrame) -> None:
    clean, extra = tmp_path / "clean.csv", tmp_path / "extra.csv"
    churn_frame.to_csv(clean, index=False)
    churn_frame.assign(email="x@example.com", note=1).to_csv(extra, index=False)
    plain = load_snapshot.fn(clean, BUNDLED_SCHEMA)
    with_extra = load_snapshot.fn(extra, BUNDLED_SCHEMA)
    assert plain.ignored_columns == ()
    assert with_extra.ignored_columns == ("email", "note")
    # What is trained on is the same rows and columns: the same data, the same hash.
    assert with_extra.content_hash == plain.content_hash


def test_a_repeated_column_stops_the_snapshot(tmp_path: Path, churn_frame: pd.DataFrame) -> None:
    path = tmp_path / "repeated.csv"
    frame = churn_frame.assign(copy=7).rename(columns={"copy": "tenure"})
    frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="repeats column name"):
        load_snapshot.fn(path, BUNDLED_SCHEMA)
