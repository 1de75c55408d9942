"""io.batch_scoring.scoring_input: a Parquet directory's columns, and which files lack a column others have."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from driftloop.io.batch_scoring import scoring_input


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
