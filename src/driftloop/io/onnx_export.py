"""Convert a fitted driftloop Pipeline to ONNX bytes with skl2onnx (training side only)."""

from __future__ import annotations

import hashlib

from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from driftloop.core.pipeline import estimator_name
from driftloop.core.schema import DatasetSchema
from driftloop.errors import ExportError
from driftloop.io.onnx_runtime import LABEL_OUTPUT, PROBABILITIES_OUTPUT

_PROTOBUF_HINT = "Expected an int, got a boolean"


def export_onnx(pipeline: Pipeline, schema: DatasetSchema) -> bytes:
    """The serialized ONNX model: one ``[None, 1]`` input per feature, outputs ``label`` and ``probabilities``.

    Inputs are named after the schema's features: string tensors for categoricals, float32 for the rest
    (the frame ``core.features.to_model_frame`` makes). ``label`` is int64 ``(n,)``, ``probabilities``
    float32 ``(n, 2)`` (no ZipMap).

    Raises:
        ExportError: the pipeline is not fitted or skl2onnx cannot convert it.
    """
    name = estimator_name(pipeline)
    try:
        check_is_fitted(pipeline)
    except NotFittedError as exc:
        raise ExportError(f"cannot export the {name} pipeline to ONNX: it is not fitted") from exc

    initial_types = [
        (f.name, StringTensorType([None, 1]) if f.is_categorical else FloatTensorType([None, 1]))
        for f in schema.features
    ]
    try:
        model = convert_sklearn(
            pipeline,
            initial_types=initial_types,
            options={"zipmap": False},
            # skl2onnx names the graph with a random UUID otherwise, and the same model would hash differently.
            name=f"driftloop_{schema.name}_{name}",
        )
    except Exception as exc:  # skl2onnx raises anything from RuntimeError to TypeError; all mean "cannot convert"
        cause = f"{type(exc).__name__}: {exc}"
        if _PROTOBUF_HINT in cause or _PROTOBUF_HINT in str(exc.__cause__):
            cause += " (skl2onnx 1.20 needs protobuf<7 for tree ensembles)"
        raise ExportError(f"cannot export the {name} pipeline to ONNX: {cause}") from exc

    outputs = [o.name for o in model.graph.output]
    if outputs[:2] != [LABEL_OUTPUT, PROBABILITIES_OUTPUT]:
        raise ExportError(
            f"the {name} pipeline converted with outputs {outputs}, not [{LABEL_OUTPUT!r}, {PROBABILITIES_OUTPUT!r}]"
        )
    return model.SerializeToString()


def onnx_sha256(model_bytes: bytes) -> str:
    """Hex SHA-256 of the serialized model: the identity serving reports and lineage records."""
    return hashlib.sha256(model_bytes).hexdigest()
