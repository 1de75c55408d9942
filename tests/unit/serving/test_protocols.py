"""Every protocol's request forms and responses, checked against MLflow's and tritonclient's own code."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.pyfunc.scoring_server import infer_and_parse_data, parse_csv_input, predictions_to_json
from tritonclient.http._utils import _get_inference_request

from driftloop import settings
from driftloop.core.features import onnx_feed, to_model_frame
from driftloop.core.schema import DatasetSchema
from driftloop.errors import InputError
from driftloop.serving import protocols
from driftloop.serving.inputs import FeatureBatch, FeatureParser
from tests.support.features import assert_columns_equal, records_of

LABELS = np.array([1, 0, 1], dtype=np.int64)
PROBA = np.array([[0.25, 0.75], [0.875, 0.125], [0.4, 0.6]], dtype=np.float32)


@pytest.fixture(scope="module")
def schema() -> DatasetSchema:
    return DatasetSchema.model_validate(yaml.safe_load(settings.BUNDLED_SCHEMA.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def parser(schema: DatasetSchema) -> FeatureParser:
    return FeatureParser(schema, max_rows=50)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """Five rows of the bundled data, the last one with a blank total_charges."""
    frame = pd.read_csv(settings.BUNDLED_DATA)
    return pd.concat([frame.head(4), frame[frame["total_charges"].isna()].head(1)]).reset_index(drop=True)


@pytest.fixture(scope="module")
def records(raw: pd.DataFrame, schema: DatasetSchema) -> list[dict[str, Any]]:
    return records_of(raw, schema)


@pytest.fixture(scope="module")
def rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    return [list(r.values()) for r in records]


@pytest.fixture(scope="module")
def expected(raw: pd.DataFrame, schema: DatasetSchema) -> dict[str, np.ndarray]:
    return onnx_feed(to_model_frame(raw, schema), schema)


def _error(call: Any, *args: Any) -> InputError:
    with pytest.raises(InputError) as caught:
        call(*args)
    return caught.value


def _json_round_trip(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


# ---------------------------------------------------------------------------------------------- /predict


def test_predict_positional_and_named_parse_to_the_same_row(
    parser: FeatureParser, records: list[dict[str, Any]], rows: list[list[Any]], expected: dict[str, np.ndarray]
) -> None:
    positional = protocols.parse_predict({"features": rows[0]}, parser)
    named = protocols.parse_predict({"features": records[0]}, parser)

    assert positional.rows == named.rows == 1
    assert_columns_equal(positional.columns, named.columns)
    assert_columns_equal(named.columns, {k: v[:1] for k, v in expected.items()})


def test_predict_envelope_errors(parser: FeatureParser, rows: list[list[Any]]) -> None:
    not_object = _error(protocols.parse_predict, rows[0], parser)
    no_features = _error(protocols.parse_predict, {"feature": rows[0], "id": 3}, parser)
    not_a_row = _error(protocols.parse_predict, {"features": "1,0,1"}, parser)
    short = _error(protocols.parse_predict, {"features": rows[0][:5]}, parser)

    assert (not_object.status, not_object.reason) == (400, "wrong_shape")
    assert '{"features": [...]}' in not_object.message
    assert "got a list" in not_object.message
    assert (no_features.status, no_features.reason) == (400, "wrong_shape")
    assert "no 'features' key (keys: 'feature', 'id')" in no_features.message
    assert (not_a_row.status, not_a_row.reason) == (422, "wrong_shape")
    assert "got a string" in not_a_row.message
    assert (short.status, short.reason) == (422, "feature_count")
    beside = _error(protocols.parse_predict, {"features": rows[0], "label": 1, "feature": {}}, parser)
    assert (beside.status, beside.reason) == (400, "wrong_shape")
    assert beside.message == "unknown key(s) 'label', 'feature': the body holds 'features' alone"


def test_predict_response_is_the_tutorials_shape(schema: DatasetSchema) -> None:
    response = _json_round_trip(protocols.predict_response(LABELS[:1], PROBA[:1], schema, "7"))

    assert response == {
        "prediction": 1,
        "label": "Yes",
        "probability": [0.25, 0.75],
        "probabilities": {"No": 0.25, "Yes": 0.75},
        "model_version": "7",
    }
    negative = protocols.predict_response(LABELS[1:2], PROBA[1:2], schema, "7")
    assert (negative["prediction"], negative["label"]) == (0, "No")
    assert type(negative["prediction"]) is int


def test_class_names_follow_the_model_outputs_not_the_listed_order(schema: DatasetSchema) -> None:
    data = schema.model_dump(mode="json")
    data["target"]["classes"] = ["Yes", "No"]  # positive listed first; the model still gives 1 = positive
    flipped = DatasetSchema.model_validate(data)

    response = protocols.predict_response(LABELS[:1], PROBA[:1], flipped, "1")

    assert response["label"] == "Yes"
    assert response["probabilities"] == {"No": 0.25, "Yes": 0.75}


# ---------------------------------------------------------------------------------------------- /predict/batch


def test_batch_forms_parse_to_the_same_columns(
    parser: FeatureParser, records: list[dict[str, Any]], rows: list[list[Any]], expected: dict[str, np.ndarray]
) -> None:
    bodies = [{"instances": rows}, {"instances": records}, records, rows]

    for body in bodies:
        batch = protocols.parse_predict_batch(_json_round_trip(body), parser)
        assert batch.rows == len(records)
        assert_columns_equal(batch.columns, expected)


def test_batch_envelope_errors(parser: FeatureParser, records: list[dict[str, Any]]) -> None:
    no_instances = _error(protocols.parse_predict_batch, {"rows": records}, parser)
    not_a_list = _error(protocols.parse_predict_batch, {"instances": records[0]}, parser)
    scalar = _error(protocols.parse_predict_batch, 3, parser)
    empty = _error(protocols.parse_predict_batch, {"instances": []}, parser)
    mixed = _error(protocols.parse_predict_batch, [records[0], list(records[1].values())], parser)

    assert (no_instances.status, no_instances.reason) == (400, "wrong_shape")
    assert "no 'instances' key (keys: 'rows')" in no_instances.message
    assert (not_a_list.status, not_a_list.reason) == (422, "wrong_shape")
    assert "'instances' must be a list of rows (lists) or records (objects), got an object" in not_a_list.message
    assert (scalar.status, scalar.reason) == (400, "wrong_shape")
    assert (empty.status, empty.reason) == (422, "empty_batch")
    assert (mixed.reason, mixed.message[:6]) == ("wrong_shape", "row 1:")


def test_batch_response_shape(schema: DatasetSchema) -> None:
    response = _json_round_trip(protocols.batch_response(LABELS, PROBA, schema, "3"))

    assert response == {
        "predictions": [1, 0, 1],
        "labels": ["Yes", "No", "Yes"],
        "probabilities": PROBA.tolist(),
        "model_version": "3",
    }


# ---------------------------------------------------------------------------------------------- /invocations


def _mlflow_bodies(records: list[dict[str, Any]], rows: list[list[Any]], names: list[str]) -> dict[str, Any]:
    """The request forms of the ``mlflow models serve`` documentation, with churn columns."""
    columns = {name: [r[name] for r in records] for name in names}
    reordered = list(reversed(names))
    return {
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {"dataframe_split": {"columns": names, "index": list(range(len(rows))), "data": rows}},
        "dataframe_split reordered": {
            "dataframe_split": {"columns": reordered, "data": [[r[n] for n in reordered] for r in records]}
        },
        "instances records": {"instances": records},
        "inputs columns": {"inputs": columns},
        "instances columns": {"instances": columns},
        "inputs records": {"inputs": records},
    }


@pytest.mark.parametrize(
    "form",
    [
        "dataframe_records",
        "dataframe_split",
        "dataframe_split reordered",
        "instances records",
        "inputs columns",
        "instances columns",
        "inputs records",
    ],
)
def test_every_mlflow_form_parses_like_mlflow_does(
    parser: FeatureParser,
    schema: DatasetSchema,
    records: list[dict[str, Any]],
    rows: list[list[Any]],
    expected: dict[str, np.ndarray],
    form: str,
) -> None:
    body = _json_round_trip(_mlflow_bodies(records, rows, schema.feature_names)[form])

    ours = protocols.parse_invocations(body, parser)
    theirs = pd.DataFrame(infer_and_parse_data(json.loads(orjson.dumps(body))))

    assert_columns_equal(ours.columns, expected)
    assert_columns_equal(ours.columns, onnx_feed(to_model_frame(theirs, schema), schema))


def test_positional_mlflow_forms(parser: FeatureParser, rows: list[list[Any]], expected: dict[str, np.ndarray]) -> None:
    for body in ({"inputs": rows}, {"instances": rows}, {"dataframe_split": {"data": rows}}):
        assert_columns_equal(protocols.parse_invocations(body, parser).columns, expected)


def test_other_top_level_keys_are_ignored_like_mlflow(
    parser: FeatureParser, records: list[dict[str, Any]], expected: dict[str, np.ndarray]
) -> None:
    batch = protocols.parse_invocations({"dataframe_records": records, "comment": "hi"}, parser)

    assert_columns_equal(batch.columns, expected)


def test_invocation_envelope_errors(parser: FeatureParser, records: list[dict[str, Any]]) -> None:
    cases: list[tuple[Any, int, str, str]] = [
        (records, 400, "wrong_shape", "exactly one of the keys dataframe_split, dataframe_records, instances, inputs"),
        ({"data": records}, 400, "wrong_shape", "got keys: 'data'"),
        ({"instances": records, "inputs": records}, 400, "wrong_shape", "got keys: 'instances', 'inputs'"),
        ({"inputs": records, "params": {"k": 1}}, 422, "unsupported", "this model takes no params"),
        ({"dataframe_records": records[0]}, 422, "wrong_shape", "must be a list of records (objects), got an object"),
        ({"instances": "x"}, 422, "wrong_shape", "'instances' must be a list of rows"),
        ({"dataframe_split": records}, 422, "wrong_shape", "'dataframe_split' must be an object with 'data'"),
        ({"dataframe_split": {"data": [], "orient": "split"}}, 422, "wrong_shape", "got keys: 'data', 'orient'"),
        ({"dataframe_split": {"columns": []}}, 422, "wrong_shape", "got keys: 'columns'"),
        ({"dataframe_split": {"data": {}}}, 422, "wrong_shape", "'dataframe_split.data' must be a list of rows"),
    ]
    for body, status, reason, words in cases:
        error = _error(protocols.parse_invocations, body, parser)
        assert (error.status, error.reason) == (status, reason), body
        assert words in error.message


def test_dataframe_split_errors(parser: FeatureParser, schema: DatasetSchema, rows: list[list[Any]]) -> None:
    names = schema.feature_names
    reordered = list(reversed(names))

    def split(**fields: Any) -> InputError:
        return _error(protocols.parse_invocations, {"dataframe_split": fields}, parser)

    bad_index = split(columns=names, index=[0], data=rows)
    bad_columns = split(columns="all", data=rows)
    unknown = split(columns=[*names[:-1], "TotalCharges"], data=rows)
    short_row = split(columns=reordered, data=[r[::-1] for r in rows[:2]] + [rows[2][:-1]])
    not_row = split(columns=reordered, data=[rows[0][::-1], "x"])
    empty = split(columns=reordered, data=[])
    too_many = split(columns=reordered, data=[rows[0][::-1]] * 51)

    assert (bad_index.reason, bad_index.status) == ("wrong_shape", 422)
    assert "one entry per row (5), got a list of 1" in bad_index.message
    assert bad_columns.reason == "wrong_shape"
    assert (unknown.reason, unknown.status) == ("missing_feature", 422)
    assert "missing feature(s) 'total_charges'" in unknown.message
    assert "unknown feature(s) 'TotalCharges'" in unknown.message
    assert short_row.reason == "feature_count"
    assert short_row.message == "row 2: expected 19 values, one per name in 'columns', got 18"
    assert (not_row.reason, not_row.message) == ("wrong_shape", "row 1: expected a list of 19 values, got a string")
    assert empty.reason == "empty_batch"
    assert (too_many.status, too_many.reason) == (413, "batch_too_large")


def test_values_are_checked_in_every_mlflow_form(
    parser: FeatureParser, schema: DatasetSchema, records: list[dict[str, Any]], rows: list[list[Any]]
) -> None:
    bad_records = [dict(r) for r in records]
    bad_records[1]["contract"] = "Lifetime"
    bad_rows = [list(r.values()) for r in bad_records]

    for form, body in _mlflow_bodies(bad_records, bad_rows, schema.feature_names).items():
        error = _error(protocols.parse_invocations, body, parser)
        assert (error.status, error.reason) == (422, "unknown_category"), form
        assert error.message.startswith("row 1, feature 'contract': unknown category 'Lifetime'"), form


def test_invocations_response_matches_mlflow_serving() -> None:
    out = io.StringIO()
    predictions_to_json({"label": LABELS, "probabilities": PROBA}, out)

    assert _json_round_trip(protocols.invocations_response(LABELS, PROBA)) == json.loads(out.getvalue())


def test_mlflow_error_matches_mlflow_serving() -> None:
    error = InputError(422, "wrong_type", "row 0, feature 'tenure': expected a number")

    body = protocols.mlflow_error(error)

    assert body == json.loads(MlflowException(error.message, error_code=BAD_REQUEST).serialize_as_json())
    assert body["error_code"] == "BAD_REQUEST"


# ---------------------------------------------------------------------------------------------- CSV


def test_csv_from_pandas_parses_like_mlflow_does(
    parser: FeatureParser, schema: DatasetSchema, raw: pd.DataFrame, expected: dict[str, np.ndarray]
) -> None:
    text = raw[schema.feature_names].to_csv(index=False)

    batch = protocols.parse_invocations_csv(text, parser)
    theirs = parse_csv_input(io.StringIO(text))

    assert batch.rows == len(raw)
    assert_columns_equal(batch.columns, expected)
    assert_columns_equal(batch.columns, onnx_feed(to_model_frame(theirs, schema), schema))
    assert np.isnan(batch.columns["total_charges"][-1, 0])


def test_csv_layout_variants(
    parser: FeatureParser, schema: DatasetSchema, raw: pd.DataFrame, expected: dict[str, np.ndarray]
) -> None:
    reordered = raw[list(reversed(schema.feature_names))]
    variants = [
        reordered.to_csv(index=False),
        "\ufeff" + reordered.to_csv(index=False, lineterminator="\r\n"),
        reordered.to_csv(index=False, quoting=1).replace("\n", "\n\n"),  # every cell quoted, blank lines
        raw[schema.feature_names].replace({"partner": {1: "True", 0: "false"}}).to_csv(index=False),
    ]

    for text in variants:
        assert_columns_equal(protocols.parse_invocations_csv(text, parser).columns, expected)


def test_csv_errors(parser: FeatureParser, schema: DatasetSchema, raw: pd.DataFrame) -> None:
    frame = raw[schema.feature_names].astype(object)
    header = ",".join(schema.feature_names)

    def csv_error(changes: dict[str, Any], row: int = 1) -> InputError:
        bad = frame.copy()
        for name, value in changes.items():
            bad.loc[row, name] = value
        return _error(protocols.parse_invocations_csv, bad.to_csv(index=False), parser)

    blank_tenure = csv_error({"tenure": None})
    blank_contract = csv_error({"contract": ""})
    text_tenure = csv_error({"tenure": "twelve"}, row=2)
    infinite = csv_error({"total_charges": "inf"})
    with_index = _error(protocols.parse_invocations_csv, frame.to_csv(), parser)
    empty = _error(protocols.parse_invocations_csv, "\n\n", parser)
    header_only = _error(protocols.parse_invocations_csv, header + "\n", parser)
    short = _error(protocols.parse_invocations_csv, header + "\n1,2,3\n", parser)
    unknown = _error(protocols.parse_invocations_csv, header.replace("tenure", "Tenure") + "\n", parser)
    too_many = _error(protocols.parse_invocations_csv, pd.concat([frame] * 11).to_csv(index=False), parser)

    assert (blank_tenure.reason, blank_tenure.message[:27]) == ("null_not_allowed", "row 1, feature 'tenure': nu")
    assert blank_contract.reason == "null_not_allowed"
    assert (text_tenure.status, text_tenure.reason) == (422, "wrong_type")
    assert text_tenure.message == "row 2, feature 'tenure': expected a number, got 'twelve'"
    assert (infinite.reason, infinite.message[:32]) == ("non_finite", "row 1, feature 'total_charges': ")
    assert (with_index.reason, "index=False" in with_index.message) == ("unknown_feature", True)
    assert (empty.status, empty.reason) == (400, "wrong_shape")
    assert header_only.reason == "empty_batch"
    assert (short.reason, short.message) == ("feature_count", "row 0: expected 19 cells, one per header column, got 3")
    assert unknown.reason == "missing_feature"
    assert "unknown feature(s) 'Tenure'" in unknown.message
    assert (too_many.status, too_many.reason) == (413, "batch_too_large")
    assert "55 rows" in too_many.message


def test_csv_nan_text_is_a_missing_value_where_nullable(
    parser: FeatureParser, schema: DatasetSchema, raw: pd.DataFrame
) -> None:
    frame = raw[schema.feature_names].astype(object)
    frame.loc[0, "total_charges"] = "NaN"

    batch = protocols.parse_invocations_csv(frame.to_csv(index=False), parser)

    assert np.isnan(batch.columns["total_charges"][0, 0])


# ---------------------------------------------------------------------------------------------- V2


def _triton_body(
    records: list[dict[str, Any]],
    schema: DatasetSchema,
    outputs: tuple[str, ...] | None = ("label", "probabilities"),
    binary: bool = False,
    request_id: str = "req-1",
) -> dict[str, Any]:
    """The JSON part of the request tritonclient's HTTP client would send."""
    inputs = []
    for feature in schema.features:
        values = [r[feature.name] for r in records]
        array = np.array(values, dtype=object if feature.is_categorical else np.float32).reshape(-1, 1)
        tensor = triton.InferInput(feature.name, list(array.shape), "BYTES" if feature.is_categorical else "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    requested = [triton.InferRequestedOutput(name, binary_data=False) for name in outputs] if outputs else None
    body, json_size = _get_inference_request(
        inputs=inputs,
        request_id=request_id,
        outputs=requested,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=None,
    )
    return orjson.loads(body if json_size is None else body[:json_size])


@pytest.fixture(scope="module")
def complete(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without missing values (tritonclient's JSON writes NaN, which is not JSON)."""
    return [r for r in records if r["total_charges"] is not None]


def test_v2_request_from_tritonclient(
    parser: FeatureParser, schema: DatasetSchema, complete: list[dict[str, Any]]
) -> None:
    body = _triton_body(complete, schema, outputs=("probabilities",))

    batch, outputs = protocols.parse_v2_infer(body, parser)

    assert outputs == ["probabilities"]
    assert_columns_equal(batch.columns, parser.from_records(complete).columns)


def test_v2_without_requested_outputs_asks_for_all(
    parser: FeatureParser, schema: DatasetSchema, complete: list[dict[str, Any]]
) -> None:
    body = _triton_body(complete, schema, outputs=None)

    batch, outputs = protocols.parse_v2_infer(body, parser)

    assert body["parameters"] == {"binary_data_output": True}  # tritonclient's default; answered in JSON
    assert outputs is None
    assert batch.rows == len(complete)


def test_v2_binary_tensors_are_refused(parser: FeatureParser, schema: DatasetSchema, complete: list[Any]) -> None:
    error = _error(protocols.parse_v2_infer, _triton_body(complete, schema, binary=True), parser)

    assert (error.status, error.reason) == (400, "unsupported")
    assert error.message.endswith("binary tensor data is not supported; use binary_data=False")
    assert protocols.V2_BINARY_HEADER == "Inference-Header-Content-Length"


def _v2_inputs(records: list[dict[str, Any]], schema: DatasetSchema, nested: bool, flat_shape: bool) -> list[Any]:
    inputs = []
    for feature in schema.features:
        values = [r[feature.name] for r in records]
        inputs.append(
            {
                "name": feature.name,
                "shape": [len(values)] if flat_shape else [len(values), 1],
                "datatype": "BYTES" if feature.is_categorical else "FP64",
                "data": [[v] for v in values] if nested else values,
            }
        )
    return inputs


def test_v2_flat_and_nested_data(
    parser: FeatureParser, schema: DatasetSchema, records: list[dict[str, Any]], expected: dict[str, np.ndarray]
) -> None:
    for nested, flat_shape in ((False, False), (True, False), (False, True)):
        body = {"inputs": _v2_inputs(records, schema, nested, flat_shape)}
        batch, outputs = protocols.parse_v2_infer(_json_round_trip(body), parser)
        assert outputs is None
        assert_columns_equal(batch.columns, expected)  # includes a JSON null for total_charges


def test_v2_integer_and_boolean_datatypes(
    parser: FeatureParser, schema: DatasetSchema, complete: list[dict[str, Any]]
) -> None:
    inputs = _v2_inputs(complete, schema, nested=False, flat_shape=False)
    for tensor in inputs:
        if tensor["name"] == "partner":
            tensor["datatype"], tensor["data"] = "BOOL", [bool(v) for v in tensor["data"]]
        elif tensor["name"] == "tenure":
            tensor["datatype"] = "INT64"

    batch, _ = protocols.parse_v2_infer({"inputs": inputs}, parser)

    assert_columns_equal(batch.columns, parser.from_records(complete).columns)


def test_v2_errors(parser: FeatureParser, schema: DatasetSchema, complete: list[dict[str, Any]]) -> None:
    def body_with(name: str | None = None, **changes: Any) -> dict[str, Any]:
        inputs = _v2_inputs(complete, schema, nested=False, flat_shape=False)
        for tensor in inputs:
            if tensor["name"] == name:
                tensor.update(changes)
        return {"inputs": inputs}

    def without(name: str) -> dict[str, Any]:
        body = body_with()
        body["inputs"] = [t for t in body["inputs"] if t["name"] != name]
        return body

    good = body_with()
    first = good["inputs"][0]
    n = len(complete)
    cases: list[tuple[Any, int, str, str]] = [
        ([first], 400, "wrong_shape", 'expected an inference request object {"inputs": [...]}, got a list'),
        ({**good, "id": 7}, 400, "wrong_shape", "'id' must be a string"),
        ({}, 400, "wrong_shape", "'inputs' must be a non-empty list"),
        ({"inputs": []}, 400, "wrong_shape", "'inputs' must be a non-empty list"),
        ({"inputs": [*good["inputs"], "x"]}, 400, "wrong_shape", "inputs[19] must be an object"),
        ({"inputs": [{"shape": [1]}]}, 400, "wrong_shape", "inputs[0] needs a string 'name'"),
        (body_with("tenure", data=None), 422, "wrong_shape", "input 'tenure': 'data' must be a list"),
        ({"inputs": [*good["inputs"], first]}, 400, "wrong_shape", "input 'female' is given more than once"),
        (without("tenure"), 422, "missing_feature", "missing feature(s) 'tenure'"),
        ({"inputs": [*good["inputs"], {**first, "name": "x"}]}, 422, "unknown_feature", "unknown feature(s) 'x'"),
        (body_with("tenure", datatype="BYTES"), 422, "wrong_type", "feature 'tenure' is numeric: use FP32 or FP64"),
        (body_with("contract", datatype="FP32"), 422, "wrong_type", "feature 'contract' is categorical: use BYTES"),
        (body_with("tenure", datatype="BOOL"), 422, "wrong_type", "has datatype 'BOOL'"),
        (body_with("tenure", shape=[n, 2]), 422, "wrong_shape", f"shape [{n}, 2]: this model takes one input per"),
        (
            {"inputs": [{"name": "input-0", "shape": [n, 19], "datatype": "FP32", "data": [0.0] * 19 * n}]},
            422,
            "wrong_shape",
            f"input 'input-0' has shape [{n}, 19]: this model takes one input per feature, named after it, each of "
            "shape [n] or [n, 1] (19 inputs: female, senior_citizen,",
        ),
        (body_with("tenure", shape=[n, 1, 1]), 422, "wrong_shape", "expected [n, 1] or [n]"),
        (body_with("tenure", shape=str(n)), 422, "wrong_shape", "expected [n, 1] or [n]"),
        (body_with("tenure", shape=[n + 1, 1]), 422, "wrong_shape", f"holds {n + 1} value(s) but 'data' has {n}"),
        (body_with("tenure", shape=[1, 1], data=[5]), 422, "wrong_shape", f"'female' has {n} rows, 'tenure' has 1"),
        (body_with("tenure", data=[[[1]]] * n), 422, "wrong_shape", "flat or nested as [[v], [v], ...]"),
        (body_with("tenure", data=[1, 500, 3, 4][:n]), 422, "out_of_range", "row 1, feature 'tenure': 500"),
        (body_with("tenure", parameters={"shared_memory_region": "r"}), 400, "unsupported", "shared memory"),
        ({**good, "outputs": [{"name": "proba"}]}, 400, "unsupported", "unknown output 'proba'"),
        ({**good, "outputs": {"name": "label"}}, 400, "wrong_shape", "'outputs' must be a list"),
        ({**good, "outputs": [{}]}, 400, "wrong_shape", "outputs[0] must be an object with a string 'name'"),
        (
            {**good, "outputs": [{"name": "label", "parameters": {"classification": 2}}]},
            400,
            "unsupported",
            "classification extension",
        ),
    ]
    for body, status, reason, words in cases:
        error = _error(protocols.parse_v2_infer, body, parser)
        assert (error.status, error.reason) == (status, reason), words
        assert words in error.message, error.message
    missing_data = body_with()
    del missing_data["inputs"][3]["data"]
    assert _error(protocols.parse_v2_infer, missing_data, parser).message == "input 'dependents' has no 'data'"


def test_v2_response_reads_back_through_tritonclient() -> None:
    response = protocols.v2_infer_response("churn", "4", LABELS, PROBA, None, "req-1")

    result = triton.InferResult.from_response_body(orjson.dumps(response))

    assert response["model_name"] == "churn"
    assert response["model_version"] == "4"
    assert response["id"] == "req-1"
    assert [o["name"] for o in response["outputs"]] == ["label", "probabilities"]
    assert response["outputs"][1]["shape"] == [3, 2]
    np.testing.assert_array_equal(result.as_numpy("label"), LABELS)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), PROBA)
    assert result.as_numpy("probabilities").dtype == np.float32


def test_v2_response_keeps_only_the_requested_outputs() -> None:
    response = protocols.v2_infer_response("churn", "4", LABELS, PROBA, ["probabilities"])

    assert "id" not in response
    assert response["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [3, 2], "data": PROBA.reshape(-1).tolist()}
    ]
    with pytest.raises(InputError, match="unknown output"):
        protocols.v2_infer_response("churn", "4", LABELS, PROBA, ["scores"])


def test_v2_model_metadata_and_error(schema: DatasetSchema) -> None:
    metadata = protocols.v2_model_metadata("churn", "4", schema)

    assert metadata["name"] == "churn"
    assert metadata["versions"] == ["4"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [i["name"] for i in metadata["inputs"]] == schema.feature_names
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]}["contract"] == "BYTES"
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]}["tenure"] == "FP32"
    assert {tuple(i["shape"]) for i in metadata["inputs"]} == {(-1, 1)}
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]
    assert protocols.v2_error("no model") == {"error": "no model"}


# ---------------------------------------------------------------------------------------------- OpenAPI


def test_openapi_examples_are_valid_requests(parser: FeatureParser, schema: DatasetSchema) -> None:
    examples = _json_round_trip(protocols.openapi_examples(schema))
    parse = {
        "predict": protocols.parse_predict,
        "batch": protocols.parse_predict_batch,
        "invocations": protocols.parse_invocations,
        "v2": lambda body, p: protocols.parse_v2_infer(body, p)[0],
    }

    batches: dict[str, FeatureBatch] = {
        name: parse[name.split("_")[0]](body, parser) for name, body in examples.items()
    }

    assert set(examples) == {
        "predict_positional",
        "predict_named",
        "batch_positional",
        "batch_records",
        "invocations_dataframe_split",
        "invocations_dataframe_records",
        "invocations_instances",
        "invocations_inputs",
        "v2_infer",
    }
    assert examples["predict_named"]["features"]["contract"] == "Month-to-month"
    assert examples["predict_named"]["features"]["tenure"] == 60.0
    assert_columns_equal(batches["predict_positional"].columns, batches["predict_named"].columns)
    assert_columns_equal(batches["v2_infer"].columns, batches["predict_named"].columns)
    for name in ("batch_records", "invocations_dataframe_split", "invocations_instances", "invocations_inputs"):
        assert batches[name].rows == 2
        assert_columns_equal(batches[name].columns, batches["batch_positional"].columns)
    assert np.isnan(batches["batch_records"].columns["total_charges"][1, 0])  # the second row shows a null
