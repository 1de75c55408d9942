"""core.float32_splits: a tree model's thresholds moved to float32, so its ONNX export splits the rows sklearn does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.float32_splits import float32_threshold, snap_fitted_pipeline
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.io.onnx_export import export_onnx
from driftloop.io.onnx_runtime import OnnxModel

SCHEMA = DatasetSchema.model_validate(
    {
        "name": "close-values",
        "target": {"name": "y", "classes": ["low", "high"], "positive": "high"},
        "features": [
            {"name": "x", "kind": "numeric"},
            {"name": "plan", "kind": "categorical", "categories": ["a", "b"]},
        ],
    }
)


def test_a_float32_input_falls_on_the_same_side_of_the_moved_threshold() -> None:
    rng = np.random.default_rng(3)
    thresholds = rng.normal(0, 1e3, 20_000)
    thresholds[:4] = [-2.0, 0.0, 1e39, -np.inf]  # a leaf's -2, exact values, beyond float32's range
    moved = float32_threshold(thresholds)
    assert moved[2] == np.finfo(np.float32).max
    assert np.array_equal(moved.astype(np.float32).astype(np.float64), moved)  # nothing left for ONNX to round
    assert np.all(moved <= thresholds)
    with np.errstate(over="ignore"):
        below = thresholds.astype(np.float32)
    for x in (below, np.nextafter(below, np.float32(np.inf)), np.nextafter(below, np.float32(-np.inf))):
        finite = np.isfinite(x)
        assert np.array_equal((x <= thresholds)[finite], (x <= moved)[finite])


def _rows_one_float32_step_apart(seed: int) -> pd.DataFrame:
    """Pairs of values one float32 step apart with different labels: each split lies midway between a pair.

    The lower value has an odd last bit, so the midpoint rounds (half to even) up to the upper value in float32.
    """
    rng = np.random.default_rng(seed)
    lower = np.sort(rng.uniform(1, 100, 60).astype(np.float32))
    lower = lower.view(np.int32) | 1  # an odd last bit
    lower_values = lower.view(np.float32)
    upper_values = np.nextafter(lower_values, np.float32(np.inf))
    x = np.concatenate([np.repeat(lower_values, 20), np.repeat(upper_values, 20)])
    y = np.where(np.arange(len(x)) < len(x) // 2, "low", "high")
    return pd.DataFrame({"x": x.astype(np.float64), "plan": rng.choice(["a", "b"], len(x)), "y": y})


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "random_forest", "gradient_boosting"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_export_answers_as_the_fitted_model_once_its_thresholds_are_moved(estimator: str, seed: int) -> None:
    rows = _rows_one_float32_step_apart(seed)
    features, target = to_model_frame(rows, SCHEMA), encode_target(rows["y"], SCHEMA)

    def fitted() -> object:
        return build_pipeline(SCHEMA, estimator, seed=seed).fit(features, target)

    def mismatches(pipeline: object) -> int:
        """Rows whose probabilities differ beyond the parity check's tolerance."""
        _, onnx = OnnxModel.from_bytes(export_onnx(pipeline, SCHEMA), SCHEMA).predict(features)  # type: ignore[arg-type]
        sklearn = pipeline.predict_proba(features)  # type: ignore[attr-defined]
        return int(np.count_nonzero(np.abs(np.asarray(onnx) - sklearn).max(axis=1) > 1e-5))

    if estimator == "hist_gradient_boosting":
        # The failure trial 14 met, made certain: rows on a rounded-up threshold. The forest's and gradient
        # boosting's exports already split these rows as sklearn does (measured); moving theirs must not hurt.
        assert mismatches(fitted()) > 0
    snapped = fitted()
    before = snapped.predict(features)
    assert snap_fitted_pipeline(snapped) > 0
    assert np.array_equal(snapped.predict(features), before)  # the fitted model answers as before
    assert mismatches(snapped) == 0
