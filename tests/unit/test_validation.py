from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.core.validation import find_problems, validate_snapshot
from driftloop.errors import DatasetValidationError
from driftloop.io.datasets import load_schema, read_snapshot


def test_bundled_churn_snapshot_is_valid(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    assert find_problems(churn_frame, churn_schema) == []
    validate_snapshot(churn_frame, churn_schema, dataset="churn")


def test_loans_snapshot_is_valid(loans_dir: Path) -> None:
    schema = load_schema(loans_dir / "loans.schema.yaml")
    frame = read_snapshot(loans_dir / "loans.parquet")
    assert find_problems(frame, schema) == []


def test_extra_columns_are_ignored(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    churn_frame["customer_id"] = "not a feature"
    churn_frame["score"] = -1.0
    assert find_problems(churn_frame, churn_schema) == []


def test_missing_columns_are_all_listed(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    frame = churn_frame.drop(columns=["tenure", "contract", "churn"])
    assert find_problems(frame, churn_schema) == [
        "missing feature column(s): 'tenure', 'contract'",
        "missing target column 'churn'",
    ]


def test_duplicated_column_names(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    frame = pd.concat([churn_frame, churn_frame[["tenure", "contract"]]], axis=1)
    assert find_problems(frame, churn_schema) == ["duplicated column name(s): 'contract', 'tenure'"]


def test_fewer_rows_than_min_rows(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    assert find_problems(churn_frame.head(100), churn_schema) == ["only 100 row(s); the schema requires at least 500"]


def test_text_in_numeric_column_names_the_values(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    tenure = churn_frame["tenure"].astype(object)
    tenure[[3, 8, 9]] = ["abc", "twelve", "abc"]
    churn_frame["tenure"] = tenure
    assert find_problems(churn_frame, churn_schema) == [
        "column 'tenure': 3 non-numeric value(s) (e.g. 'abc', 'twelve'; data rows 4, 9, 10)"
    ]


def test_numbers_stored_as_text_are_not_a_numeric_dtype(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    churn_frame["monthly_charges"] = churn_frame["monthly_charges"].astype(str)
    (problem,) = find_problems(churn_frame, churn_schema)
    # The dtype's name is 'object' on pandas 2 and 'str' on pandas 3.
    assert re.fullmatch(
        r"column 'monthly_charges': numbers stored as \w+, not a numeric dtype \(e\.g\. '29\.85', '56\.95', '53\.85'\)",
        problem,
    )


@pytest.mark.parametrize("kind", ["binary", "numeric"])
def test_text_in_a_binary_or_numeric_column(churn_frame: pd.DataFrame, churn_schema: DatasetSchema, kind: str) -> None:
    column = "partner" if kind == "binary" else "monthly_charges"
    values = churn_frame[column].astype(object)
    values[0] = "Yes"
    churn_frame[column] = values
    assert find_problems(churn_frame, churn_schema) == [
        f"column '{column}': 1 non-numeric value(s) (e.g. 'Yes'; data row 1)"
    ]


def test_binary_values_other_than_zero_and_one(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    churn_frame.loc[[5, 6, 7], "female"] = [2, -1, 2]
    assert find_problems(churn_frame, churn_schema) == [
        "column 'female': 3 value(s) other than 0/1 (e.g. 2, -1; data rows 6, 7, 8)"
    ]


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        (
            "tenure",
            [130, 999, 500, 130],
            "column 'tenure': 4 value(s) above max 120 (e.g. 130, 999, 500; data rows 11, 12, 13)",
        ),
        ("tenure", [-1, -3], "column 'tenure': 2 value(s) below min 0 (e.g. -1, -3; data rows 11, 12)"),
        ("monthly_charges", [-5.5], "column 'monthly_charges': 1 value(s) below min 0 (e.g. -5.5; data row 11)"),
        (
            "total_charges",
            [250000.25],
            "column 'total_charges': 1 value(s) above max 100000 (e.g. 250000.25; data row 11)",
        ),
    ],
)
def test_values_outside_the_numeric_range(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, column: str, values: list[float], expected: str
) -> None:
    churn_frame.loc[churn_frame.index[10 : 10 + len(values)], column] = values
    assert find_problems(churn_frame, churn_schema) == [expected]


def test_infinite_numbers_are_refused_before_the_fit_sees_them(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    churn_frame.loc[churn_frame.index[3:5], "monthly_charges"] = [np.inf, 1e300]
    assert find_problems(churn_frame, churn_schema) == [
        "column 'monthly_charges': 2 value(s) that are not finite numbers within float32 range "
        "(e.g. inf, 1e+300; data rows 4, 5)"
    ]


@pytest.mark.parametrize(
    ("column", "empty"),
    [("tenure", np.nan), ("partner", np.nan), ("contract", None), ("internet_service", np.nan)],
)
def test_nulls_in_a_non_nullable_feature(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, column: str, empty: object
) -> None:
    churn_frame.loc[[4, 17, 99, 1000], column] = empty
    assert find_problems(churn_frame, churn_schema) == [
        f"column '{column}': 4 missing value(s) but the feature is not nullable (data rows 5, 18, 100)"
    ]


def test_nulls_in_a_nullable_feature_are_fine(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    assert churn_frame["total_charges"].isna().sum() > 0
    churn_frame.loc[[1, 2, 3], "total_charges"] = np.nan
    assert find_problems(churn_frame, churn_schema) == []


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_nullable_feature_with_no_value_at_all_is_refused_in_a_whole_snapshot_only(kind: str) -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "houses",
            "min_rows": 2,
            "target": {"name": "price", "kind": "regression"},
            "features": [
                {"name": "rooms", "kind": "numeric"},
                {"name": "area", "kind": "numeric", "nullable": True},
                {"name": "district", "kind": "categorical", "categories": ["n", "s"], "nullable": True},
            ],
        }
    )
    frame = pd.DataFrame(
        {"rooms": [1.0, 2.0, 3.0], "area": [50.0, np.nan, 70.0], "district": ["n", None, "s"], "price": [1.0, 2, 3]}
    )
    assert find_problems(frame, schema) == []
    empty = "area" if kind == "numeric" else "district"
    frame[empty] = np.nan if kind == "numeric" else None
    assert find_problems(frame, schema) == [
        f"column {empty!r}: no value in any row (nullable, but nothing to learn from)"
    ]
    assert find_problems(frame, schema, 1, part=True) == []  # a retrain's recent rows may lack it


def test_true_false_words_are_a_binary_feature_but_not_a_regression_target() -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "flags",
            "min_rows": 2,
            "target": {"name": "price", "kind": "regression"},
            "features": [{"name": "garden", "kind": "binary", "nullable": True}],
        }
    )
    frame = pd.DataFrame({"garden": ["True", None, "false"], "price": [1.0, 2.0, 3.0]})
    assert find_problems(frame, schema) == []
    words = frame.assign(price=["True", "False", "True"])
    assert [p for p in find_problems(words, schema) if p.startswith("target 'price'")], find_problems(words, schema)


def test_booleans_are_a_binary_features_values_but_not_a_numeric_features(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    """Trial 20: the server refuses `true` for a numeric feature; a snapshot's booleans there were read as 1/0."""
    flags = churn_frame.assign(partner=churn_frame["partner"] == 1)  # binary: a bool dtype is its 1 and 0
    assert find_problems(flags, churn_schema) == []
    wrong = flags.assign(tenure=churn_frame["tenure"] > 12)
    assert find_problems(wrong, churn_schema) == [
        "column 'tenure': 7043 boolean value(s) (e.g. False, True; data rows 1, 2, 3) in a numeric "
        "feature: declare it binary, or give numbers"
    ]
    mixed = churn_frame["tenure"].astype(object)
    mixed[[2, 5]] = [True, "False"]  # among numbers: not numbers, whatever their spelling
    assert find_problems(churn_frame.assign(tenure=mixed), churn_schema) == [
        "column 'tenure': 2 non-numeric value(s) (e.g. True, 'False'; data rows 3, 6)"
    ]


def test_unknown_categories_are_listed_with_counts(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    churn_frame.loc[[1, 2, 3], "contract"] = ["Weekly", "Daily", "Weekly"]
    assert find_problems(churn_frame, churn_schema) == [
        "column 'contract': 3 value(s): 'Weekly' (2), 'Daily' (1) outside the declared categories (data rows 2, 3, 4)"
    ]


def test_many_unknown_categories_are_summarised(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    churn_frame.loc[0:7, "payment_method"] = [f"coin {i}" for i in range(8)]
    (problem,) = find_problems(churn_frame, churn_schema)
    assert problem.startswith("column 'payment_method': 8 value(s): 'coin 0' (1),")
    assert problem.endswith(", and 3 more distinct outside the declared categories (data rows 1, 2, 3)")


def test_missing_labels(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    churn_frame.loc[[7, 8], "churn"] = np.nan
    assert find_problems(churn_frame, churn_schema) == ["target 'churn': 2 missing label(s) (data rows 8, 9)"]


def test_labels_outside_the_classes(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    churn_frame.loc[[0, 1, 2], "churn"] = ["Maybe", "yes", "Maybe"]
    assert find_problems(churn_frame, churn_schema) == [
        "target 'churn': 3 value(s): 'Maybe' (2), 'yes' (1) outside the classes 'No', 'Yes' (data rows 1, 2, 3)"
    ]


@pytest.mark.parametrize(("labels", "absent"), [("No", "'Yes'"), ("Yes", "'No'"), ("unknown", "'No', 'Yes'")])
def test_fewer_than_two_classes(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, labels: str, absent: str
) -> None:
    churn_frame["churn"] = labels
    problems = find_problems(churn_frame, churn_schema)
    assert problems[-1] == f"target 'churn': both classes 'No', 'Yes' are needed; no rows of {absent}"
    # A retrain's recent rows join the champion's, which hold both (trial 53); labels outside the classes do not.
    recent = find_problems(churn_frame.head(3), churn_schema, 1, part=True)
    assert recent == ([] if labels != "unknown" else [
        "target 'churn': 3 value(s): 'unknown' (3) outside the classes 'No', 'Yes' (data rows 1, 2, 3)"
    ])  # fmt: skip


def test_every_problem_is_reported_in_one_error(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    frame = churn_frame.head(300).drop(columns=["dependents"])
    frame["tenure"] = frame["tenure"].astype(object)
    frame.loc[0, "tenure"] = "ten"
    frame.loc[1, "tenure"] = 500
    frame.loc[2, "senior_citizen"] = 3
    frame.loc[3, "multiple_lines"] = np.nan
    frame.loc[4, "internet_service"] = "Satellite"
    frame.loc[5, "churn"] = "Perhaps"
    frame.loc[6, "churn"] = None
    frame["extra"] = 1

    with pytest.raises(DatasetValidationError) as caught:
        validate_snapshot(frame, churn_schema, dataset="churn-2024-06")

    error = caught.value
    assert error.dataset == "churn-2024-06"
    assert error.problems == [
        "missing feature column(s): 'dependents'",
        "only 300 row(s); the schema requires at least 500",
        "column 'senior_citizen': 1 value(s) other than 0/1 (e.g. 3; data row 3)",
        "column 'tenure': 1 non-numeric value(s) (e.g. 'ten'; data row 1)",
        "column 'tenure': 1 value(s) above max 120 (e.g. 500; data row 2)",
        "column 'multiple_lines': 1 missing value(s) but the feature is not nullable (data row 4)",
        "column 'internet_service': 1 value(s): 'Satellite' (1) outside the declared categories (data row 5)",
        "target 'churn': 1 missing label(s) (data row 7)",
        "target 'churn': 1 value(s): 'Perhaps' (1) outside the classes 'No', 'Yes' (data row 6)",
    ]
    message = str(error)
    assert "'churn-2024-06' failed validation (9 problem(s))" in message
    assert all(f"  - {p}" in message for p in error.problems)


def test_stays_fast_on_a_hundred_thousand_rows(churn_frame: pd.DataFrame, churn_schema: DatasetSchema) -> None:
    big = pd.concat([churn_frame] * 15, ignore_index=True)
    big.loc[big.index[::7], "contract"] = "Weekly"
    big.loc[big.index[::11], "tenure"] = 999
    started = time.perf_counter()
    problems = find_problems(big, churn_schema)
    elapsed = time.perf_counter() - started
    assert len(big) > 100_000
    assert len(problems) == 2
    # Vectorised checks take ~0.1 s here; a per-row Python loop would take several seconds.
    assert elapsed < 3.0


def test_rows_are_named_by_position_from_one_whatever_the_index(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    """Data row N is the N-th row of data (a CSV's line N + 1), not the frame's index label (trial 18: line 10
    was named "rows 8")."""
    frame = churn_frame.head(600).set_axis(range(5000, 5600)).iloc[::-1]
    frame.loc[frame.index[[9, 41]], "tenure"] = [-2, -7]
    frame.loc[frame.index[2], "churn"] = "Perhaps"
    assert find_problems(frame, churn_schema) == [
        "column 'tenure': 2 value(s) below min 0 (e.g. -2, -7; data rows 10, 42)",
        "target 'churn': 1 value(s): 'Perhaps' (1) outside the classes 'No', 'Yes' (data row 3)",
    ]
