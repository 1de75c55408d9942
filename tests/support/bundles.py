"""Real model bundles for serving tests, made in a fraction of a second.

A logistic regression fitted on a few hundred churn rows, exported with the project's own code as the training flow
does it (``export_onnx``, ``proven_grouped_onnx``, ``build_selfcheck`` on the first holdout rows), and written in the
layout a server reads (``io/bundle.py``): ``model.onnx`` and ``extra_files/`` as MLflow logs them, plus
``model_info.json`` as an image holds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftloop.core import lineage
from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.io.bundle import ModelInfo, write_model_info
from driftloop.io.datasets import load_schema, read_snapshot
from driftloop.io.onnx_export import export_onnx, proven_grouped_onnx
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.tracking import build_selfcheck
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA
from tests.support.worlds import world, world_schema

SELFCHECK_ROWS = 16  # as tasks/model.py records
SELFCHECK_TOLERANCE = 1e-5


@dataclass(frozen=True)
class TrainedModel:
    """One fitted model's graphs, and the holdout rows (raw and as the model takes them) with its ONNX outputs."""

    schema: DatasetSchema
    onnx_bytes: bytes
    serving_onnx_bytes: bytes
    raw_holdout: pd.DataFrame
    holdout: pd.DataFrame
    labels: np.ndarray  # a regressor's: its values
    probabilities: np.ndarray | None  # a regressor's: None

    def selfcheck(self) -> dict[str, Any]:
        """The self-check sample and the outputs recorded for it, as registration writes ``selfcheck.json``."""
        return build_selfcheck(
            self.holdout.head(SELFCHECK_ROWS),
            self.labels[:SELFCHECK_ROWS],
            None if self.probabilities is None else self.probabilities[:SELFCHECK_ROWS],
            SELFCHECK_TOLERANCE,
            value_buckets=None if self.probabilities is not None else sorted(set(self.labels.tolist()))[::20],
        )

    def records(self, n: int, start: int = 0) -> list[dict[str, Any]]:
        """Holdout rows as a client sends them: JSON values, None where a value is missing, no label."""
        rows = self.raw_holdout[self.schema.feature_names].iloc[start : start + n]
        return [dict(r) for r in rows.astype(object).where(rows.notna(), None).to_dict(orient="records")]


def train_model(rows: int = 600, seed: int = 0, holdout_rows: int = 200) -> TrainedModel:
    """A logistic regression on ``rows`` churn rows drawn with ``seed``; the holdout is the next rows not drawn."""
    schema = load_schema(BUNDLED_SCHEMA)
    raw = read_snapshot(BUNDLED_DATA)
    train = raw.sample(rows, random_state=seed)
    raw_holdout = raw.drop(train.index).head(holdout_rows)
    pipeline = build_pipeline(schema, seed=seed).fit(
        to_model_frame(train, schema), encode_target(train[schema.target.name], schema)
    )
    onnx_bytes = export_onnx(pipeline, schema)
    holdout = to_model_frame(raw_holdout, schema)
    labels, probabilities = OnnxModel.from_bytes(onnx_bytes, schema).predict(holdout)
    return TrainedModel(
        schema=schema,
        onnx_bytes=onnx_bytes,
        serving_onnx_bytes=proven_grouped_onnx(onnx_bytes, schema, holdout),
        raw_holdout=raw_holdout,
        holdout=holdout,
        labels=labels,
        probabilities=probabilities,
    )


def train_world_model(kind: str, estimator: str | None = None, rows: int = 600, seed: int = 0) -> TrainedModel:
    """A model of ``kind`` (multiclass, regression) on ``rows`` rows of the generated reference world."""
    schema = world_schema(kind)
    raw = world(rows + 200, seed, kind)
    train, raw_holdout = raw.head(rows), raw.tail(200)
    pipeline = build_pipeline(schema, estimator, seed=seed).fit(
        to_model_frame(train, schema), encode_target(train[schema.target.name], schema)
    )
    onnx_bytes = export_onnx(pipeline, schema)
    holdout = to_model_frame(raw_holdout, schema)
    first, probabilities = OnnxModel.from_bytes(onnx_bytes, schema).predict(holdout)
    return TrainedModel(
        schema=schema,
        onnx_bytes=onnx_bytes,
        serving_onnx_bytes=proven_grouped_onnx(onnx_bytes, schema, holdout),
        raw_holdout=raw_holdout,
        holdout=holdout,
        labels=first,
        probabilities=probabilities,
    )


def write_bundle(
    directory: Path,
    model: TrainedModel,
    version: str,
    *,
    name: str = "churn",
    selfcheck: dict[str, Any] | None = None,
) -> Path:
    """``model`` as version ``version`` of ``name`` in ``directory`` (created); ``selfcheck`` replaces its own.

    Another model's self-check makes a bundle that fails the server's self-check, as a corrupted or mislabelled
    version would.
    """
    extra = directory / "extra_files"
    extra.mkdir(parents=True)
    (directory / lineage.ONNX_FILE).write_bytes(model.onnx_bytes)
    (extra / lineage.SERVING_ONNX_FILE).write_bytes(model.serving_onnx_bytes)
    (extra / lineage.SCHEMA_FILE).write_text(model.schema.model_dump_json(indent=2))
    (extra / lineage.SELFCHECK_FILE).write_text(json.dumps(model.selfcheck() if selfcheck is None else selfcheck))
    write_model_info(directory, ModelInfo(name=name, version=version))
    return directory
