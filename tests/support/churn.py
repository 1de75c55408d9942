"""The bundled churn snapshot: its rows as a client sends them, and a version of it as a scoring worker gets it."""

from __future__ import annotations

import pandas as pd

from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.io.datasets import read_snapshot
from driftloop.io.onnx_export import export_onnx
from driftloop.io.partition_scoring import ScoringModel
from driftloop.settings import BUNDLED_DATA


def sample_rows(n: int, start: int = 0) -> list[dict[str, object]]:
    """``n`` rows from ``start``, without the label, as JSON records (None where a value is missing)."""
    frame = read_snapshot(BUNDLED_DATA).drop(columns=["churn"]).iloc[start : start + n]
    frame = frame.astype(object).where(frame.notna(), None)
    return [dict(r) for r in frame.to_dict(orient="records")]


def scoring_model(frame: pd.DataFrame, schema: DatasetSchema, rows: int = 600) -> ScoringModel:
    """Version "1" of churn as a scoring worker gets it: a logistic regression fitted on ``frame``'s first rows."""
    pipeline = build_pipeline(schema, "logistic_regression").fit(
        to_model_frame(frame.head(rows), schema), encode_target(frame.head(rows)["churn"], schema)
    )
    return ScoringModel("churn", "1", export_onnx(pipeline, schema), schema.model_dump_json())
