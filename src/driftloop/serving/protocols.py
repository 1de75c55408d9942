"""Request envelopes and response bodies of every protocol the server speaks; pure functions, no I/O.

* ``/predict`` (the tutorial's): ``{"features": [v1, ...]}`` in schema order, or ``{"features": {name: v}}``.
* ``/predict/batch``: ``{"instances": [[...], ...]}``, ``{"instances": [{...}, ...]}`` or a bare list of either.
* ``/invocations`` (``mlflow models serve``): JSON with exactly one of ``dataframe_split``, ``dataframe_records``,
  ``instances``, ``inputs``; or a CSV body with a header row. Errors as MLflow shapes them.
* ``/v2/models/{name}/infer`` (Open Inference Protocol / KServe V2 / Triton HTTP): JSON tensors only, one input per
  feature; the binary-tensor extension is refused.

Parsers take the body as decoded JSON (or CSV text) and return a ``FeatureBatch`` or raise ``InputError``:
400 when the envelope is not this endpoint's protocol at all, 422 when the data inside breaks the schema (see
``serving.inputs``). Response builders return plain dicts and lists for the app to encode with orjson.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

from driftloop.core.schema import DatasetSchema, Feature, FeatureKind
from driftloop.core.task import Task
from driftloop.errors import InputError
from driftloop.io.onnx_runtime import CLASSIFIER_OUTPUTS, LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT
from driftloop.io.prediction_store import Feedback
from driftloop.serving.inputs import FeatureBatch, FeatureParser, json_type

V2_BINARY_HEADER = "Inference-Header-Content-Length"
V2_PLATFORM = "onnxruntime_onnx"
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")

_BINARY_UNSUPPORTED = "binary tensor data is not supported; use binary_data=False"
_V2_NUMBERS = ("FP32", "FP64", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")
_V2_DATATYPES = {
    FeatureKind.NUMERIC: _V2_NUMBERS,
    FeatureKind.BINARY: (*_V2_NUMBERS, "BOOL"),
    FeatureKind.CATEGORICAL: ("BYTES",),
}
_CSV_BOOLEANS = {"true": 1.0, "false": 0.0}
_MISSING: Any = object()


def _outputs(task: Task) -> tuple[str, ...]:
    """The model's output tensors: ``label`` and ``probabilities`` of a classifier, ``prediction`` of a regressor."""
    return CLASSIFIER_OUTPUTS if task.is_classifier else (PREDICTION_OUTPUT,)


def _rows_or_records(values: Any, parser: FeatureParser, field: str) -> FeatureBatch:
    if type(values) is not list:
        raise InputError(
            422, "wrong_shape", f"{field} must be a list of rows (lists) or records (objects), got {json_type(values)}"
        )
    if values and type(values[0]) is dict:
        return parser.from_records(values)
    return parser.from_rows(values)


# ---------------------------------------------------------------------------------------------- /predict


def parse_predict(body: Any, parser: FeatureParser) -> FeatureBatch:
    """``{"features": [v1, ...]}`` (schema order) or ``{"features": {"name": v, ...}}``: one row."""
    if type(body) is dict:
        features = body.get("features", _MISSING)
        if len(body) > 1 and features is not _MISSING:  # "feature" beside it, a label: nothing else is read
            others = ", ".join(repr(key) for key in body if key != "features")
            raise InputError(400, "wrong_shape", f"unknown key(s) {others}: the body holds 'features' alone")
        if type(features) is list:
            return parser.from_row(features)
        if type(features) is dict:
            return parser.from_record(features)
        if features is _MISSING:
            raise InputError(
                400,
                "wrong_shape",
                'expected {"features": [values in schema order]} or {"features": {"name": value, ...}}; '
                f"the body has no 'features' key (keys: {', '.join(map(repr, body)) or 'none'})",
            )
        raise InputError(
            422,
            "wrong_shape",
            f"'features' must be a list of values in schema order or an object keyed by feature name, "
            f"got {json_type(features)}",
        )
    raise InputError(
        400,
        "wrong_shape",
        f'expected a JSON object {{"features": [...]}} or {{"features": {{...}}}}, got {json_type(body)}',
    )


def predict_response(
    labels: np.ndarray, proba: np.ndarray | None, schema: DatasetSchema, version: str
) -> dict[str, Any]:
    """The tutorial's response for one row; its clients read ``prediction`` and ``probability``.

    A classifier's ``prediction`` is the class index, with ``label`` its name and one probability per class; a
    regressor's is the predicted value.
    """
    if proba is None:
        return {"prediction": float(labels[0]), "model_version": version}
    index = int(labels[0])
    p = proba[0].tolist()
    names = schema.task.classes
    return {
        "prediction": index,
        "label": names[index],
        "probability": p,
        "probabilities": dict(zip(names, p, strict=True)),
        "model_version": version,
    }


def parse_predict_batch(body: Any, parser: FeatureParser) -> FeatureBatch:
    """``{"instances": [...]}`` of rows or records, or a top-level list of either."""
    if type(body) is list:
        return _rows_or_records(body, parser, "the body")
    if type(body) is dict:
        if "instances" not in body:
            raise InputError(
                400,
                "wrong_shape",
                'expected {"instances": [rows or records]} or a list of rows or records; the body has no '
                f"'instances' key (keys: {', '.join(map(repr, body)) or 'none'})",
            )
        return _rows_or_records(body["instances"], parser, "'instances'")
    raise InputError(
        400, "wrong_shape", f'expected {{"instances": [...]}} or a list of rows or records, got {json_type(body)}'
    )


def batch_response(labels: np.ndarray, proba: np.ndarray | None, schema: DatasetSchema, version: str) -> dict[str, Any]:
    if proba is None:
        return {"predictions": labels.tolist(), "model_version": version}
    names = schema.task.classes
    indices = labels.tolist()
    return {
        "predictions": indices,
        "labels": [names[i] for i in indices],
        "probabilities": proba.tolist(),
        "model_version": version,
    }


# ---------------------------------------------------------------------------------------------- /invocations


def parse_invocations(body: Any, parser: FeatureParser) -> FeatureBatch:
    """MLflow's JSON scoring request: one of ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``.

    Other keys are ignored, as ``mlflow models serve`` ignores them, except ``params`` (refused).
    """
    if type(body) is not dict:
        raise InputError(
            400,
            "wrong_shape",
            f"the input must be a JSON object with exactly one of the keys {', '.join(MLFLOW_FORMATS)}; "
            f"got {json_type(body)}",
        )
    if "params" in body:
        raise InputError(422, "unsupported", "this model takes no params; remove the 'params' key")
    present = [key for key in MLFLOW_FORMATS if key in body]
    if len(present) != 1:
        raise InputError(
            400,
            "wrong_shape",
            f"the input must be a JSON object with exactly one of the keys {', '.join(MLFLOW_FORMATS)}; "
            f"got keys: {', '.join(map(repr, body)) or 'none'}",
        )
    key = present[0]
    value = body[key]
    if key == "dataframe_split":
        return _dataframe_split(value, parser)
    if key == "dataframe_records":
        if type(value) is not list:
            raise InputError(
                422, "wrong_shape", f"'dataframe_records' must be a list of records (objects), got {json_type(value)}"
            )
        return parser.from_records(value)
    if type(value) is dict:
        return parser.from_columns(value)
    return _rows_or_records(value, parser, f"{key!r}")


def _dataframe_split(split: Any, parser: FeatureParser) -> FeatureBatch:
    expected = "an object with 'data' (a list of rows) and optionally 'columns' and 'index'"
    if type(split) is not dict:
        raise InputError(422, "wrong_shape", f"'dataframe_split' must be {expected}, got {json_type(split)}")
    extra = [key for key in split if key not in ("columns", "data", "index")]
    if "data" not in split or extra:
        raise InputError(
            422, "wrong_shape", f"'dataframe_split' must be {expected}; got keys: {', '.join(map(repr, split))}"
        )
    data = split["data"]
    if type(data) is not list:
        raise InputError(422, "wrong_shape", f"'dataframe_split.data' must be a list of rows, got {json_type(data)}")
    index = split.get("index")
    if index is not None and (type(index) is not list or len(index) != len(data)):
        raise InputError(
            422,
            "wrong_shape",
            f"'dataframe_split.index' must be a list with one entry per row ({len(data)}), "
            f"got {json_type(index)}" + (f" of {len(index)}" if type(index) is list else ""),
        )
    columns = split.get("columns")
    if columns is None or columns == parser.feature_names:
        return parser.from_rows(data)
    if type(columns) is not list or any(type(c) is not str for c in columns):
        raise InputError(422, "wrong_shape", "'dataframe_split.columns' must be a list of feature names")
    parser.require_names(columns)
    parser.check_rows(len(data))
    width = len(columns)
    if set(map(type, data)) != {list} or set(map(len, data)) != {width}:
        for number, row in enumerate(data):
            if type(row) is not list:
                raise InputError(
                    422, "wrong_shape", f"row {number}: expected a list of {width} values, got {json_type(row)}"
                )
            if len(row) != width:
                raise InputError(
                    422,
                    "feature_count",
                    f"row {number}: expected {width} values, one per name in 'columns', got {len(row)}",
                )
    return parser.from_columns(dict(zip(columns, zip(*data, strict=True), strict=True)))


def parse_invocations_csv(text: str, parser: FeatureParser) -> FeatureBatch:
    """A CSV body whose header row names the features (any order); a blank cell is a missing value."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = next((row for row in reader if row), None)
    if header is None:
        raise InputError(400, "wrong_shape", "the CSV body is empty; expected a header row of feature names")
    if "" in header:
        raise InputError(
            422,
            "unknown_feature",
            "a CSV column has an empty name (a pandas index? write the CSV with index=False); "
            f"expected exactly: {', '.join(parser.feature_names)}",
        )
    parser.require_names(header)
    rows: list[list[str]] = []
    width = len(header)
    for row in reader:
        if not row:
            continue  # blank lines, as pandas skips them
        if len(row) != width:
            raise InputError(
                422, "feature_count", f"row {len(rows)}: expected {width} cells, one per header column, got {len(row)}"
            )
        rows.append(row)
    parser.check_rows(len(rows))
    features = {f.name: f for f in parser.schema.features}
    columns = {
        name: _csv_column(features[name], cells) for name, cells in zip(header, zip(*rows, strict=True), strict=True)
    }
    return parser.from_columns(columns)


def _csv_column(feature: Feature, cells: tuple[str, ...]) -> list[Any] | tuple[str, ...]:
    if feature.is_categorical:
        return cells  # "" is the missing-category marker already
    binary = feature.kind is FeatureKind.BINARY
    values: list[Any] = []
    for number, cell in enumerate(cells):
        if not cell:
            values.append(None)
            continue
        try:
            values.append(float(cell))
        except ValueError:
            if binary and cell.lower() in _CSV_BOOLEANS:
                values.append(_CSV_BOOLEANS[cell.lower()])
                continue
            raise InputError(
                422,
                "wrong_type",
                f"row {number}, feature {feature.name!r}: expected a number, got {cell[:60]!r}",
            ) from None
    return values


def invocations_response(labels: np.ndarray, proba: np.ndarray | None) -> dict[str, Any]:
    """What ``mlflow models serve`` returns for a pyfunc whose predict returns ``{output name: array}``.

    A regressor's one output is answered as MLflow answers a single array: ``{"predictions": [values]}``.
    """
    if proba is None:
        return {"predictions": labels.tolist()}
    return {"predictions": {LABEL_OUTPUT: labels.tolist(), PROBABILITIES_OUTPUT: proba.tolist()}}


def mlflow_error(error: InputError) -> dict[str, Any]:
    """The error body ``mlflow models serve`` (MLflow 3.17) returns for a bad request (with HTTP 400).

    A 404 (a model this server does not serve) says so in MLflow's code for a missing resource.
    """
    return {
        "error_code": "RESOURCE_DOES_NOT_EXIST" if error.status == 404 else "BAD_REQUEST",
        "message": error.message,
        "sqlstate": "KAM00",
        "error_class": "INVALID_PARAMETER_VALUE",
    }


# ---------------------------------------------------------------------------------------------- V2 / OIP


def parse_v2_infer(body: Any, parser: FeatureParser) -> tuple[FeatureBatch, list[str] | None]:
    """An Open Inference Protocol request, one input per feature, JSON data; also the requested outputs."""
    if type(body) is not dict:
        raise InputError(
            400, "wrong_shape", f'expected an inference request object {{"inputs": [...]}}, got {json_type(body)}'
        )
    if "id" in body and type(body["id"]) is not str:
        raise InputError(400, "wrong_shape", f"'id' must be a string, got {json_type(body['id'])}")
    inputs = body.get("inputs")
    if type(inputs) is not list or not inputs:
        raise InputError(
            400,
            "wrong_shape",
            "'inputs' must be a non-empty list of tensors {name, shape, datatype, data}, "
            f"got {json_type(inputs) if 'inputs' in body else 'no inputs'}",
        )
    tensors: dict[str, dict[str, Any]] = {}
    for position, tensor in enumerate(inputs):
        name = _v2_tensor_name(tensor, position)
        if name in tensors:
            raise InputError(400, "wrong_shape", f"input {name!r} is given more than once")
        tensors[name] = tensor
    _refuse_matrix_inputs(tensors, parser)
    parser.require_names(tensors)
    columns: dict[str, list[Any]] = {}
    rows: int | None = None
    first = ""
    for feature in parser.schema.features:
        values, count = _v2_values(feature, tensors[feature.name])
        if rows is None:
            rows, first = count, feature.name
        elif count != rows:
            raise InputError(
                422,
                "wrong_shape",
                f"inputs differ in batch size: {first!r} has {rows} rows, {feature.name!r} has {count}",
            )
        columns[feature.name] = values
    return parser.from_columns(columns), _v2_requested_outputs(body.get("outputs", None), _outputs(parser.schema.task))


def _refuse_matrix_inputs(tensors: dict[str, dict[str, Any]], parser: FeatureParser) -> None:
    """A tensor of several columns (one input holding every feature, as many servers take it) is named as such.

    Otherwise the request would read as one unknown input and every feature missing.
    """
    for name, tensor in tensors.items():
        shape = tensor["shape"]
        if type(shape) is list and len(shape) == 2 and type(shape[1]) is int and shape[1] > 1:
            raise InputError(
                422,
                "wrong_shape",
                f"input {name!r} has shape {_short(shape)}: this model takes one input per feature, named after it, "
                f"each of shape [n] or [n, 1] ({len(parser.feature_names)} inputs: "
                f"{', '.join(parser.feature_names)})",
            )


def _v2_tensor_name(tensor: Any, position: int) -> str:
    if type(tensor) is not dict:
        raise InputError(400, "wrong_shape", f"inputs[{position}] must be an object, got {json_type(tensor)}")
    name = tensor.get("name")
    if type(name) is not str:
        raise InputError(400, "wrong_shape", f"inputs[{position}] needs a string 'name'")
    parameters = tensor.get("parameters")
    if type(parameters) is dict:
        if "binary_data_size" in parameters:
            raise InputError(400, "unsupported", f"input {name!r}: {_BINARY_UNSUPPORTED}")
        if "shared_memory_region" in parameters:
            raise InputError(400, "unsupported", f"input {name!r}: shared memory is not supported; send JSON data")
    for key in ("shape", "datatype", "data"):
        if key not in tensor:
            raise InputError(400, "wrong_shape", f"input {name!r} has no {key!r}")
    return name


def _v2_values(feature: Feature, tensor: dict[str, Any]) -> tuple[list[Any], int]:
    name = feature.name
    datatype = tensor["datatype"]
    allowed = _V2_DATATYPES[feature.kind]
    if datatype not in allowed:
        raise InputError(
            422,
            "wrong_type",
            f"input {name!r} has datatype {_short(datatype)}; feature {name!r} is {feature.kind.value}: "
            f"use {' or '.join(allowed[:3])}" + (" (or another numeric type)" if len(allowed) > 3 else ""),
        )
    shape = tensor["shape"]
    if (
        type(shape) is not list
        or any(type(d) is not int or d < 0 for d in shape)
        or len(shape) not in (1, 2)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise InputError(422, "wrong_shape", f"input {name!r} has shape {_short(shape)}; expected [n, 1] or [n]")
    data = tensor["data"]
    if type(data) is not list:
        raise InputError(422, "wrong_shape", f"input {name!r}: 'data' must be a list, got {json_type(data)}")
    if any(type(v) is list for v in data):
        flat: list[Any] = []
        for item in data:
            if type(item) is not list or any(type(v) is list for v in item):
                raise InputError(
                    422, "wrong_shape", f"input {name!r}: 'data' must be flat or nested as [[v], [v], ...]"
                )
            flat.extend(item)
        data = flat
    rows = shape[0]
    if len(data) != rows:
        raise InputError(
            422,
            "wrong_shape",
            f"input {name!r}: shape {shape} holds {rows} value(s) but 'data' has {len(data)}",
        )
    return data, rows


def _v2_requested_outputs(outputs: Any, known: tuple[str, ...]) -> list[str] | None:
    if outputs is None:
        return None
    if type(outputs) is not list:
        raise InputError(400, "wrong_shape", f"'outputs' must be a list of {{name}} objects, got {json_type(outputs)}")
    names: list[str] = []
    for position, output in enumerate(outputs):
        name = output.get("name") if type(output) is dict else None
        if type(name) is not str:
            raise InputError(400, "wrong_shape", f"outputs[{position}] must be an object with a string 'name'")
        if name not in known:
            raise InputError(
                400, "unsupported", f"unknown output {name!r}; this model has outputs {', '.join(map(repr, known))}"
            )
        parameters = output.get("parameters")
        if type(parameters) is dict and parameters.get("classification"):
            raise InputError(400, "unsupported", f"output {name!r}: the classification extension is not supported")
        if name not in names:
            names.append(name)
    return names


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def v2_infer_response(
    model_name: str,
    model_version: str,
    labels: np.ndarray,
    proba: np.ndarray | None,
    outputs: list[str] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The inference response: the model's output tensors (row-major data).

    A classifier's ``label`` INT64 ``[n]`` and ``probabilities`` FP32 ``[n, k]``; a regressor's ``prediction`` FP32
    ``[n, 1]``. Only the ``outputs`` the request named, when it named some. Always JSON data: a client asking for binary
    outputs (tritonclient's default) reads JSON data as well.
    """
    rows = int(labels.shape[0])
    if proba is None:
        tensors = {
            PREDICTION_OUTPUT: {
                "name": PREDICTION_OUTPUT,
                "datatype": "FP32",
                "shape": [rows, 1],
                "data": labels.tolist(),
            }
        }
    else:
        tensors = {
            LABEL_OUTPUT: {"name": LABEL_OUTPUT, "datatype": "INT64", "shape": [rows], "data": labels.tolist()},
            PROBABILITIES_OUTPUT: {
                "name": PROBABILITIES_OUTPUT,
                "datatype": "FP32",
                "shape": [rows, int(proba.shape[1])],
                "data": proba.reshape(-1).tolist(),
            },
        }
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    names = outputs or list(tensors)
    unknown = [name for name in names if name not in tensors]
    if unknown:
        raise InputError(400, "unsupported", f"unknown output(s) {unknown}; this model has outputs {list(tensors)}")
    response["outputs"] = [tensors[name] for name in names]
    return response


def v2_model_metadata(name: str, version: str, schema: DatasetSchema) -> dict[str, Any]:
    """``GET /v2/models/{name}``: one input per feature (FP32 or BYTES, ``[-1, 1]``) and the model's outputs."""
    task = schema.task
    outputs = (
        [
            {"name": LABEL_OUTPUT, "datatype": "INT64", "shape": [-1]},
            {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [-1, len(task.classes)]},
        ]
        if task.is_classifier
        else [{"name": PREDICTION_OUTPUT, "datatype": "FP32", "shape": [-1, 1]}]
    )
    return {
        "name": name,
        "versions": [version],
        "platform": V2_PLATFORM,
        "inputs": [
            {"name": f.name, "datatype": "BYTES" if f.is_categorical else "FP32", "shape": [-1, 1]}
            for f in schema.features
        ],
        "outputs": outputs,
    }


def v2_error(message: str) -> dict[str, str]:
    """The V2 protocol's error body."""
    return {"error": message}


# ---------------------------------------------------------------------------------------------- OpenAPI


def _example(feature: Feature) -> Any:
    if feature.is_categorical:
        return feature.categories[0] if feature.categories else ""
    if feature.kind is FeatureKind.BINARY:
        return 1
    if feature.min is not None and feature.max is not None:
        return (feature.min + feature.max) / 2
    value = 1.0
    if feature.min is not None:
        value = max(value, feature.min)
    if feature.max is not None:
        value = min(value, feature.max)
    return value


def _other_example(feature: Feature) -> Any:
    """A second valid row: last category, 0, the minimum, and null where the feature is nullable."""
    if feature.nullable:
        return None
    if feature.is_categorical:
        return feature.categories[-1] if feature.categories else ""
    if feature.kind is FeatureKind.BINARY:
        return 0
    return _example(feature) if feature.min is None else feature.min


def openapi_examples(schema: DatasetSchema) -> dict[str, Any]:
    """Example request bodies, one per endpoint and form, with valid values for ``schema``."""
    names = schema.feature_names
    row = [_example(f) for f in schema.features]
    other = [_other_example(f) for f in schema.features]
    record = dict(zip(names, row, strict=True))
    other_record = dict(zip(names, other, strict=True))
    return {
        "predict_positional": {"features": row},
        "predict_named": {"features": record},
        "batch_positional": {"instances": [row, other]},
        "batch_records": {"instances": [record, other_record]},
        "invocations_dataframe_split": {"dataframe_split": {"columns": names, "data": [row, other]}},
        "invocations_dataframe_records": {"dataframe_records": [record, other_record]},
        "invocations_instances": {"instances": [record, other_record]},
        "invocations_inputs": {"inputs": {name: [record[name], other_record[name]] for name in names}},
        "v2_infer": {
            "id": "example-1",
            "inputs": [
                {"name": f.name, "shape": [1, 1], "datatype": "BYTES" if f.is_categorical else "FP32", "data": [v]}
                for f, v in zip(schema.features, row, strict=True)
            ],
            "outputs": [{"name": name} for name in _outputs(schema.task)],
        },
    }


_FEEDBACK_KEYS = frozenset({"request_id", "label", "row"})


def parse_feedback(body: Any, task: Task | None, max_items: int) -> list[Feedback]:
    """Feedback items from either body form; a label must be one of the model's classes, or a regressor's number.

    At most ``max_items`` items (413 beyond): one request must not hold the log's write lock for long.
    """
    if isinstance(body, dict) and "items" in body and len(body) > 1:
        others = ", ".join(repr(key) for key in body if key != "items")
        raise InputError(400, "wrong_shape", f"unknown key(s) {others}: the body holds 'items' alone")
    entries = body.get("items") if isinstance(body, dict) and "items" in body else [body]
    if not isinstance(entries, list):
        raise InputError(400, "wrong_shape", f'expected {{"request_id", "label"}} or {{"items": [...]}}, got items of '
                         f"{json_type(entries)}")  # fmt: skip
    if not entries:
        raise InputError(422, "empty_batch", "no feedback items; send at least one")
    if len(entries) > max_items:
        raise InputError(
            413, "too_many_items", f"{len(entries)} feedback items in one request; the limit is {max_items}"
        )
    items = []
    for index, entry in enumerate(entries):
        where = f"item {index}: " if len(entries) > 1 else ""
        # The keys are the envelope, as /predict's "features" (400); what they hold is checked below (422).
        if not isinstance(entry, dict):
            raise InputError(400, "wrong_shape", f"{where}expected an object with request_id and label")
        if unknown := [key for key in entry if key not in _FEEDBACK_KEYS]:  # a typo ("lable") must not pass quietly
            named = ", ".join(repr(key) for key in unknown)
            raise InputError(400, "wrong_shape", f"{where}unknown key(s) {named}: a label has request_id, label, row")
        if missing := [key for key in ("request_id", "label") if key not in entry]:
            raise InputError(400, "wrong_shape", f"{where}missing key(s) {', '.join(map(repr, missing))}")
        request_id, label, row = entry.get("request_id"), entry.get("label"), entry.get("row", 0)
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
            raise InputError(422, "wrong_type", f"{where}request_id must be a non-empty string (≤ 128 characters)")
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise InputError(422, "wrong_type", f"{where}row must be a row index ≥ 0, got {row!r}")
        items.append(Feedback(request_id=request_id, row_index=row, actual=_feedback_label(label, task, where)))
    return items


def _as_json(value: Any) -> str:
    """A request's value as JSON spells it (null, true, "text"), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _feedback_label(label: Any, task: Task | None, where: str) -> str:
    """The label as the prediction log keeps it (text); a regressor's must be a number it can be scored against."""
    if task is not None and not task.is_classifier:
        is_number = isinstance(label, int | float) and not isinstance(label, bool)
        if not is_number or not task.usable_labels(np.asarray([label], dtype=object))[0]:
            # The reasons a feature's value gets for the same faults: a regressor has no labels to be unknown.
            finite = is_number and (isinstance(label, int) or math.isfinite(label))
            reason = "wrong_type" if not is_number else "out_of_range" if finite else "non_finite"
            raise InputError(
                422, reason, f"{where}label must be a finite number within float32 range, got {_as_json(label)}"
            )
        return repr(float(label))
    classes = task.classes if task is not None else None
    if not isinstance(label, str) or (classes is not None and label not in classes):
        expected = " or ".join(repr(c) for c in classes) if classes else "a class name"
        raise InputError(422, "unknown_label", f"{where}label must be {expected}, got {_as_json(label)}")
    return label
