"""io.batch_scoring.scoring_input: a Parquet directory's columns, and which files lack a column others have."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftloop.errors import DatasetError
from driftloop.io.batch_scoring import clear_earlier_answers, scoring_input


def test_a_directory_s_columns_are_those_every_file_has_and_the_files_lacking_one_are_named(tmp_path: Path) -> None:
    (tmp_path / "late").mkdir()
    pd.DataFrame({"id": [1], "age": [30.0], "note": ["x"]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"id": [2], "note": ["y"]}).to_parquet(tmp_path / "late" / "b.parquet")
    pd.DataFrame({"age": [40.0], "id": [3]}).to_parquet(tmp_path / "c.parquet")
    pd.DataFrame({"id": [4]}).to_parquet(tmp_path / "_skipped.parquet")  # hidden, as Parquet readers skip it
    found = scoring_input(tmp_path, "64MB")
    assert found.columns == ["id"]
    assert len(found.pieces) == 3
    assert found.lacking == {"c.parquet": ["note"], "late/b.parquet": ["age"]}
    # Only the columns the command needs are named: a file without an unused column is not a problem.
    assert found.named("DIR", ["id", "age"]) == "DIR (late/b.parquet lacks age)"
    assert found.named("DIR", ["id"]) == "DIR"


def test_a_single_file_lacks_nothing(tmp_path: Path) -> None:
    pd.DataFrame({"id": [1], "age": [30.0]}).to_parquet(tmp_path / "one.parquet")
    found = scoring_input(tmp_path / "one.parquet", "64MB")
    assert found.columns == ["id", "age"]
    assert found.lacking == {}
    assert found.named("one.parquet", ["age"]) == "one.parquet"


def test_an_empty_csv_is_named_as_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="empty.csv is empty: not even a header line"):
        scoring_input(tmp_path / "empty.csv", "64MB")


def test_force_clears_only_an_earlier_runs_answer_files(tmp_path: Path) -> None:
    for name in ("part-00000-0000.parquet", "part-00003-0001.parquet", "_rejected/part-00001-0000.parquet"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    assert clear_earlier_answers(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # and the emptied _rejected/ is gone
    assert clear_earlier_answers(tmp_path) == 0
