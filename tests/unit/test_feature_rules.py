"""core.feature_rules: each rule's rows, as validation and batch scoring both read them."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from driftloop.core.feature_rules import Broken, Rule, broken_rules
from driftloop.core.features import as_numbers, to_model_frame
from driftloop.core.schema import DatasetSchema, Feature, FeatureKind
from driftloop.core.task import FLOAT32_MAX


def _rows(values: list[object], feature: Feature) -> dict[Rule, list[int]]:
    return {b.rule: np.flatnonzero(b.rows).tolist() for b in broken_rules(pd.Series(values, dtype=object), feature)}


def test_a_bounded_number_names_each_rule_and_its_rows() -> None:
    feature = Feature(name="tenure", kind=FeatureKind.NUMERIC, min=0, max=10)
    assert _rows([5, None, "abc", -1, 11, "3", 10], feature) == {
        Rule.MISSING: [1],
        Rule.NOT_A_NUMBER: [2],
        Rule.NOT_FINITE: [],
        Rule.BELOW_MIN: [3],
        Rule.ABOVE_MAX: [4],
    }


def test_a_nullable_binary_feature_allows_missing_values_but_only_0_and_1() -> None:
    feature = Feature(name="senior", kind=FeatureKind.BINARY, nullable=True)
    assert _rows([0, 1, None, 2, 0.5, "1"], feature) == {
        Rule.NOT_A_NUMBER: [],
        Rule.NOT_FINITE: [],
        Rule.NOT_BINARY: [3, 4],
    }


def test_categories_are_compared_as_the_text_the_model_is_fed() -> None:
    feature = Feature(name="plan", kind=FeatureKind.CATEGORICAL, categories=["basic", "12"])
    assert _rows(["basic", 12, "12", 12.0, "Basic", None], feature) == {
        Rule.MISSING: [5],
        Rule.UNLISTED: [3, 4],  # 12.0 is fed as "12.0"; case counts
    }


def test_missing_values_of_a_listed_feature_are_missing_not_unlisted_whatever_their_spelling() -> None:
    listed = Feature(name="plan", kind=FeatureKind.CATEGORICAL, categories=["basic", "pro"])
    assert _rows(["basic", "pro", "basic"], listed) == {Rule.MISSING: [], Rule.UNLISTED: []}
    assert _rows(["pro", None, math.nan, pd.NA, "gold", "basic"], listed) == {
        Rule.MISSING: [1, 2, 3],
        Rule.UNLISTED: [4],
    }
    nullable = Feature(name="plan", kind=FeatureKind.CATEGORICAL, categories=["basic", "pro"], nullable=True)
    assert _rows([None, "pro", math.nan, "gold"], nullable) == {Rule.UNLISTED: [3]}


def test_a_reason_names_the_feature_the_rule_and_its_bound() -> None:
    feature = Feature(name="tenure", kind=FeatureKind.NUMERIC, min=0.5)
    reasons = {b.rule: b.reason(feature) for b in broken_rules(pd.Series([1.0]), feature)}
    assert reasons == {
        Rule.MISSING: "tenure: missing",
        Rule.NOT_A_NUMBER: "tenure: not a number",
        Rule.NOT_FINITE: "tenure: not a finite number within float32 range",
        Rule.BELOW_MIN: "tenure: below min 0.5",
    }


def test_infinite_numbers_and_numbers_beyond_float32_break_one_rule_and_no_bound() -> None:
    """The model is fed float32, where 1e300 is infinite: as the server refuses such values, so do the rules."""
    feature = Feature(name="area", kind=FeatureKind.NUMERIC, min=0, max=1e6)
    values = [1.0, float("inf"), float("-inf"), 1e300, -1e300, "inf", FLOAT32_MAX, 2e6, float("nan")]
    assert _rows(values, Feature(name="area", kind=FeatureKind.NUMERIC, nullable=True)) == {
        Rule.NOT_A_NUMBER: [],
        Rule.NOT_FINITE: [1, 2, 3, 4, 5],
    }
    assert _rows(values, feature) == {
        Rule.MISSING: [8],
        Rule.NOT_A_NUMBER: [],
        Rule.NOT_FINITE: [1, 2, 3, 4, 5],
        Rule.BELOW_MIN: [],
        Rule.ABOVE_MAX: [6, 7],  # float32's largest number is a number, above this feature's max
    }


def test_numbers_parse_from_text_and_what_does_not_parse_is_nan() -> None:
    numbers = as_numbers(pd.Series(["1.5", "x", None, 3], dtype=object))
    assert numbers.dtype == np.float64
    assert numbers.iloc[0] == 1.5
    assert numbers.iloc[3] == 3.0
    assert numbers.iloc[1:3].isna().all()


def test_a_number_beyond_float64_in_text_is_infinite_as_in_a_typed_column_not_text() -> None:
    """Trial 14: 1e400 in a scored CSV was "not a number"; inf in Parquet "not a finite number"."""
    numbers = as_numbers(pd.Series(["1e400", "-1e999", "1_0", "abc", "1e38"], dtype=object))
    assert numbers.iloc[0] == math.inf
    assert numbers.iloc[1] == -math.inf
    assert numbers.iloc[2:4].isna().all()  # Python's float() reads "1_0" as 10; only overflow is taken from it
    assert numbers.iloc[4] == 1e38
    feature = Feature(name="income", kind=FeatureKind.NUMERIC)
    assert _rows(["1e400", "abc", "5"], feature) == {Rule.MISSING: [], Rule.NOT_A_NUMBER: [1], Rule.NOT_FINITE: [0]}


def test_true_and_false_read_as_one_and_zero_as_pandas_csv_reader_reads_them() -> None:
    numbers = as_numbers(pd.Series(["True", "false", "TRUE", "FALSE", "yes", "1", None, True, False], dtype=object))
    assert numbers.iloc[:4].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert math.isnan(numbers.iloc[4])  # only pandas' own words: "yes" is not a number
    assert numbers.iloc[5] == 1.0
    assert math.isnan(numbers.iloc[6])
    assert numbers.iloc[7:].tolist() == [1.0, 0.0]
    assert as_numbers(pd.Series([True, False])).tolist() == [1.0, 0.0]


def test_a_csv_read_as_text_gives_the_model_what_training_read_from_it() -> None:
    """Batch scoring reads a CSV as text; training reads it with pandas, which turns True/False into booleans."""
    schema = DatasetSchema.model_validate(
        {
            "name": "members",
            "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
            "features": [
                {"name": "member", "kind": "binary"},
                {"name": "visits", "kind": "numeric", "nullable": True},
                {"name": "plan", "kind": "categorical", "categories": ["basic", "plus"]},
            ],
        }
    )
    text = "member,visits,plan,y\nTrue,3,basic,yes\nFalse,,plus,no\nTrue,1.5,plus,no\n"
    as_training_reads = pd.read_csv(io.StringIO(text))
    as_scoring_reads = pd.read_csv(io.StringIO(text), dtype=object)
    assert as_training_reads["member"].dtype == bool

    trained_on = to_model_frame(as_training_reads, schema)
    scored = to_model_frame(as_scoring_reads, schema)
    pd.testing.assert_frame_equal(trained_on, scored)
    assert trained_on["member"].tolist() == [1.0, 0.0, 1.0]
    problems = [b for f in schema.features for b in broken_rules(as_scoring_reads[f.name], f) if b.rows.any()]
    assert problems == []


def test_a_binary_features_text_is_said_as_what_the_feature_takes() -> None:
    feature = Feature(name="member", kind=FeatureKind.BINARY)
    reasons = {b.rule: b.reason(feature) for b in broken_rules(pd.Series(["yes", 1, 2], dtype=object), feature)}
    assert reasons[Rule.NOT_A_NUMBER] == "member: not 0 or 1 (or true/false)"  # "yes"
    assert reasons[Rule.NOT_BINARY] == "member: not 0 or 1 (or true/false)"  # 2
    numeric = Feature(name="age", kind=FeatureKind.NUMERIC)
    assert Broken(Rule.NOT_A_NUMBER, np.ones(1, dtype=bool)).reason(numeric) == "age: not a number"


def test_booleans_break_a_numeric_features_number_rule_and_are_a_binary_features_1_and_0() -> None:
    numeric = Feature(name="price", kind=FeatureKind.NUMERIC, nullable=True)
    binary = Feature(name="garden", kind=FeatureKind.BINARY, nullable=True)
    columns = [
        pd.Series([True, False, True]),  # a bool dtype
        pd.Series([True, None, False], dtype=object),  # Parquet booleans with a null
        pd.Series(["True", "false", None], dtype=object),  # a CSV read as text
        pd.Series([np.True_, 2.5, None], dtype=object),
    ]
    for values in columns:
        flags = values.map(lambda v: isinstance(v, bool | np.bool_) or v in ("True", "false")).to_numpy(dtype=bool)
        rules = {b.rule: b.rows for b in broken_rules(values, numeric)}
        assert rules[Rule.NOT_A_NUMBER].tolist() == flags.tolist(), values
        assert not any(b.rows.any() for b in broken_rules(values, binary) if b.rule is not Rule.NOT_BINARY)
    assert as_numbers(pd.Series([True, False]), booleans=False).isna().all()
    assert as_numbers(pd.Series([1, 2])).tolist() == as_numbers(pd.Series([1, 2]), booleans=False).tolist()
