"""FeatureParser on the bundled churn schema: every accepted form, every refusal, and the real ONNX model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from driftloop import settings
from driftloop.core.features import encode_target, onnx_feed, to_model_frame
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.errors import InputError
from driftloop.io.onnx_export import export_onnx, grouped_onnx
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.serving.inputs import FeatureBatch, FeatureParser
from tests.support.features import assert_columns_equal, records_of

CONTRACTS = "'Month-to-month', 'One year', 'Two year'"


def _load_schema() -> DatasetSchema:
    return DatasetSchema.model_validate(yaml.safe_load(settings.BUNDLED_SCHEMA.read_text(encoding="utf-8")))


def _with_changes(schema: DatasetSchema, **features: dict[str, Any]) -> DatasetSchema:
    """The schema with some features' fields replaced (e.g. ``contract={"nullable": True}``)."""
    data = schema.model_dump(mode="json")
    for feature in data["features"]:
        feature.update(features.get(feature["name"], {}))
    return DatasetSchema.model_validate(data)


@pytest.fixture(scope="module")
def schema() -> DatasetSchema:
    return _load_schema()


@pytest.fixture(scope="module")
def parser(schema: DatasetSchema) -> FeatureParser:
    return FeatureParser(schema, max_rows=1000)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """A sample of the bundled data that includes rows with a blank total_charges."""
    frame = pd.read_csv(settings.BUNDLED_DATA)
    blanks = frame[frame["total_charges"].isna()].head(3)
    return pd.concat([frame.head(47), blanks]).reset_index(drop=True)


@pytest.fixture(scope="module")
def records(raw: pd.DataFrame, schema: DatasetSchema) -> list[dict[str, Any]]:
    return records_of(raw, schema)


@pytest.fixture
def record(records: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(records[0])


def _error(call: Any, *args: Any) -> InputError:
    with pytest.raises(InputError) as caught:
        call(*args)
    return caught.value


# ---------------------------------------------------------------------------------------------- accepted forms


def test_one_row_feed_is_typed_per_feature_in_schema_order(parser: FeatureParser, record: dict[str, Any]) -> None:
    batch = parser.from_record(record)

    assert batch.rows == 1
    assert list(batch.columns) == parser.schema.feature_names
    for feature in parser.schema.features:
        column = batch.columns[feature.name]
        assert column.shape == (1, 1)
        assert column.flags.c_contiguous
        assert column.dtype == (object if feature.is_categorical else np.float32)
        assert column[0, 0] == (record[feature.name] if feature.is_categorical else np.float32(record[feature.name]))


def test_positional_and_named_forms_give_identical_columns(
    parser: FeatureParser, records: list[dict[str, Any]], schema: DatasetSchema
) -> None:
    rows = [[r[name] for name in schema.feature_names] for r in records]
    reversed_columns = {name: [r[name] for r in records] for name in reversed(schema.feature_names)}
    shuffled_records = [dict(reversed(list(r.items()))) for r in records]

    by_records = parser.from_records(records)

    assert by_records.rows == len(records)
    assert_columns_equal(parser.from_rows(rows).columns, by_records.columns)
    assert_columns_equal(parser.from_columns(reversed_columns).columns, by_records.columns)
    assert_columns_equal(parser.from_records(shuffled_records).columns, by_records.columns)
    assert_columns_equal(parser.from_row(rows[0]).columns, parser.from_record(records[0]).columns)
    assert_columns_equal(parser.from_rows(rows[:1]).columns, parser.from_record(records[0]).columns)


def test_batch_columns_equal_the_training_feed(
    parser: FeatureParser, raw: pd.DataFrame, records: list[dict[str, Any]], schema: DatasetSchema
) -> None:
    expected = onnx_feed(to_model_frame(raw, schema), schema)

    assert_columns_equal(parser.from_records(records).columns, expected)


def test_missing_values_map_exactly_like_to_model_frame(schema: DatasetSchema, record: dict[str, Any]) -> None:
    nullable = _with_changes(schema, contract={"nullable": True}, tenure={"nullable": True})
    parser = FeatureParser(nullable, max_rows=10)
    record.update(total_charges=None, contract=None, tenure=float("nan"))
    expected = onnx_feed(to_model_frame(pd.DataFrame([record]), nullable), nullable)

    one = parser.from_record(record)
    many = parser.from_records([record, record])

    assert_columns_equal(one.columns, expected)
    assert one.columns["contract"][0, 0] == ""
    assert np.isnan(one.columns["total_charges"][0, 0])
    assert_columns_equal({k: v[:1] for k, v in many.columns.items()}, expected)
    assert parser.from_record({**record, "contract": ""}).columns["contract"][0, 0] == ""


def test_values_accepted_by_kind(parser: FeatureParser, record: dict[str, Any]) -> None:
    accepted = {**record, "partner": True, "dependents": 0.0, "female": False, "tenure": 120, "monthly_charges": 0}

    columns = parser.from_record(accepted).columns
    batch = parser.from_records([accepted, accepted]).columns

    assert [columns[n][0, 0] for n in ("partner", "dependents", "female", "tenure", "monthly_charges")] == [
        1.0,
        0.0,
        0.0,
        120.0,
        0.0,
    ]
    assert batch["partner"].tolist() == [[1.0], [1.0]]


def test_records_are_json_friendly_and_keep_the_sent_values(
    parser: FeatureParser, records: list[dict[str, Any]]
) -> None:
    logged = parser.from_records(records).records()

    assert len(logged) == len(records)
    for sent, got in zip(records, logged, strict=True):
        assert list(got) == list(sent)
        for name, value in sent.items():
            if value is None:
                assert got[name] is None
            else:
                assert got[name] == value  # 29.85 comes back as 29.85, ints as equal floats
                assert type(got[name]) is (str if isinstance(value, str) else float)
    assert any(r["total_charges"] is None for r in logged)


def test_records_turn_missing_categories_into_none(schema: DatasetSchema, record: dict[str, Any]) -> None:
    parser = FeatureParser(_with_changes(schema, contract={"nullable": True}), max_rows=10)

    logged = parser.from_record({**record, "contract": None}).records()

    assert logged[0]["contract"] is None


def test_unknown_categories_pass_through_when_ignored(schema: DatasetSchema, record: dict[str, Any]) -> None:
    parser = FeatureParser(schema, max_rows=10, unknown_categories="ignore")
    record["contract"] = "Lifetime"

    assert parser.from_record(record).columns["contract"][0, 0] == "Lifetime"
    assert parser.from_records([record, record]).columns["contract"].tolist() == [["Lifetime"], ["Lifetime"]]
    assert parser.unknown_categories == "ignore"


def test_parser_refuses_bad_settings(schema: DatasetSchema) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        FeatureParser(schema, max_rows=0)
    with pytest.raises(ValueError, match="unknown_categories"):
        FeatureParser(schema, max_rows=1, unknown_categories="warn")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- refusals


def test_unknown_category_message_names_row_feature_value_and_choices(
    parser: FeatureParser, records: list[dict[str, Any]]
) -> None:
    batch = [dict(r) for r in records[:5]]
    batch[3]["contract"] = "Lifetime"

    error = _error(parser.from_records, batch)
    single = _error(parser.from_record, batch[3])

    assert (error.status, error.reason) == (422, "unknown_category")
    assert error.message == f"row 3, feature 'contract': unknown category 'Lifetime'; expected one of {CONTRACTS}"
    assert single.message == f"feature 'contract': unknown category 'Lifetime'; expected one of {CONTRACTS}"


BAD_VALUES = [
    # (feature, value, reason, words in the message)
    ("tenure", "12", "wrong_type", ["expected a number in [0, 120]", "a string '12'"]),
    ("tenure", True, "wrong_type", ["expected a number", "a boolean True"]),
    ("tenure", [1], "wrong_type", ["a list [1]"]),
    ("partner", "yes", "wrong_type", ["expected 0 or 1", "'yes'"]),
    ("contract", 3, "wrong_type", ["expected a string", "an integer 3"]),
    ("tenure", None, "null_not_allowed", ["feature 'tenure'", "null is not allowed"]),
    ("contract", None, "null_not_allowed", ["feature 'contract'", "null is not allowed"]),
    ("contract", "", "null_not_allowed", ["missing-value marker", "not nullable"]),
    ("tenure", float("nan"), "non_finite", ["NaN is not allowed"]),
    ("tenure", float("inf"), "non_finite", ["inf", "expected a number in [0, 120]"]),
    ("total_charges", float("-inf"), "non_finite", ["-inf"]),
    ("partner", float("inf"), "non_finite", ["inf"]),
    ("tenure", 121, "out_of_range", ["121 is out of range", "expected a number in [0, 120]"]),
    ("tenure", -0.5, "out_of_range", ["-0.5 is out of range"]),
    ("monthly_charges", 10**400, "out_of_range", ["out of range", "[0, 1000]"]),
    ("partner", 2, "out_of_range", ["2 is not 0 or 1"]),
    ("partner", 0.5, "out_of_range", ["0.5 is not 0 or 1"]),
    ("contract", "Lifetime", "unknown_category", ["unknown category 'Lifetime'", CONTRACTS]),
    ("payment_method", "x" * 200, "unknown_category", ["'xxxx", "...", "'Electronic check'"]),
]


@pytest.mark.parametrize(("name", "value", "reason", "words"), BAD_VALUES)
def test_a_bad_value_is_reported_the_same_way_in_every_form(
    parser: FeatureParser,
    records: list[dict[str, Any]],
    name: str,
    value: Any,
    reason: str,
    words: list[str],
) -> None:
    bad = {**records[0], name: value}
    batch = [dict(r) for r in records[:6]]
    batch[4] = bad
    names = parser.schema.feature_names

    errors = {
        "record": _error(parser.from_record, bad),
        "row": _error(parser.from_row, [bad[n] for n in names]),
        "records": _error(parser.from_records, batch),
        "rows": _error(parser.from_rows, [[r[n] for n in names] for r in batch]),
        "columns": _error(parser.from_columns, {n: [r[n] for r in batch] for n in names}),
    }

    single = errors["record"]
    assert (single.status, single.reason) == (422, reason)
    assert single.message.startswith(f"feature {name!r}: ")
    for word in words:
        assert word in single.message
    assert len(single.message) < 300
    assert errors["row"].message == single.message
    for form in ("records", "rows", "columns"):
        assert (errors[form].status, errors[form].reason) == (422, reason), form
        assert errors[form].message == f"row 4, {single.message}", form


def test_the_first_bad_row_is_reported(parser: FeatureParser, records: list[dict[str, Any]]) -> None:
    batch = [dict(r) for r in records[:8]]
    batch[6]["female"] = 7  # an earlier column, a later row
    batch[2]["total_charges"] = -1.0

    error = _error(parser.from_records, batch)

    assert error.reason == "out_of_range"
    assert error.message.startswith("row 2, feature 'total_charges': -1.0 is out of range")


def test_float32_range_is_enforced_where_the_schema_has_no_bounds(
    schema: DatasetSchema, record: dict[str, Any]
) -> None:
    parser = FeatureParser(_with_changes(schema, monthly_charges={"min": None, "max": None}), max_rows=10)

    error = _error(parser.from_record, {**record, "monthly_charges": 1e39})
    batch_error = _error(parser.from_records, [record, {**record, "monthly_charges": -1e39}])

    assert (error.reason, batch_error.reason) == ("out_of_range", "out_of_range")
    assert "float32" in error.message
    assert batch_error.message.startswith("row 1, feature 'monthly_charges': -1e+39")
    assert parser.from_record({**record, "monthly_charges": -5.0e6}).columns["monthly_charges"][0, 0] == -5.0e6


def test_nan_is_a_missing_value_where_nullable(parser: FeatureParser, record: dict[str, Any]) -> None:
    record["total_charges"] = float("nan")

    assert np.isnan(parser.from_record(record).columns["total_charges"][0, 0])
    assert np.isnan(parser.from_records([record, record]).columns["total_charges"]).all()


def test_wrong_containers_are_refused(parser: FeatureParser, record: dict[str, Any]) -> None:
    row = list(record.values())
    cases = [
        (parser.from_row, record, "expected a list of 19 feature values in schema order", "got an object"),
        (parser.from_record, row, "expected an object mapping feature names to values", "got a list"),
        (parser.from_rows, {"rows": [row]}, "expected a list of rows", "got an object"),
        (parser.from_rows, [row, record], "row 1: expected a list of 19 feature values", "got an object"),
        (parser.from_records, "records", "expected a list of records", "got a string"),
        (parser.from_records, [record, row], "row 1: expected an object", "got a list"),
        (parser.from_columns, [row], "expected an object mapping each feature name to a list", "got a list"),
        (parser.from_columns, {**{k: [v] for k, v in record.items()}, "tenure": 5}, "feature 'tenure'", "an integer"),
    ]
    for call, value, *words in cases:
        error = _error(call, value)
        assert (error.status, error.reason) == (422, "wrong_shape")
        for word in words:
            assert word in error.message


def test_columns_of_different_lengths_are_refused(parser: FeatureParser, record: dict[str, Any]) -> None:
    columns = {k: [v, v] for k, v in record.items()}
    columns["tenure"] = [1]

    error = _error(parser.from_columns, columns)

    assert (error.status, error.reason) == (422, "wrong_shape")
    assert "'female' has 2 values, 'tenure' has 1" in error.message


def test_a_row_of_the_wrong_length_names_the_expected_order(parser: FeatureParser, record: dict[str, Any]) -> None:
    row = list(record.values())

    error = _error(parser.from_row, row[:-1])
    batch_error = _error(parser.from_rows, [row, row, row + [1]])

    assert (error.status, error.reason) == (422, "feature_count")
    assert "expected 19 values in schema order (female, senior_citizen, partner," in error.message
    assert error.message.endswith("total_charges), got 18")
    assert batch_error.reason == "feature_count"
    assert batch_error.message.startswith("row 2: expected 19 values")
    assert batch_error.message.endswith("got 20")


def test_all_missing_and_unknown_names_are_listed_at_once(parser: FeatureParser, record: dict[str, Any]) -> None:
    missing = {k: v for k, v in record.items() if k not in ("tenure", "contract")}
    extra = {**record, "customer_id": "7590-VHVEG", "Tenure": 3}

    missing_error = _error(parser.from_record, missing)
    extra_error = _error(parser.from_record, extra)
    both_error = _error(parser.from_records, [record, {**missing, "foo": 1}])
    columns_error = _error(parser.from_columns, {k: [v] for k, v in extra.items()})

    assert (missing_error.status, missing_error.reason) == (422, "missing_feature")
    # Neither may be null, so the error does not suggest sending null; a nullable one missing does.
    assert "missing feature(s) 'tenure', 'contract'; " in missing_error.message
    nullable_error = _error(parser.from_record, {k: v for k, v in record.items() if k != "total_charges"})
    assert "missing feature(s) 'total_charges' (send null for a missing value)" in nullable_error.message
    assert (extra_error.status, extra_error.reason) == (422, "unknown_feature")
    assert "unknown feature(s) 'customer_id', 'Tenure'" in extra_error.message
    assert both_error.reason == "missing_feature"
    assert both_error.message.startswith("row 1: missing feature(s) 'tenure', 'contract'")
    assert "unknown feature(s) 'foo'" in both_error.message
    assert columns_error.reason == "unknown_feature"


def test_repeated_names_are_refused(parser: FeatureParser) -> None:
    names = parser.feature_names

    error = _error(parser.require_names, [*names, "tenure"])

    assert (error.status, error.reason) == (422, "wrong_shape")
    assert "'tenure'" in error.message
    parser.require_names(reversed(names))  # any order is fine


def test_empty_and_oversized_batches(schema: DatasetSchema, record: dict[str, Any]) -> None:
    parser = FeatureParser(schema, max_rows=5)
    row = list(record.values())

    for call, empty in (
        (parser.from_rows, []),
        (parser.from_records, []),
        (parser.from_columns, {k: [] for k in record}),
    ):
        error = _error(call, empty)
        assert (error.status, error.reason) == (422, "empty_batch")
        assert "at least one row" in error.message
    too_many = _error(parser.from_rows, [row] * 6)
    assert (too_many.status, too_many.reason) == (413, "batch_too_large")
    assert too_many.message == "the batch has 6 rows; this server takes at most 5 rows per request"
    assert _error(parser.from_records, [record] * 6).reason == "batch_too_large"
    assert _error(parser.from_columns, {k: [v] * 6 for k, v in record.items()}).reason == "batch_too_large"
    assert parser.from_rows([row] * 5).rows == 5


def test_input_error_carries_status_reason_and_message() -> None:
    error = InputError(422, "wrong_type", "feature 'x': expected a number")

    assert str(error) == "feature 'x': expected a number"
    assert "wrong_type" in repr(error)


# ---------------------------------------------------------------------------------------------- the real model


class ChurnModel:
    """A logistic regression fitted on a sample of the bundled data, exported to ONNX."""

    def __init__(self) -> None:
        self.schema = _load_schema()
        frame = pd.read_csv(settings.BUNDLED_DATA)
        train = frame.sample(800, random_state=0)
        pipeline = build_pipeline(self.schema).fit(
            to_model_frame(train, self.schema), encode_target(train[self.schema.target.name], self.schema)
        )
        model_bytes = export_onnx(pipeline, self.schema)
        self.classifier = OnnxModel.from_bytes(model_bytes, self.schema)
        self.grouped = OnnxModel.from_bytes(grouped_onnx(model_bytes), self.schema)
        blanks = frame[frame["total_charges"].isna()]
        self.holdout = pd.concat([frame.drop(train.index).head(200), blanks]).reset_index(drop=True)


@pytest.fixture(scope="module")
def churn_model() -> ChurnModel:
    return ChurnModel()


def _run(model: ChurnModel, batch: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
    """The batch through the per-feature graph (its columns) and the grouped one (its two matrices): the same."""
    labels, proba = model.classifier.session.run(["label", "probabilities"], batch.columns)
    grouped_labels, grouped_proba = model.grouped.run(model.grouped.grouped_feed(batch.numeric, batch.categorical))
    np.testing.assert_array_equal(grouped_labels, labels)
    np.testing.assert_array_equal(grouped_proba, proba)
    return labels, proba


def test_the_feed_scores_like_the_training_path(churn_model: ChurnModel) -> None:
    schema = churn_model.schema
    parser = FeatureParser(schema, max_rows=1000)
    frame = churn_model.holdout
    records = records_of(frame, schema)
    want_labels, want_proba = churn_model.classifier.predict(to_model_frame(frame, schema))

    labels, proba = _run(churn_model, parser.from_records(records))
    row_labels, row_proba = _run(churn_model, parser.from_rows([list(r.values()) for r in records]))

    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(proba, want_proba)
    np.testing.assert_array_equal(row_proba, want_proba)
    np.testing.assert_array_equal(row_labels, want_labels)
    for index in (0, 1, len(records) - 1):  # the last one has a blank total_charges
        # One row against one row: onnxruntime's batched kernels may differ from one row by an ulp.
        one_labels, one_proba = churn_model.classifier.predict(to_model_frame(frame.iloc[[index]], schema))
        labels, proba = _run(churn_model, parser.from_record(records[index]))
        np.testing.assert_array_equal(labels, one_labels)
        np.testing.assert_array_equal(proba, one_proba)
        np.testing.assert_allclose(proba[0], want_proba[index], atol=1e-6)
