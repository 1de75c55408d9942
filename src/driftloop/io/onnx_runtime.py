"""Score model frames with an exported ONNX model on onnxruntime; shared by training (parity) and serving.

Deliberately light: numpy, onnxruntime and driftloop's schema code only, never scikit-learn, skl2onnx,
mlflow, prefect or (until a DataFrame is scored) pandas, so the serving image can use it as it is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from driftloop.core.schema import DatasetSchema
from driftloop.core.task import Task
from driftloop.errors import ExportError

if TYPE_CHECKING:
    import pandas as pd

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
PREDICTION_OUTPUT = "prediction"  # a regressor's values, float32 (n, 1)
CLASSIFIER_OUTPUTS = (LABEL_OUTPUT, PROBABILITIES_OUTPUT)
REGRESSOR_OUTPUTS = (PREDICTION_OUTPUT,)
_STRING = "tensor(string)"
_FLOAT = "tensor(float)"
# The grouped graph's inputs (``io.onnx_export.grouped_onnx``) and the metadata keys naming their columns.
NUMERIC_INPUT = "numeric"
CATEGORICAL_INPUT = "categorical"
GROUPED_COLUMNS_METADATA = {
    NUMERIC_INPUT: "driftloop.numeric_columns",
    CATEGORICAL_INPUT: "driftloop.categorical_columns",
}


def _is_grouped(session: ort.InferenceSession) -> bool:
    metadata = session.get_modelmeta().custom_metadata_map
    return any(key in metadata for key in GROUPED_COLUMNS_METADATA.values())


def _grouped_problems(session: ort.InferenceSession, schema: DatasetSchema) -> list[str]:
    """What keeps a grouped graph from serving ``schema``: its two inputs must hold the schema's columns in order."""
    problems: list[str] = []
    inputs = {i.name: i for i in session.get_inputs()}
    metadata = session.get_modelmeta().custom_metadata_map
    for name, columns, want in (
        (NUMERIC_INPUT, schema.numeric, _FLOAT),
        (CATEGORICAL_INPUT, schema.categorical, _STRING),
    ):
        node = inputs.pop(name, None)
        if node is None:
            if columns:
                problems.append(f"input {name!r} is missing (schema {schema.name!r} has {name} features)")
            continue
        try:
            recorded = json.loads(metadata.get(GROUPED_COLUMNS_METADATA[name], "null"))
        except ValueError:
            recorded = None
        if recorded != columns:
            problems.append(f"input {name!r} holds columns {recorded}; schema {schema.name!r} needs {columns}")
        if node.type != want:
            problems.append(f"input {name!r} is {node.type}, the schema needs {want}")
        if len(node.shape) != 2 or node.shape[1] != len(columns):
            problems.append(f"input {name!r} has shape {node.shape}, not [n, {len(columns)}]")
    if inputs:
        problems.append(f"input(s) {sorted(inputs)} are not inputs of a grouped graph")
    return problems


def _signature_problems(session: ort.InferenceSession, schema: DatasetSchema) -> list[str]:
    problems: list[str] = []
    inputs = {i.name: i for i in session.get_inputs()}
    missing = [name for name in schema.feature_names if name not in inputs]
    extra = sorted(set(inputs) - set(schema.feature_names))
    if missing:
        problems.append(f"inputs missing for feature(s) {missing}")
    if extra:
        problems.append(f"input(s) {extra} are not features of schema {schema.name!r}")
    for feature in schema.features:
        node = inputs.get(feature.name)
        if node is None:
            continue
        want = _STRING if feature.is_categorical else _FLOAT
        if node.type != want:
            problems.append(f"input {feature.name!r} is {node.type}, the schema needs {want}")
        if len(node.shape) != 2 or node.shape[1] != 1:
            problems.append(f"input {feature.name!r} has shape {node.shape}, not [n, 1]")
    return problems


def _output_problems(session: ort.InferenceSession, task: Task) -> list[str]:
    problems: list[str] = []
    outputs = {o.name: o for o in session.get_outputs()}
    wanted = (
        ((LABEL_OUTPUT, "tensor(int64)"), (PROBABILITIES_OUTPUT, _FLOAT))
        if task.is_classifier
        else ((PREDICTION_OUTPUT, _FLOAT),)
    )
    for name, want in wanted:
        if name not in outputs:
            problems.append(f"output {name!r} is missing (outputs: {sorted(outputs)}; a {task.kind} model)")
        elif outputs[name].type != want:
            problems.append(f"output {name!r} is {outputs[name].type}, not {want}")
    probabilities = outputs.get(PROBABILITIES_OUTPUT)
    if task.is_classifier and probabilities is not None:
        width = probabilities.shape[-1] if probabilities.shape else None
        if isinstance(width, int) and width != len(task.classes):
            problems.append(
                f"output {PROBABILITIES_OUTPUT!r} has {width} columns; the target has {len(task.classes)} classes"
            )
    return problems


# A model's outputs: ``(labels, probabilities)`` of a classifier, ``(values, None)`` of a regressor (core.task).
Outputs = tuple[np.ndarray, np.ndarray | None]


class OnnxModel:
    """A model exported by ``io.onnx_export``, checked against the schema (features and task) it must serve.

    Either graph: one ``[n, 1]`` input per feature (``model.onnx``), or ``grouped`` (``serving.onnx``): the
    inputs ``numeric`` ``[n, k]`` and ``categorical`` ``[n, m]``, columns in schema order.
    """

    def __init__(self, session: ort.InferenceSession, schema: DatasetSchema) -> None:
        self.grouped = _is_grouped(session)
        problems = (_grouped_problems if self.grouped else _signature_problems)(session, schema)
        problems += _output_problems(session, schema.task)
        if problems:
            raise ExportError(f"the ONNX model does not match schema {schema.name!r}: " + "; ".join(problems))
        self._session = session
        self._schema = schema
        self.task = schema.task
        self._outputs = list(CLASSIFIER_OUTPUTS if self.task.is_classifier else REGRESSOR_OUTPUTS)
        # The inputs were checked against the schema above, and onnxruntime's C++ side still refuses a feed
        # that lacks one: skip the Python wrapper's per-call input check (1.3 µs of a 7.6 µs one-row run).
        binding = getattr(session, "_sess", None)
        self._run = binding.run if binding is not None else session.run
        self._groups = tuple(i.name for i in session.get_inputs()) if self.grouped else ()

    @classmethod
    def from_bytes(cls, model_bytes: bytes, schema: DatasetSchema, intra_op_num_threads: int = 0) -> OnnxModel:
        """Load on the CPU provider. ``intra_op_num_threads`` 0 lets onnxruntime choose.

        A single-threaded session (1: the server's) also goes without onnxruntime's CPU memory arena: for
        the small tensors of a one-row run plain malloc is cheaper (6.1 instead of 6.6 µs for churn's grouped
        graph); for 1,000 rows it makes no difference.

        Raises:
            ExportError: the bytes are not a loadable ONNX model, or its inputs/outputs do not fit the schema.
        """
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        if intra_op_num_threads == 1:
            options.enable_cpu_mem_arena = False
        try:
            session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind exception types, one per failure kind
            raise ExportError(f"onnxruntime cannot load the model: {exc}") from exc
        return cls(session, schema)

    @property
    def schema(self) -> DatasetSchema:
        return self._schema

    @property
    def session(self) -> ort.InferenceSession:
        return self._session

    def run(self, feed: dict[str, np.ndarray]) -> Outputs:
        """The outputs for a ready feed, its arrays named after the graph's inputs (the hot path)."""
        results = self._run(self._outputs, feed, None)
        if len(results) == 2:
            return results[0], results[1]
        return results[0].reshape(-1), None

    def grouped_feed(self, numeric: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
        """The feed of a grouped graph: the ``(n, k)`` numeric and ``(n, m)`` categorical matrices it takes."""
        if len(self._groups) == 2:
            return {NUMERIC_INPUT: numeric, CATEGORICAL_INPUT: categorical}
        return {name: numeric if name == NUMERIC_INPUT else categorical for name in self._groups}

    def predict(self, model_frame: pd.DataFrame) -> Outputs:
        """The outputs (see ``Outputs``) for a frame from ``to_model_frame``."""
        from driftloop.core.features import onnx_feed  # pandas: training and tests, not the serving path

        schema = self._schema
        if self.grouped:
            feed = self.grouped_feed(
                model_frame[schema.numeric].to_numpy(dtype=np.float32),
                model_frame[schema.categorical].to_numpy(dtype=object),
            )
        else:
            feed = onnx_feed(model_frame, schema)
        results = self._session.run(self._outputs, feed)
        if len(results) == 2:
            return results[0], results[1]
        return results[0].reshape(-1), None
