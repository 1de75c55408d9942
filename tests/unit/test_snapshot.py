from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import Split, content_hash, row_keys, split_holdout
from driftloop.errors import DatasetError
from driftloop.io.datasets import load_schema, read_snapshot


def test_hash_is_a_sha256_hex_digest(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    digest = content_hash(churn_frame, churn_schema)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert content_hash(churn_frame.copy(), churn_schema) == digest


@pytest.mark.parametrize("name", ["snapshot.parquet", "snapshot.csv", "snapshot.csv.gz"])
def test_hash_survives_a_file_round_trip(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    if name.endswith(".parquet"):
        churn_frame.to_parquet(path, index=False)
    else:
        churn_frame.to_csv(path, index=False)
    assert content_hash(read_snapshot(path), churn_schema) == content_hash(churn_frame, churn_schema)


def test_loans_csv_and_parquet_hash_the_same(loans_dir: Path, tmp_path: Path) -> None:
    schema = load_schema(loans_dir / "loans.schema.yaml")
    parquet = read_snapshot(loans_dir / "loans.parquet")
    parquet.to_csv(tmp_path / "loans.csv", index=False)
    from_csv = read_snapshot(tmp_path / "loans.csv")
    assert parquet["loan_amount"].isna().any()
    assert content_hash(from_csv, schema) == content_hash(parquet, schema)


def test_hash_ignores_int_versus_float(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    as_float = churn_frame.astype({"tenure": "float64", "female": "float64", "partner": "int32"})
    assert content_hash(as_float, churn_schema) == content_hash(churn_frame, churn_schema)


def test_hash_ignores_extra_columns_column_order_and_index(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    original = content_hash(churn_frame, churn_schema)
    changed = churn_frame.iloc[:, ::-1].copy()
    changed["customer_id"] = np.arange(len(changed))
    changed.index = changed.index + 1000
    assert content_hash(changed, churn_schema) == original


def test_hash_ignores_how_missing_values_are_spelled(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    with_nan = churn_frame.copy()
    with_nan.loc[0, "contract"] = np.nan
    with_none = churn_frame.copy()
    with_none.loc[0, "contract"] = None
    assert content_hash(with_nan, churn_schema) == content_hash(with_none, churn_schema)
    assert content_hash(with_nan, churn_schema) != content_hash(churn_frame, churn_schema)


def _change_number(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[10, "monthly_charges"] += 0.01
    return frame


def _change_category(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[10, "contract"] = "Two year" if frame.loc[10, "contract"] != "Two year" else "One year"
    return frame


def _change_label(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[10, "churn"] = "Yes" if frame.loc[10, "churn"] == "No" else "No"
    return frame


def _blank_a_number(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[10, "total_charges"] = np.nan
    return frame


def _swap_two_rows(frame: pd.DataFrame) -> pd.DataFrame:
    order = list(range(len(frame)))
    order[0], order[1] = order[1], order[0]
    return frame.iloc[order].reset_index(drop=True)


def _add_a_row(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.tail(1)], ignore_index=True)


def _drop_a_row(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[1:]


@pytest.mark.parametrize(
    "change",
    [
        _change_number,
        _change_category,
        _change_label,
        _blank_a_number,
        _swap_two_rows,
        _add_a_row,
        _drop_a_row,
    ],
)
def test_hash_changes_with_the_content(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    original = content_hash(churn_frame, churn_schema)
    assert content_hash(change(churn_frame.copy()), churn_schema) != original


def test_hash_needs_every_schema_column(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    with pytest.raises(DatasetError, match="missing column\\(s\\) 'tenure'"):
        content_hash(churn_frame.drop(columns=["tenure"]), churn_schema)


def three_standard_errors(share: float, rows: int) -> float:
    """The split is a per-row draw: shares vary binomially; 3 standard errors bound a fair draw."""
    return 3 * math.sqrt(share * (1 - share) / rows)


def test_split_sizes_and_columns(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    split = split_holdout(churn_frame, churn_schema, fraction=0.25, seed=42)
    assert isinstance(split, Split)
    rows = len(churn_frame)
    assert abs(len(split.holdout) / rows - 0.25) < three_standard_errors(0.25, rows)
    assert len(split.train) + len(split.holdout) == rows
    assert split.train.index.intersection(split.holdout.index).empty
    assert list(split.train.columns) == list(churn_frame.columns)
    assert list(split.holdout.columns) == list(churn_frame.columns)
    pd.testing.assert_frame_equal(split.holdout, churn_frame.loc[split.holdout.index])


def test_rows_keep_their_side_when_the_snapshot_grows(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    # A retrain adds labelled rows to the champion's data: the champion's training rows must stay in train.
    older, newer = churn_frame.iloc[:5000], churn_frame.iloc[5000:]
    before = split_holdout(older, churn_schema, fraction=0.25, seed=42)
    after = split_holdout(pd.concat([newer, older]), churn_schema, fraction=0.25, seed=42)
    assert set(before.train.index) <= set(after.train.index)
    assert set(before.holdout.index) <= set(after.holdout.index)


def test_rows_keep_their_side_when_a_snapshot_adds_a_feature_split_on_the_champion_s(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    """Trial 10: a new column changed every row's hash, and put the champion's training rows in the holdout."""
    without = churn_schema.model_copy(
        update={"features": tuple(f for f in churn_schema.features if f.name != "tenure")}
    )
    before = split_holdout(churn_frame, without, fraction=0.25, seed=42)
    reshuffled = split_holdout(churn_frame, churn_schema, fraction=0.25, seed=42)
    seen = set(before.train.index) & set(reshuffled.holdout.index)
    assert len(seen) > 0.6 * len(reshuffled.holdout)  # the failure: most of the new holdout was trained on
    after = split_holdout(churn_frame, churn_schema, fraction=0.25, seed=42, features=without.feature_names)
    assert set(after.train.index) == set(before.train.index)
    assert set(after.holdout.index) == set(before.holdout.index)
    # Growing as well (a retrain's recent rows): the champion's rows still keep their side.
    grown = split_holdout(
        pd.concat([churn_frame.iloc[:3000], churn_frame]), churn_schema, 0.25, 42, features=without.feature_names
    )
    assert set(before.train.index) <= set(grown.train.index)


def test_identical_rows_fall_on_the_same_side(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    doubled = pd.concat([churn_frame, churn_frame], ignore_index=True)
    split = split_holdout(doubled, churn_schema, fraction=0.25, seed=5)
    held = set(split.holdout.index)
    assert all((i in held) == (i + len(churn_frame) in held) for i in range(len(churn_frame)))


def test_split_is_deterministic(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    first = split_holdout(churn_frame, churn_schema, fraction=0.2, seed=7)
    again = split_holdout(churn_frame.copy(), churn_schema, fraction=0.2, seed=7)
    pd.testing.assert_frame_equal(first.train, again.train)
    pd.testing.assert_frame_equal(first.holdout, again.holdout)


def test_split_depends_on_the_seed(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    first = split_holdout(churn_frame, churn_schema, fraction=0.2, seed=7)
    other = split_holdout(churn_frame, churn_schema, fraction=0.2, seed=8)
    assert set(first.holdout.index) != set(other.holdout.index)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_split_is_stratified(churn_frame: pd.DataFrame, churn_schema: DatasetSchema, fraction: float) -> None:
    share = (churn_frame["churn"] == "Yes").mean()
    split = split_holdout(churn_frame, churn_schema, fraction=fraction, seed=3)
    assert abs((split.train["churn"] == "Yes").mean() - share) < three_standard_errors(share, len(split.train))
    assert abs((split.holdout["churn"] == "Yes").mean() - share) < three_standard_errors(share, len(split.holdout))


def test_loans_split_is_stratified(loans_dir: Path) -> None:
    schema = load_schema(loans_dir / "loans.schema.yaml")
    frame = read_snapshot(loans_dir / "loans.parquet")
    share = (frame["default"] == "defaulted").mean()
    split = split_holdout(frame, schema, fraction=0.3, seed=11)
    holdout_share = (split.holdout["default"] == "defaulted").mean()
    assert abs(holdout_share - share) < three_standard_errors(share, len(split.holdout))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_split_rejects_a_fraction_outside_zero_one(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, fraction: float
) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_holdout(churn_frame, churn_schema, fraction=fraction, seed=1)


def test_split_explains_a_class_too_small_to_stratify(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    frame = pd.concat(
        [
            churn_frame[churn_frame["churn"] == "No"].head(50),
            churn_frame[churn_frame["churn"] == "Yes"].head(1),
        ]
    )
    with pytest.raises(
        DatasetError, match="class counts, smallest first: 'Yes': 1, 'No': 50\\).*class 'Yes' would have no"
    ):
        split_holdout(frame, churn_schema, fraction=0.25, seed=1)


def test_a_split_refusal_lists_the_ten_smallest_classes_only() -> None:
    """A number taken for classes (thousands of them) once listed every one in the error."""
    values = [f"{v:.3f}" for v in np.linspace(10.0, 50.0, 500)]
    schema = DatasetSchema.model_validate(
        {
            "name": "plants",
            "features": [{"name": "x", "kind": "numeric"}],
            "target": {"name": "growth", "kind": "multiclass", "classes": values},
        }  # fmt: skip
    )
    frame = pd.DataFrame({"x": np.arange(1000.0), "growth": values * 2})
    with pytest.raises(DatasetError) as refused:
        split_holdout(frame, schema, fraction=0.25, seed=1)
    message = str(refused.value)
    assert message.count(": 2") == 10
    assert "and 490 more classes)" in message


def test_a_blank_in_a_true_false_column_moves_no_row_to_the_other_side_of_the_split() -> None:
    """One blank makes pandas store True/False as objects: the rows keep their keys, so a retrain's split keeps them."""
    schema = DatasetSchema.model_validate(
        {
            "name": "flags",
            "min_rows": 2,
            "target": {"name": "y", "classes": ["a", "b"], "positive": "b"},
            "features": [{"name": "g", "kind": "binary", "nullable": True}, {"name": "x", "kind": "numeric"}],
        }
    )
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"g": rng.random(400) < 0.5, "x": rng.integers(0, 9, 400), "y": rng.choice(["a", "b"], 400)})
    recent = pd.DataFrame({"g": [None, True], "x": [1.5, 2.0], "y": ["a", "b"]})
    both = pd.concat([base, recent], ignore_index=True)
    assert both["g"].dtype == object
    np.testing.assert_array_equal(row_keys(both, schema)[:400], row_keys(base, schema))
    held = split_holdout(both, schema, 0.25, 7).holdout.index
    assert set(held[held < 400]) == set(split_holdout(base, schema, 0.25, 7).holdout.index)
