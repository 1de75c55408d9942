"""Batch scoring's pure part: which rows a model can score (and why not), and the table its answers make.

A bad row is not fatal to a batch: it is set aside with its reason, and the rest is scored. The rules are the
schema's, row by row: a missing value where the feature is not nullable, a value that is not a number, a binary
feature other than 0/1, a number outside [min, max], a category outside a declared list that refuses others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from driftloop.core.schema import DatasetSchema, Feature, FeatureKind
from driftloop.core.task import Task

REASON_COLUMN = "driftloop_reason"
PREDICTION_COLUMN = "prediction"
VERSION_COLUMN = "model_version"


def row_problems(frame: pd.DataFrame, schema: DatasetSchema) -> pd.Series:
    """Per row, why the model cannot score it ("" when it can); the first problem of each row is named.

    A feature missing from the frame is a problem of every row.
    """
    reasons = pd.Series("", index=frame.index, dtype=object)
    for feature in schema.features:
        if feature.name not in frame.columns:
            reasons[reasons == ""] = f"{feature.name}: column missing"
            continue
        problem = _feature_problem(frame[feature.name], feature)
        reasons = reasons.where(reasons != "", problem)
    return reasons


def _feature_problem(values: pd.Series, feature: Feature) -> pd.Series:
    """Per row, this feature's problem ("" when none)."""
    name = feature.name
    problem = pd.Series("", index=values.index, dtype=object)
    missing = values.isna().to_numpy()
    if not feature.nullable:
        problem[missing] = f"{name}: missing"
    if feature.is_categorical:
        if feature.refuses_unlisted:
            listed = {str(c) for c in feature.categories or ()}
            unknown = ~missing & ~values.astype(str).isin(listed).to_numpy()
            problem[unknown & (problem == "").to_numpy()] = f"{name}: not one of the declared categories"
        return problem
    numbers = pd.to_numeric(values, errors="coerce")
    free = (problem == "").to_numpy()
    not_number = ~missing & numbers.isna().to_numpy()
    problem[not_number & free] = f"{name}: not a number"
    present = numbers.notna().to_numpy() & ~not_number
    checks: list[tuple[np.ndarray, str]] = []
    if feature.kind is FeatureKind.BINARY:
        checks.append((present & ~numbers.isin([0, 1]).to_numpy(), f"{name}: not 0 or 1"))
    if feature.min is not None:
        checks.append((present & (numbers < feature.min).to_numpy(), f"{name}: below min {feature.min:g}"))
    if feature.max is not None:
        checks.append((present & (numbers > feature.max).to_numpy(), f"{name}: above max {feature.max:g}"))
    for bad, reason in checks:
        problem[bad & (problem == "").to_numpy()] = reason
    return problem


def answers_frame(
    keys: pd.DataFrame, task: Task, labels: np.ndarray, probabilities: np.ndarray | None, version: str
) -> pd.DataFrame:
    """The scored rows: the key columns, ``prediction`` (class name or value), one probability column per class."""
    out = keys.reset_index(drop=True).copy()
    if task.is_classifier:
        out[PREDICTION_COLUMN] = np.asarray(task.classes, dtype=object)[np.asarray(labels, dtype=np.int64)]
        if probabilities is not None:
            for index, name in enumerate(task.classes):
                out[f"probability_{name}"] = np.asarray(probabilities[:, index], dtype=np.float64)
    else:
        out[PREDICTION_COLUMN] = np.asarray(labels, dtype=np.float64).reshape(-1)
    out[VERSION_COLUMN] = version
    return out


def key_columns(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The frame's key columns (what identifies a row in the output), checked present."""
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise KeyError(f"key column(s) {missing} are not in the input (columns: {list(frame.columns)})")
    return frame[list(keys)]
