"""The baseline graph: skl2onnx's conversion of the whole Pipeline, as driftloop exported it before.

skl2onnx turns the ColumnTransformer into about 75 nodes for the churn schema (per categorical column an
ArrayFeatureExtractor, two LabelEncoders, a Cast, a Where, a Gather and a OneHotEncoder). Same inputs and outputs
as ``driftloop.io.onnx_export.export_onnx``.
"""

from __future__ import annotations

from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from driftloop.core.schema import DatasetSchema


def convert_whole_pipeline(pipeline: Pipeline, schema: DatasetSchema) -> bytes:
    initial_types = [
        (f.name, StringTensorType([None, 1]) if f.is_categorical else FloatTensorType([None, 1]))
        for f in schema.features
    ]
    model = convert_sklearn(pipeline, initial_types=initial_types, options={"zipmap": False}, name="baseline")
    return model.SerializeToString()
