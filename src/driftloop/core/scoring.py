"""Batch scoring's pure part: which rows a model can score (and why not), and the table its answers make.

A bad row is not fatal to a batch: it is set aside with its reason, and the rest is scored. The rules are the
schema's, row by row, as ``core.feature_rules`` states them for a snapshot's validation too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from driftloop.core.feature_rules import broken_rules
from driftloop.core.schema import DatasetSchema, Feature
from driftloop.core.task import Task
from driftloop.errors import DatasetError

REASON_COLUMN = "driftloop_reason"
PREDICTION_COLUMN = "prediction"
VERSION_COLUMN = "model_version"


def output_columns(task: Task) -> list[str]:
    """The columns the scored rows get besides their keys (``answers_frame``)."""
    probabilities = [f"probability_{name}" for name in task.classes] if task.is_classifier else []
    return [PREDICTION_COLUMN, *probabilities, VERSION_COLUMN]


def require_input_columns(columns: Sequence[str], keys: Sequence[str], schema: DatasetSchema, source: str) -> list[str]:
    """The key columns to keep (each once), checked with the model's features before any row is scored.

    Raises:
        DatasetError: A key column is not a column of ``source`` or has the name of an output column, or a
            feature is not a column of ``source``.
    """
    unique = list(dict.fromkeys(keys))
    missing = [k for k in unique if k not in columns]
    if missing:
        raise DatasetError(f"key column {missing[0]!r} is not a column of {source} (columns: {', '.join(columns)})")
    outputs = output_columns(schema.task)
    taken = [k for k in unique if k in outputs]
    if taken:
        raise DatasetError(
            f"key column {taken[0]!r} has the name of an output column ({', '.join(outputs)}): rename it in the input"
        )
    absent = [name for name in schema.feature_names if name not in columns]
    if absent:
        raise DatasetError(f"{source} lacks the model's feature(s) {', '.join(map(repr, absent))}")
    return unique


def row_problems(frame: pd.DataFrame, schema: DatasetSchema) -> pd.Series:
    """Per row, why the model cannot score it ("" when it can); the first problem of each row is named.

    A feature missing from the frame is a problem of every row. Vectorized: each check is a boolean mask, and a
    row's first failing check is kept as a code; only the bad rows' texts are built.
    """
    rows = len(frame)
    first = np.full(rows, -1, dtype=np.int64)
    texts: list[str] = []
    for feature in schema.features:
        checks = (
            [(np.ones(rows, dtype=bool), f"{feature.name}: column missing")]
            if feature.name not in frame.columns
            else _feature_checks(frame[feature.name], feature)
        )
        for bad, text in checks:
            fresh = bad & (first < 0)
            if fresh.any():
                first[fresh] = len(texts)
            texts.append(text)
    reasons = np.full(rows, "", dtype=object)
    flagged = first >= 0
    reasons[flagged] = np.asarray(texts, dtype=object)[first[flagged]]
    return pd.Series(reasons, index=frame.index, dtype=object)


def _feature_checks(values: pd.Series, feature: Feature) -> list[tuple[np.ndarray, str]]:
    """Each of the feature's rules as (rows that break it, the reason), in the order they are reported."""
    return [(broken.rows, broken.reason(feature)) for broken in broken_rules(values, feature)]


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


def id_text(value: object) -> str:
    """An id as text, the same whether it was read as a number or as text: how late labels find their rows.

    An id column of numbers read from a CSV is int64, or float64 where one is missing: 17.0 is the id "17".
    """
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
