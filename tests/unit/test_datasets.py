from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from driftloop.core.schema import DatasetSchema, FeatureKind
from driftloop.core.snapshot import split_holdout
from driftloop.errors import ConfigError, DatasetError
from driftloop.io.datasets import load_schema, read_snapshot
from driftloop.settings import BUNDLED_DATA
from tests.support.loans import LOANS_SCHEMA_YAML, make_loans, write_loans

GOOD_SCHEMA = """\
name: tiny
min_rows: 10
target: {name: label, classes: ["no", "yes"], positive: "yes"}
features:
  - {name: age, kind: numeric, min: 0}
  - {name: colour, kind: categorical, categories: ["red", "blue"]}
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_schema_loads(churn_schema: DatasetSchema) -> None:
    assert churn_schema.name == "telco-churn"
    assert churn_schema.target.positive == "Yes"
    assert len(churn_schema.features) == 19
    assert churn_schema.feature("online_backup").categories == ("No", "Yes", "No internet service")


def test_a_schema_file_loads(tmp_path: Path) -> None:
    schema = load_schema(_write(tmp_path, "tiny.yaml", GOOD_SCHEMA))
    assert schema.feature_names == ["age", "colour"]
    assert schema.feature("colour").kind is FeatureKind.CATEGORICAL


def test_missing_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_schema(path)
    assert str(path) in str(caught.value)


def test_schema_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_schema(tmp_path)


def test_schema_file_with_bad_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", "name: x\nfeatures: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as caught:
        load_schema(path)
    assert str(path) in str(caught.value)
    assert "line 3, column 1: expected ',' or ']'" in str(caught.value)


@pytest.mark.parametrize(("text", "found"), [("", "nothing"), ("- a\n- b\n", "a list")])
def test_schema_file_that_is_not_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    with pytest.raises(ConfigError, match=f"must hold a mapping .* it holds {found}"):
        load_schema(_write(tmp_path, "schema.yaml", text))


def test_categorical_feature_without_categories(tmp_path: Path) -> None:
    text = GOOD_SCHEMA.replace('categories: ["red", "blue"]', "categories: []")
    path = _write(tmp_path, "schema.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_schema(path)
    message = str(caught.value)
    assert message.startswith(f"schema file {path} is invalid: features[1] ('colour'): ")
    assert "\n" not in message  # one problem: one line
    assert "categorical feature 'colour' needs a non-empty 'categories' list" in message
    assert "Value error" not in message
    assert "errors.pydantic.dev" not in message


def test_positive_class_that_is_not_a_class(tmp_path: Path) -> None:
    text = GOOD_SCHEMA.replace('positive: "yes"', "positive: maybe")
    with pytest.raises(ConfigError) as caught:
        load_schema(_write(tmp_path, "schema.yaml", text))
    assert "is invalid: target: target 'label': positive 'maybe' is not one of ['no', 'yes']" in str(caught.value)


def test_every_schema_error_is_listed(tmp_path: Path) -> None:
    text = (
        GOOD_SCHEMA.replace("kind: numeric", "kind: text")
        .replace("min_rows: 10", "min_rows: 1")
        .replace("name: tiny\n", "name: tiny\ncolour: green\n")
    )
    with pytest.raises(ConfigError) as caught:
        load_schema(_write(tmp_path, "schema.yaml", text))
    message = str(caught.value)
    assert "(3 problem(s))" in message
    assert "  - min_rows: Input should be greater than or equal to 2 (got 1)" in message
    assert "  - features[0] ('age').kind: Input should be 'numeric', 'binary' or 'categorical' (got 'text')" in message
    assert "  - colour: Extra inputs are not permitted" in message


def test_what_this_version_cannot_train_is_named_with_the_way_forward(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "name: wine",
            "target: {name: cultivar, classes: [a, b, c], kind: ordinal}",
            "features:",
            "  - {name: harvested, kind: datetime}",
            "  - {name: alcohol, kind: numeric}",
        ]
    )
    with pytest.raises(ConfigError) as caught:
        load_schema(_write(tmp_path, "schema.yaml", text))
    problems = str(caught.value).splitlines()[1:]
    kinds = "; set target.kind: binary (two classes), multiclass (three or more) or regression (a number)"
    assert problems == [
        f"  - target.kind: Input should be 'binary', 'multiclass' or 'regression' (got 'ordinal'){kinds}",
        "  - features[0] ('harvested').kind: Input should be 'numeric', 'binary' or 'categorical' (got 'datetime'); "
        "a schema has no date or time kind: derive numeric features from the column in the snapshot (days since an "
        "event, day of week, hour) and declare those",
    ]


def test_a_failing_feature_is_reported_once(tmp_path: Path) -> None:
    text = GOOD_SCHEMA.split("features:")[0] + "features:\n  - {kind: numeric}\n"
    with pytest.raises(ConfigError) as caught:
        load_schema(_write(tmp_path, "schema.yaml", text))
    assert str(caught.value).endswith("is invalid: features[0].name: Field required")


def test_schema_missing_a_required_field(tmp_path: Path) -> None:
    text = "name: tiny\nfeatures:\n  - {name: age, kind: numeric}\n"
    with pytest.raises(ConfigError, match="is invalid: target: Field required"):
        load_schema(_write(tmp_path, "schema.yaml", text))


def test_missing_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "gone.csv"
    with pytest.raises(DatasetError, match="does not exist") as caught:
        read_snapshot(path)
    assert str(path) in str(caught.value)
    assert str(caught.value) == str(caught.value).strip()  # one line: pandas' own message ends in a newline


def test_a_directory_of_parquet_parts_is_one_snapshot(tmp_path: Path, churn_frame: pd.DataFrame) -> None:
    parts = tmp_path / "export"
    parts.mkdir()
    for index, start in enumerate(range(0, len(churn_frame), 2500)):
        churn_frame.iloc[start : start + 2500].to_parquet(parts / f"part-{index:05d}.parquet", index=False)
    (parts / "_SUCCESS").write_text("")  # what Spark leaves beside its parts: not data
    pd.testing.assert_frame_equal(read_snapshot(parts), churn_frame.reset_index(drop=True))


def test_a_directory_without_parquet_or_with_mismatched_parts_is_refused(
    tmp_path: Path, churn_frame: pd.DataFrame
) -> None:
    with pytest.raises(DatasetError, match=r"holds no Parquet file \(.parquet, .pq\)"):
        read_snapshot(tmp_path)
    churn_frame.head(10).to_parquet(tmp_path / "a.parquet", index=False)
    churn_frame.head(10).drop(columns=["tenure"]).to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(DatasetError, match="b.parquet has columns .* every part must have the same columns"):
        read_snapshot(tmp_path)


@pytest.mark.parametrize("name", ["data.json", "data.txt", "data", "data.gz", "data.xlsx", "data.parquet.gz"])
def test_unsupported_snapshot_suffix(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, "a,b\n1,2\n")
    with pytest.raises(DatasetError, match="unsupported file type") as caught:
        read_snapshot(path)
    assert str(path) in str(caught.value)
    assert str(caught.value) == str(caught.value).strip()  # one line: pandas' own message ends in a newline


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet", "empty.csv.gz"])
def test_zero_byte_snapshot(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, "")
    with pytest.raises(DatasetError, match="is empty"):
        read_snapshot(path)


def test_csv_with_nothing_but_blank_lines(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is empty \\(no columns\\)"):
        read_snapshot(_write(tmp_path, "blank.csv", "\n\n"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_snapshot_with_a_header_but_no_rows(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"header.{fmt}"
    frame = pd.DataFrame({"a": pd.Series([], dtype="float64"), "b": pd.Series([], dtype=object)})
    frame.to_parquet(path) if fmt == "parquet" else frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="has no rows \\(2 column\\(s\\), 0 rows\\)"):
        read_snapshot(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        # mtime=0: a gzip header holds the time it was written, and pytest-xdist workers must collect the same ids.
        ("broken.parquet", b"this is not parquet at all"),
        ("broken.csv.gz", b"not gzip data"),
        ("truncated.csv.gz", gzip.compress(b"a,b\n" + b"1,2\n" * 1000, mtime=0)[:40]),
        ("ragged.csv", b'a,b\n1,2\n3,"unclosed\n'),
        ("stray.csv", b"a,b\n1,2\n3,4,5\n"),
        ("binary.csv", b"\xff\xfe\x00\x81\x00garbage"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_unparsable_snapshot(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError, match="cannot parse snapshot") as caught:
        read_snapshot(path)
    assert str(path) in str(caught.value)
    assert str(caught.value) == str(caught.value).strip()  # one line: pandas' own message ends in a newline


@pytest.mark.parametrize("name", ["deep.csv", "deep.csv.gz"])
def test_a_snapshot_that_is_not_utf8_is_refused_naming_the_line_of_its_first_bad_byte(
    tmp_path: Path, name: str
) -> None:
    """Trial 20: the codec's "position 53201" is in a buffer of pandas, not the file; the bad byte was on line 1,502."""
    rows = [b"id,city,price\n"] + [f"{n},Lyon,{n % 7}.5\n".encode() for n in range(3000)]
    rows[1501] = b"1500,Montr\xe9al,3.5\n"
    content = b"".join(rows)
    path = tmp_path / name
    path.write_bytes(gzip.compress(content, mtime=0) if name.endswith(".gz") else content)
    with pytest.raises(DatasetError) as caught:
        read_snapshot(path)
    assert str(caught.value) == (
        f"cannot parse snapshot {path} as csv: not UTF-8 text: byte 0xe9 at line 1,502, offset 10 "
        "(invalid continuation byte); save it as UTF-8"
    )


def test_bundled_csv_reads_with_blanks_as_missing_and_strings_kept(churn_frame: pd.DataFrame) -> None:
    assert churn_frame.shape == (7043, 20)
    assert churn_frame["total_charges"].isna().sum() == 11
    assert churn_frame["tenure"].dtype == np.int64
    assert pd.api.types.is_string_dtype(churn_frame["churn"])  # object in pandas 2, str in pandas 3
    assert set(churn_frame["churn"]) == {"No", "Yes"}
    assert set(churn_frame["multiple_lines"]) == {"No", "Yes", "No phone service"}


def test_csv_reading_rules(tmp_path: Path) -> None:
    text = "n,flag,answer,note\n1,0,Yes,\n,1,No,NA\n3.5,1,No,kept\n"
    frame = read_snapshot(_write(tmp_path, "rules.csv", text))
    assert frame["n"].dtype == np.float64
    assert frame["n"].isna().tolist() == [False, True, False]
    assert frame["flag"].dtype == np.int64
    assert frame["answer"].tolist() == ["Yes", "No", "No"]
    # Blank cells and pandas' default NA spellings ("NA") both become missing.
    assert frame["note"].isna().tolist() == [True, True, False]


def test_csv_and_parquet_read_the_same_frame(tmp_path: Path) -> None:
    parquet_path, _ = write_loans(tmp_path / "p", fmt="parquet")
    csv_path, _ = write_loans(tmp_path / "c", fmt="csv")
    from_parquet = read_snapshot(parquet_path)
    from_csv = read_snapshot(csv_path)
    pd.testing.assert_frame_equal(from_parquet, make_loans())
    pd.testing.assert_frame_equal(from_csv, from_parquet)


def test_compressed_csv_reads(tmp_path: Path, churn_frame: pd.DataFrame) -> None:
    path = tmp_path / "Churn.CSV.BZ2"
    churn_frame.head(50).to_csv(path, index=False, compression="bz2")
    pd.testing.assert_frame_equal(read_snapshot(path), churn_frame.head(50))
    assert BUNDLED_DATA.name.endswith(".csv.gz")


def test_loans_support_files(loans_dir: Path) -> None:
    assert sorted(p.name for p in loans_dir.iterdir()) == ["loans.parquet", "loans.schema.yaml"]
    schema = load_schema(loans_dir / "loans.schema.yaml")
    assert (loans_dir / "loans.schema.yaml").read_text() == LOANS_SCHEMA_YAML
    assert schema.target.classes == ("repaid", "defaulted")
    assert schema.target.positive == "defaulted"
    assert {f.kind for f in schema.features} == set(FeatureKind)


def test_make_loans_is_seeded() -> None:
    pd.testing.assert_frame_equal(make_loans(300, seed=1), make_loans(300, seed=1))
    assert not make_loans(300, seed=1).equals(make_loans(300, seed=2))
    assert len(make_loans(123)) == 123


def test_loans_labels_are_learnable(loans_dir: Path) -> None:
    schema = load_schema(loans_dir / "loans.schema.yaml")
    frame = read_snapshot(loans_dir / "loans.parquet")
    positive_share = (frame["default"] == "defaulted").mean()
    assert 0.2 <= positive_share <= 0.3

    split = split_holdout(frame, schema, fraction=0.25, seed=0)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), schema.numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), schema.categorical),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(split.train[schema.feature_names], split.train["default"] == "defaulted")
    scores = model.predict_proba(split.holdout[schema.feature_names])[:, 1]
    assert roc_auc_score(split.holdout["default"] == "defaulted", scores) >= 0.75


@pytest.mark.parametrize("name", ["dup.csv", "dup.csv.gz", "dup.parquet"])
def test_a_repeated_column_name_is_refused_naming_its_columns(tmp_path: Path, name: str) -> None:
    """The finding: tenure twice, the second copy all 7s; pandas called it tenure.1 and training dropped it."""
    frame = pd.DataFrame([[1, "a", 7], [2, "b", 7]], columns=["tenure", "contract", "tenure"])
    path = tmp_path / name
    if name.endswith(".parquet"):  # pandas refuses to write it; another tool may not
        pq.write_table(pa.Table.from_arrays([pa.array(frame.iloc[:, i]) for i in range(3)], names=list(frame)), path)
    else:
        frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"repeats column name\(s\): 'tenure' in columns 1, 3"):
        read_snapshot(path)


def test_a_column_literally_named_like_a_pandas_copy_is_not_a_repeat(tmp_path: Path) -> None:
    path = tmp_path / "fine.csv"
    path.write_text("tenure,tenure.1\n1,2\n")
    assert list(read_snapshot(path).columns) == ["tenure", "tenure.1"]
