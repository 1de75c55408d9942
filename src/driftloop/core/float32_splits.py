"""A fitted tree model's split thresholds as float32 inputs see them, so its ONNX graph splits the same rows.

scikit-learn compares each input, a float32 value (``core.features.to_model_frame``), with a float64 threshold;
ONNX's tree ensemble compares it with that threshold rounded to the nearest float32. A threshold midway between two
data values one float32 step apart (histogram boosting's bins and a tree's candidate splits are such midpoints) can
round up to the upper value, and a row holding it then goes left in ONNX and right in scikit-learn: the parity check
fails now and then on continuous data (trial 14: 2 of 2,660 holdout rows, |Δp| 0.04). Each threshold becomes the
largest float32 at or below it. No float32 value lies between the two, so no answer of the fitted model changes, and
the export has nothing left to round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from driftloop.core.pipeline import is_driftloop_pipeline


def snap_fitted_pipeline(pipeline: Pipeline) -> int:
    """``snap_to_float32`` on the model of a fitted pipeline that driftloop's own preprocessing feeds; the count moved.

    Only then are the model's inputs known to be float32 values (imputed numbers, one-hot 0/1). A user's own
    preprocessing may scale them, between a threshold and its float32, where a moved threshold would change answers.
    """
    return snap_to_float32(pipeline.steps[-1][1]) if is_driftloop_pipeline(pipeline) else 0


def float32_threshold(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each threshold, as float64: ``x <= t`` iff ``x <= result`` for float32 x."""
    with np.errstate(over="ignore"):  # beyond float32's range: inf, then float32's largest below
        rounded = np.asarray(thresholds, dtype=np.float64).astype(np.float32)
    above = rounded.astype(np.float64) > thresholds
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded.astype(np.float64)


def snap_to_float32(model: Any) -> int:
    """Set the thresholds of scikit-learn's fitted trees in ``model`` to ``float32_threshold`` of themselves.

    Trees (``tree_``), their ensembles (``estimators_``: forests, gradient boosting) and histogram gradient boosting
    (``_predictors``) are changed in place; any other model is left as it is. The number of thresholds moved.
    """
    moved = 0
    if (tree := getattr(model, "tree_", None)) is not None and hasattr(tree, "threshold"):
        moved += _snap(tree.threshold)
    for predictors in getattr(model, "_predictors", None) or ():
        for predictor in predictors:
            moved += _snap(predictor.nodes["num_threshold"])
    estimators = getattr(model, "estimators_", None)
    if estimators is not None:
        for member in np.asarray(estimators, dtype=object).ravel():
            moved += snap_to_float32(member)
    return moved


def _snap(thresholds: np.ndarray) -> int:
    snapped = float32_threshold(thresholds)
    moved = int(np.count_nonzero((snapped != thresholds) & ~np.isnan(thresholds)))
    thresholds[:] = snapped  # the model's own array: trees keep no copy
    return moved
