"""Batch scoring's row checks and answer table: which rows a model can score, and why not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.core.scoring import answers_frame, key_columns, output_columns, require_input_columns, row_problems
from driftloop.core.task import Task, TaskKind
from driftloop.errors import DatasetError

SCHEMA = DatasetSchema.model_validate(
    {
        "name": "s",
        "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
        "features": [
            {"name": "age", "kind": "numeric", "min": 0, "max": 120},
            {"name": "income", "kind": "numeric", "nullable": True},
            {"name": "member", "kind": "binary"},
            {"name": "plan", "kind": "categorical", "categories": ["a", "b"]},
            {"name": "city", "kind": "categorical", "categories": ["x"], "unseen": "other", "nullable": True},
        ],
    }
)


def test_each_bad_row_is_named_with_its_first_problem_and_good_rows_pass() -> None:
    frame = pd.DataFrame(
        {
            "age": [30, None, "old", -1, 130, 40, 41, 42],
            "income": [1.0, 2.0, 3.0, 4.0, 5.0, None, 7.0, 8.0],
            "member": [1, 0, 1, 0, 1, 1, 2, 0],
            "plan": ["a", "b", "a", "b", "a", "b", "a", "c"],
            "city": ["x", "y", None, "x", "x", "x", "x", "x"],
        }
    )
    assert row_problems(frame, SCHEMA).tolist() == [
        "",
        "age: missing",
        "age: not a number",
        "age: below min 0",
        "age: above max 120",
        "",  # income is nullable; city's unseen values go to its other bucket
        "member: not 0 or 1 (or true/false)",
        "plan: not one of the declared categories",
    ]


def test_infinite_numbers_and_numbers_beyond_float32_are_bad_rows_as_the_server_refuses_them() -> None:
    frame = pd.DataFrame(
        {
            "age": [30, float("inf"), 40, 50, 60],
            "income": [1.0, 2.0, float("-inf"), 1e300, 3.4e38],
            "member": [1, 0, 1, 0, 1],
            "plan": ["a", "b", "a", "b", "a"],
            "city": ["x", "y", "x", "x", "x"],
        }
    )
    assert row_problems(frame, SCHEMA).tolist() == [
        "",
        "age: not a finite number within float32 range",
        "income: not a finite number within float32 range",
        "income: not a finite number within float32 range",
        "",  # 3.4e38 is still a float32
    ]


def test_a_missing_feature_column_is_every_row_s_problem() -> None:
    frame = pd.DataFrame({"age": [1, 2], "income": [1, 2], "member": [0, 1], "plan": ["a", "b"]})
    assert row_problems(frame, SCHEMA).tolist() == ["city: column missing"] * 2


def test_answers_carry_the_keys_class_names_probabilities_and_version() -> None:
    keys = pd.DataFrame({"id": [7, 8, 9]}, index=[10, 11, 12])
    task = Task(TaskKind.BINARY, ("no", "yes"))
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    answers = answers_frame(keys, task, np.array([0, 1, 0]), probabilities, "4")
    assert answers.columns.tolist() == ["id", "prediction", "probability_no", "probability_yes", "model_version"]
    assert answers["prediction"].tolist() == ["no", "yes", "no"]
    assert answers["probability_yes"].tolist() == pytest.approx([0.1, 0.8, 0.5])
    regression = answers_frame(keys, Task(TaskKind.REGRESSION), np.array([[1.5], [2.5], [3.5]]), None, "2")
    assert regression["prediction"].tolist() == [1.5, 2.5, 3.5]
    with pytest.raises(KeyError, match=r"key column\(s\) \['nope'\]"):
        key_columns(keys, ["nope"])


def test_input_columns_are_checked_before_any_row_and_keys_kept_once() -> None:
    columns = ["id", "age", "income", "member", "plan", "city", "prediction"]
    assert require_input_columns(columns, ["id", "id", "plan"], SCHEMA, "rows.csv") == ["id", "plan"]
    with pytest.raises(DatasetError, match="key column 'ref' is not a column of rows.csv"):
        require_input_columns(columns, ["ref"], SCHEMA, "rows.csv")
    # Its values would be overwritten by the model's answer without a word.
    with pytest.raises(DatasetError, match="key column 'prediction' has the name of an output column"):
        require_input_columns(columns, ["prediction"], SCHEMA, "rows.csv")
    with pytest.raises(DatasetError, match=r"rows.csv lacks the model's feature\(s\) 'plan'$"):
        require_input_columns(["id", "age", "income", "member", "city"], ["id"], SCHEMA, "rows.csv")
    assert output_columns(SCHEMA.task)[0] == "prediction"
    assert output_columns(SCHEMA.task)[-1] == "model_version"
