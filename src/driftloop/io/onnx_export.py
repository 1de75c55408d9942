"""Convert a fitted driftloop Pipeline to ONNX bytes (training side only).

The preprocessing is written by ``io.onnx_preprocess`` (9 or 10 nodes where skl2onnx makes about 75); skl2onnx
converts the estimator alone, on the preprocessed float features. The two are joined into one graph whose
inputs are the schema's features, so the registered model stays the contract MLflow's pyfunc and every client
know: one ``[None, 1]`` input per feature.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import GraphProto, ModelProto, helper
from skl2onnx import convert_sklearn, get_model_alias
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_is_fitted

from driftloop.core.pipeline import estimator_name, is_driftloop_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.core.task import Task
from driftloop.errors import ExportError
from driftloop.io.onnx_converters import register_optional_converters
from driftloop.io.onnx_preprocess import CATEGORICAL_VALUES, NUMERIC_VALUES, PREFIX, preprocess_graph
from driftloop.io.onnx_runtime import (
    CATEGORICAL_INPUT,
    GROUPED_COLUMNS_METADATA,
    LABEL_OUTPUT,
    NUMERIC_INPUT,
    PREDICTION_OUTPUT,
    PROBABILITIES_OUTPUT,
    OnnxModel,
)

_PROTOBUF_HINT = "Expected an int, got a boolean"
# skl2onnx's SimpleImputer converter on a text column whose missing_values is not text.
_TEXT_IMPUTER_HINT = "missing values are string"
# io.user_model loads a --model file as a module of this prefix.
USER_MODULE_PREFIX = "driftloop_user_model_"
_ESTIMATOR_PREFIX = "driftloop_model_"
# Equal on strings needs opset 19; onnxruntime 1.20 (the oldest the project allows) runs opset 21.
_OPSET = 21


def check_convertible(estimator: BaseEstimator) -> None:
    """Raise before any fitting if skl2onnx has no converter for ``estimator`` or, in a Pipeline, any of its steps.

    Raises:
        ExportError: with skl2onnx's own words and what to do.
    """
    register_optional_converters()
    for part in _parts(estimator):
        if isinstance(part, FunctionTransformer) and part.func is not None:
            # skl2onnx has a converter, which refuses at export, after the fit: ONNX cannot run a Python function.
            function = getattr(part.func, "__name__", repr(part.func))
            raise ExportError(
                f"FunctionTransformer({function}) cannot be exported to ONNX: skl2onnx converts a FunctionTransformer "
                "only without a function, as ONNX cannot run Python code. Transform the column in your data (and in "
                "what you send to the server), or use a step skl2onnx supports (skl2onnx.supported_converters())"
            )
        try:
            get_model_alias(type(part))
        except RuntimeError as error:
            # A class from a --model file lives in a module named after the file's hash: its own name says more.
            module = type(part).__module__
            shown = type(part).__name__ if module.startswith(USER_MODULE_PREFIX) else f"{module}.{type(part).__name__}"
            raise ExportError(
                f"{shown} cannot be exported to ONNX: skl2onnx says "
                f"{str(error).strip()!r}. Register a converter for it (skl2onnx.update_registered_converter) in the "
                "module of your factory, or use a step skl2onnx supports (skl2onnx.supported_converters())"
            ) from None


def _parts(estimator: Any) -> list[Any]:
    """``estimator`` and, for a Pipeline, ColumnTransformer or FeatureUnion, every step inside it."""
    if isinstance(estimator, Pipeline):
        return [part for _, step in estimator.steps if step not in (None, "passthrough") for part in _parts(step)]
    if isinstance(estimator, ColumnTransformer):
        inner = [step for _, step, _ in estimator.transformers if step not in ("drop", "passthrough")]
        return [estimator, *(part for step in inner for part in _parts(step))]
    if isinstance(estimator, FeatureUnion):
        inner = [step for _, step in estimator.transformer_list if step not in ("drop", "passthrough")]
        return [estimator, *(part for step in inner for part in _parts(step))]
    return [estimator]


def export_onnx(pipeline: Pipeline, schema: DatasetSchema) -> bytes:
    """The serialized ONNX model: one ``[None, 1]`` input per feature, and the outputs of the schema's task.

    Inputs are named after the schema's features: string tensors for categoricals, float32 for the rest
    (the frame ``core.features.to_model_frame`` makes). A classifier's outputs are ``label`` int64 ``(n,)`` and
    ``probabilities`` float32 ``(n, k)``, one column per class (no ZipMap); a regressor's is ``prediction``
    float32 ``(n, 1)``.

    Raises:
        ExportError: the pipeline is not fitted, is not one ``build_pipeline`` makes, or skl2onnx cannot
            convert its estimator.
    """
    register_optional_converters()
    name = estimator_name(pipeline)
    try:
        check_is_fitted(pipeline)
    except NotFittedError as exc:
        raise ExportError(f"cannot export the {name} pipeline to ONNX: it is not fitted") from exc
    clashes = sorted(f for f in schema.feature_names if f.startswith((PREFIX, _ESTIMATOR_PREFIX)))
    clashes += [f for f in (LABEL_OUTPUT, PROBABILITIES_OUTPUT, PREDICTION_OUTPUT) if f in schema.feature_names]
    if clashes:
        raise ExportError(f"feature name(s) {clashes} clash with the ONNX graph's own names")
    if not is_driftloop_pipeline(pipeline):
        return _checked(_convert_whole(pipeline, name, schema), name)

    preprocess = preprocess_graph(pipeline.steps[0][1])
    estimator = _convert_estimator(pipeline, name, preprocess.width, schema.task)
    _rename_internals(estimator.graph, preprocess.output)
    graph = helper.make_graph(
        [*preprocess.nodes, *estimator.graph.node],
        f"driftloop_{schema.name}_{name}",
        [
            helper.make_tensor_value_info(
                f.name, onnx.TensorProto.STRING if f.is_categorical else onnx.TensorProto.FLOAT, [None, 1]
            )
            for f in schema.features
        ],
        list(estimator.graph.output),
        [*preprocess.initializers, *estimator.graph.initializer],
    )
    opsets = {o.domain: o.version for o in estimator.opset_import}
    opsets[""] = max(opsets.get("", 0), _OPSET)
    opsets.setdefault("ai.onnx.ml", 1)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items())],
        ir_version=estimator.ir_version,
        producer_name="driftloop",
    )
    return _checked(model, name)


def _checked(model: ModelProto, name: str) -> bytes:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError and shape-inference errors alike
        raise ExportError(f"the exported {name} graph is not valid ONNX: {exc}") from exc
    return model.SerializeToString()


def _convert_whole(pipeline: Pipeline, name: str, schema: DatasetSchema) -> ModelProto:
    """A user's whole Pipeline (their own preprocessing): skl2onnx converts it all, one input per feature."""
    inputs = [
        (f.name, StringTensorType([None, 1]) if f.is_categorical else FloatTensorType([None, 1]))
        for f in schema.features
    ]
    return _convert(pipeline, pipeline.steps[-1][1], name, inputs, schema.task)


def _convert_estimator(pipeline: Pipeline, name: str, width: int, task: Task) -> ModelProto:
    """The final estimator alone, on the preprocessed float features."""
    estimator = pipeline.steps[-1][1]
    return _convert(estimator, estimator, name, [("features", FloatTensorType([None, width]))], task)


def _convert(
    model: BaseEstimator, estimator: BaseEstimator, name: str, inputs: list[tuple[str, Any]], task: Task
) -> ModelProto:
    """``model`` converted with skl2onnx; ``estimator`` is its final step, checked against the task first."""
    if task.is_classifier:
        learned = [int(c) for c in getattr(estimator, "classes_", ())]
        if learned != list(range(len(task.classes))):
            raise ExportError(
                f"the {name} pipeline learned classes {learned}; the target's {len(task.classes)} classes are "
                f"{list(range(len(task.classes)))} (is the estimator a {task.kind} classifier?)"
            )
    elif not hasattr(estimator, "predict") or hasattr(estimator, "predict_proba"):
        raise ExportError(f"the {name} pipeline is a classifier; the target is a regression target")
    try:
        converted: ModelProto = convert_sklearn(
            model,
            initial_types=inputs,
            options={id(estimator): {"zipmap": False}} if task.is_classifier else None,
            target_opset={"": _OPSET, "ai.onnx.ml": 3},
            # skl2onnx names the graph with a random UUID otherwise, and the same model would hash differently.
            name=f"driftloop_{name}",
        )
    except Exception as exc:  # skl2onnx raises anything from RuntimeError to TypeError; all mean "cannot convert"
        cause = f"{type(exc).__name__}: {exc}"
        if _PROTOBUF_HINT in cause or _PROTOBUF_HINT in str(exc.__cause__):
            cause += " (skl2onnx 1.20 needs protobuf<7 for tree ensembles)"
        if _TEXT_IMPUTER_HINT in cause:
            cause = cause.rstrip(".") + (
                '. A Pipeline gets a categorical feature\'s missing values as "" (the empty string), as the served '
                'graph does: impute text columns with SimpleImputer(missing_values="", ...)'
            )
        raise ExportError(f"cannot export the {name} pipeline to ONNX: {cause}") from exc
    outputs = [o.name for o in converted.graph.output]
    if not task.is_classifier:
        if len(outputs) != 1:
            raise ExportError(f"the {name} regressor converted with outputs {outputs}, not one output of values")
        _rename_output(converted.graph, outputs[0], PREDICTION_OUTPUT)
    elif outputs[:2] != [LABEL_OUTPUT, PROBABILITIES_OUTPUT]:
        raise ExportError(
            f"the {name} pipeline converted with outputs {outputs}, not [{LABEL_OUTPUT!r}, {PROBABILITIES_OUTPUT!r}]"
        )
    return converted


def _rename_output(graph: GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
    graph.output[0].name = new


def _rename_internals(graph: GraphProto, features: str) -> None:
    """Give the estimator's intermediate names a prefix of their own and feed it the preprocessed features.

    skl2onnx names intermediates ``variable``, ``shape_tensor`` ...: a feature could be called that.
    """
    keep = {o.name for o in graph.output}
    renamed = {graph.input[0].name: features}
    for node in graph.node:
        for output in node.output:
            if output and output not in keep:
                renamed[output] = _ESTIMATOR_PREFIX + output
    for initializer in graph.initializer:
        renamed[initializer.name] = _ESTIMATOR_PREFIX + initializer.name
        initializer.name = renamed[initializer.name]
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]


def grouped_onnx(model_bytes: bytes) -> bytes:
    """The graph ``export_onnx`` made, fed by two inputs instead of one per feature: what the server runs.

    ``numeric`` float32 ``[None, k]`` and ``categorical`` string ``[None, m]`` take the place of the two Concat
    nodes that gathered the per-feature inputs; every other node is the same, so the outputs are identical.
    onnxruntime's cost per input is most of a one-row prediction's (churn, logistic regression: 15 µs with 19
    inputs, 6 µs with 2; ``bench/bench_onnx.py``). The column order of each input is in the model's metadata
    (``GROUPED_COLUMNS_METADATA``).

    Raises:
        ExportError: the graph was not made by ``export_onnx`` (it has no such Concat nodes).
    """
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    features = {i.name for i in graph.input}
    gathering = {
        node.output[0]: node
        for node in graph.node
        if node.op_type == "Concat" and node.output[0] in (NUMERIC_VALUES, CATEGORICAL_VALUES)
    }
    inputs, renamed, columns = [], {}, {}
    for values, name, kind in (
        (NUMERIC_VALUES, NUMERIC_INPUT, onnx.TensorProto.FLOAT),
        (CATEGORICAL_VALUES, CATEGORICAL_INPUT, onnx.TensorProto.STRING),
    ):
        node = gathering.get(values)
        if node is None:
            continue
        columns[name] = list(node.input)
        inputs.append(helper.make_tensor_value_info(name, kind, [None, len(node.input)]))
        renamed[values] = name
    nodes = [node for node in graph.node if node.output[0] not in gathering]
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    gathered = [name for group in columns.values() for name in group]
    if not gathering or sorted(gathered) != sorted(features) or any(set(n.input) & features for n in nodes):
        raise ExportError("the graph does not gather its inputs the way export_onnx does; cannot group them")
    grouped = helper.make_model(
        helper.make_graph(nodes, graph.name, inputs, list(graph.output), list(graph.initializer)),
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
        producer_name=model.producer_name,
    )
    helper.set_model_props(
        grouped, {GROUPED_COLUMNS_METADATA[name]: json.dumps(group) for name, group in columns.items()}
    )
    try:
        onnx.checker.check_model(grouped, full_check=True)
    except Exception as exc:  # onnx raises ValidationError and shape-inference errors alike
        raise ExportError(f"the grouped graph is not valid ONNX: {exc}") from exc
    return grouped.SerializeToString()


def proven_grouped_onnx(
    model_bytes: bytes,
    schema: DatasetSchema,
    frame: pd.DataFrame,
    expected: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> bytes:
    """``grouped_onnx``, once it has scored ``frame`` (from ``to_model_frame``) exactly as ``model_bytes`` does.

    ``expected``: ``model_bytes``' own outputs on ``frame`` (``OnnxModel.predict``), when the caller has them.

    Raises:
        ExportError: the grouped graph cannot be made or run, or its outputs differ in any value.
    """
    grouped = grouped_onnx(model_bytes)
    try:
        if expected is None:
            expected = OnnxModel.from_bytes(model_bytes, schema).predict(frame)
        got = OnnxModel.from_bytes(grouped, schema).predict(frame)
    except ExportError:
        raise
    except Exception as exc:  # onnxruntime raises its own types for a graph it cannot run
        raise ExportError(f"the grouped graph does not run: {exc}") from exc
    for want, have in zip(expected, got, strict=True):
        if want is None or have is None:
            continue
        if not np.array_equal(want, have):
            worst = float(np.max(np.abs(want - have))) if want.shape == have.shape else float("inf")
            raise ExportError(f"the grouped graph scores {len(frame)} rows differently (max |Δ| {worst:.3g})")
    return grouped


def onnx_sha256(model_bytes: bytes) -> str:
    """Hex SHA-256 of the serialized model: the identity serving reports and lineage records."""
    return hashlib.sha256(model_bytes).hexdigest()
