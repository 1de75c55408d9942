"""io.batch_scoring.scoring_input: a Parquet directory's columns, and which files lack a column others have."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftloop.errors import DatasetError
from driftloop.io.batch_scoring import BatchScored, clear_earlier_answers, scoring_input


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


def test_a_csv_with_a_repeated_column_no_row_or_no_text_is_refused_before_any_worker(tmp_path: Path) -> None:
    (tmp_path / "twice.csv").write_text("id,rooms,rooms\n1,3,7\n")  # Dask would read the second as rooms.1
    with pytest.raises(DatasetError, match=r"twice.csv repeats column name\(s\): 'rooms' in columns 2, 3"):
        scoring_input(tmp_path / "twice.csv", "64MB")
    (tmp_path / "header.csv").write_text("id,rooms\n")
    with pytest.raises(DatasetError, match="header.csv has a header but no row to score"):
        scoring_input(tmp_path / "header.csv", "64MB")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81\n\x90")
    with pytest.raises(DatasetError, match="binary.csv cannot be read as CSV: not UTF-8 text: byte 0xff at line 1, "):
        scoring_input(tmp_path / "binary.csv", "64MB")
    (tmp_path / "fine.csv").write_text("id,rooms\n1,3\n")
    assert scoring_input(tmp_path / "fine.csv", "64MB").columns == ["id", "rooms"]
    (tmp_path / "trailing.csv").write_text("id,rooms,,\n1,3,,\n")  # unnamed columns are no clash
    assert scoring_input(tmp_path / "trailing.csv", "64MB").columns[:2] == ["id", "rooms"]


def test_parquet_without_a_row_is_refused(tmp_path: Path) -> None:
    pd.DataFrame({"id": pd.Series([], dtype="int64")}).to_parquet(tmp_path / "none.parquet")
    with pytest.raises(DatasetError, match="has no row to score"):
        scoring_input(tmp_path, "64MB")
    pd.DataFrame({"id": [1]}).to_parquet(tmp_path / "one.parquet")
    assert len(scoring_input(tmp_path, "64MB").pieces) == 2  # one file with rows is enough


def test_force_clears_only_an_earlier_runs_answer_files(tmp_path: Path) -> None:
    for name in ("part-00000-0000.parquet", "part-00003-0001.parquet", "_rejected/part-00001-0000.parquet"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    assert clear_earlier_answers(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # and the emptied _rejected/ is gone
    assert clear_earlier_answers(tmp_path) == 0


def test_a_run_that_scored_no_row_of_its_input_fails_and_one_that_scored_some_does_not(tmp_path: Path) -> None:
    none = BatchScored(2, rows=7, scored=0, rejected=7, logged=0, seconds=0.1, first_reasons=("x: missing",))
    with pytest.raises(DatasetError, match=r"none of the 7 rows could be scored \(e\.g\. x: missing\); each is in "):
        none.require_scored(tmp_path)
    BatchScored(2, rows=7, scored=1, rejected=6, logged=0, seconds=0.1, first_reasons=("x: missing",)).require_scored(
        tmp_path
    )
    BatchScored(0, rows=0, scored=0, rejected=0, logged=0, seconds=0.0, first_reasons=()).require_scored(tmp_path)


def test_a_line_with_a_stray_field_among_the_first_rows_is_named_without_dask_s_wrapping(tmp_path: Path) -> None:
    """Trial 10: Dask reads the first rows to learn the columns, and wrapped pandas' message in its own."""
    lines = ["id,city,rooms"] + [f"{n},Lyon,{n % 5}" for n in range(40)]
    lines[5] = "4,Lyon, 2 rooms,3"  # an unquoted comma, among the 10 rows Dask reads first
    (tmp_path / "stray.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as refused:
        scoring_input(tmp_path / "stray.csv", "64MB")
    assert str(refused.value) == (
        "a line of the CSV cannot be read: Error tokenizing data. C error: Expected 3 fields in line 6, saw 4. "
        "Quote the field that holds a comma or fix the line"
    )


def test_a_byte_that_is_not_utf8_among_the_rows_dask_samples_is_named_by_line(tmp_path: Path) -> None:
    """Trial 20: it ended as "UnicodeDecodeError: UnicodeDecodeError"; the codec's own position is in a buffer."""
    lines = [b"id,city,rooms\n"] + [f"{n},Lyon,{n % 5}\n".encode() for n in range(300)]
    lines[120] = b"119,Montr\xe9al,4\n"  # Latin-1: past the two lines read first, within Dask's sample
    (tmp_path / "latin1.csv").write_bytes(b"".join(lines))
    with pytest.raises(DatasetError) as refused:
        scoring_input(tmp_path / "latin1.csv", "64MB")
    assert str(refused.value) == (
        f"input {tmp_path / 'latin1.csv'} cannot be read as CSV: not UTF-8 text: byte 0xe9 at line 121, offset 9 "
        "(invalid continuation byte); save it as UTF-8"
    )


def test_every_part_of_a_spark_style_export_is_read_and_a_stray_file_is_refused(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    pd.DataFrame({"id": [1, 2]}).to_parquet(export / "part-00000-abc.snappy.parquet")
    pd.DataFrame({"id": [3, 4]}).to_parquet(export / "part-00001-abc")  # Parquet with no suffix (trial 16)
    (export / "_SUCCESS").write_text("")
    (export / ".part-00000-abc.snappy.parquet.crc").write_bytes(b"\x00crc")
    found = scoring_input(export, "auto")
    assert [Path(piece.path).name for piece in found.pieces] == ["part-00000-abc.snappy.parquet", "part-00001-abc"]
    (export / "b.csv").write_text("id\n5\n")  # its rows would have gone unscored without a word
    with pytest.raises(DatasetError, match=r"holds 1 file\(s\) that are not Parquet \(b.csv\)"):
        scoring_input(export, "auto")


def test_a_corrupt_part_is_named(tmp_path: Path) -> None:
    pd.DataFrame({"id": [1]}).to_parquet(tmp_path / "good.parquet")
    (tmp_path / "bad.parquet").write_text("id\n1\n")
    with pytest.raises(DatasetError, match=r"input .*bad.parquet cannot be read as Parquet: "):
        scoring_input(tmp_path, "auto")


def test_auto_blocks_fit_the_workers_memory_and_spread_over_the_workers(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": range(800_000), "text": ["some words of text"] * 800_000})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    size = (tmp_path / "rows.csv").stat().st_size  # about 21 MB
    roomy = scoring_input(tmp_path / "rows.csv", "auto", workers=2, worker_memory=8 * 2**30)
    assert roomy.tasks == 4  # two blocks per worker, none of them over 64 MB
    tight = scoring_input(tmp_path / "rows.csv", "auto", workers=1, worker_memory=620 * 2**20)
    assert tight.tasks is not None
    assert tight.tasks >= size // (2 * 2**20)  # blocks of at most about 2 MB fit a 620 MB worker
    assert scoring_input(tmp_path / "rows.csv", "64MB").tasks == 1  # a size given is kept


def test_a_compressed_csv_is_one_block_without_dask_s_warning(tmp_path: Path) -> None:
    import warnings

    pd.DataFrame({"id": range(1000)}).to_csv(tmp_path / "rows.csv.gz", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Dask warns when told to cut a gzip file into blocks
        assert scoring_input(tmp_path / "rows.csv.gz", "auto").tasks == 1


def test_a_size_given_is_a_ceiling_not_dask_s_rounding(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": range(800_000), "text": ["some words of text"] * 800_000})
    frame.to_csv(tmp_path / "rows.csv", index=False)  # about 21 MB
    assert scoring_input(tmp_path / "rows.csv", "12MB").tasks == 2  # Dask alone: one block of 21 MB


def test_a_part_damaged_inside_is_named_by_the_worker(tmp_path: Path) -> None:
    import numpy as np

    from driftloop.io.partition_scoring import ParquetPiece, UnreadablePart, _read_row_group

    path = tmp_path / "part-00002.snappy.parquet"
    values = np.random.default_rng(0).integers(0, 10**9, 200_000)
    pd.DataFrame({"id": values}).to_parquet(path, compression="snappy", row_group_size=200_000)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = bytes(4000)  # a page scrambled, the footer whole (trial 17)
    path.write_bytes(bytes(data))
    assert scoring_input(path, "auto").columns == ["id"]  # its footer reads: the damage shows only in the rows
    with pytest.raises(UnreadablePart, match=r"part-00002.snappy.parquet \(row group 0\) cannot be read as Parquet"):
        list(_read_row_group(ParquetPiece(str(path), 0), 50_000))


def test_a_worker_dying_on_every_try_says_what_to_change(tmp_path: Path) -> None:
    from driftloop.io.batch_scoring import _died_on_every_try
    from driftloop.io.partition_scoring import ScoringModel

    pd.DataFrame({"id": range(10)}).to_csv(tmp_path / "rows.csv.gz", index=False)
    pd.DataFrame({"id": range(10)}).to_csv(tmp_path / "rows.csv", index=False)
    forest = ScoringModel("m", "2", bytes(29 * 2**20), "{}")
    small = ScoringModel("m", "1", bytes(1000), "{}")
    whole = _died_on_every_try(scoring_input(tmp_path / "rows.csv.gz", "auto"), small, 0, tmp_path)
    assert "decompress the CSV" in whole
    assert "--blocksize" not in whole  # it cannot cut a compressed file
    assert whole.endswith("none had finished")
    cut = _died_on_every_try(scoring_input(tmp_path / "rows.csv", "auto"), forest, 3, tmp_path / "out")
    assert "this version's ONNX graph alone is 29 MB" in cut
    assert "--blocksize for a CSV" in cut
    assert cut.endswith(f"3 task(s) had finished, their answers are in {tmp_path / 'out'}")


def test_a_worker_too_small_for_the_version_s_graph_is_refused_before_it_starts() -> None:
    from distributed.system import MEMORY_LIMIT

    from driftloop.errors import ConfigError
    from driftloop.io.batch_scoring import require_worker_room
    from driftloop.io.partition_scoring import ScoringModel

    forest = ScoringModel("equip", "2", bytes(29 * 2**20), "{}")  # trial 17's forest: died under 700 MB
    with pytest.raises(ConfigError) as refused:
        require_worker_room(700 * 10**6, 2, forest)
    assert str(refused.value).startswith(
        "a scoring worker's 668 MiB cannot hold equip v2: its 29.0 MB ONNX graph takes about 377 MiB in a worker"
    )
    assert str(refused.value).endswith("give each worker at least 692 MiB (--memory-limit)")
    require_worker_room(2**30, 2, forest)  # where it scored
    require_worker_room(0, 2, forest)  # no limit: Dask stops no worker
    require_worker_room(512 * 2**20, 2, ScoringModel("equip", "1", bytes(6 * 2**20), "{}"))  # a 6 MB forest fits
    many = int(MEMORY_LIMIT) // (600 * 2**20)  # without a limit the workers share the RAM: 600 MiB or less each
    with pytest.raises(ConfigError, match=rf"\(--memory-limit\), or run fewer than {many} workers"):
        require_worker_room(None, many, forest)


def test_only_a_version_its_gate_refused_gets_a_note_naming_the_gates_reason() -> None:
    from driftloop.io.partition_scoring import ScoringModel

    assert ScoringModel("equip", "3", b"", "{}").gate_note() is None
    refused = ScoringModel("equip", "3", b"", "{}", refused_by_gate="rmse 4.1 above the champion's 3.2")
    assert refused.gate_note() == (
        "v3 of 'equip' was refused by its promotion gate (rmse 4.1 above the champion's 3.2); scoring it as asked: "
        "each answer's model_version column names it"
    )
