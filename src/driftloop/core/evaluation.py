"""Holdout metrics of a model for its task, and permutation importance of its raw features."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from driftloop.core.pipeline import preprocessed_columns
from driftloop.core.sampling import sample_positions, sample_positions_by_label
from driftloop.core.significance import roc_auc
from driftloop.core.task import HIGHER_IS_BETTER, Task, TaskKind

__all__ = ["HIGHER_IS_BETTER", "BINARY", "Metrics", "compute_metrics", "feature_importance", "predicted_labels"]

# The task of every model before tasks had kinds; the default where no task is given.
BINARY = Task(TaskKind.BINARY, ("0", "1"))


@dataclass(frozen=True)
class _Ranking:
    """The metric permutation importance measures the drop of, as scikit-learn's scorer of it computes it."""

    name: str  # for people
    metric: Callable[..., float]
    response: tuple[str, ...]  # the model's methods the scorer asks, the first the model has
    options: Mapping[str, str]

    def scorer(self) -> Callable[..., float]:
        """scikit-learn's scorer of this metric (``roc_auc``, ``roc_auc_ovr``, ``r2``)."""
        scorer: Callable[..., float] = skm.make_scorer(self.metric, response_method=self.response, **self.options)
        return scorer

    def outputs(self, model: object, matrix: np.ndarray, kind: TaskKind) -> np.ndarray:
        """What the scorer asks ``model`` for: a binary model's probabilities are its positive class's."""
        method = next(name for name in self.response if hasattr(model, name))
        outputs = np.asarray(getattr(model, method)(matrix))
        return outputs[:, 1] if method == "predict_proba" and kind is TaskKind.BINARY else outputs

    def score(self, y: np.ndarray, outputs: np.ndarray) -> float:
        return float(self.metric(y, outputs, **self.options))


_IMPORTANCE_RANKING = {
    TaskKind.BINARY: _Ranking("ROC AUC", roc_auc, ("decision_function", "predict_proba"), {}),
    TaskKind.MULTICLASS: _Ranking("one-vs-rest ROC AUC", skm.roc_auc_score, ("predict_proba",), {"multi_class": "ovr"}),
    TaskKind.REGRESSION: _Ranking("R²", skm.r2_score, ("predict",), {}),
}


def importance_metric(task: Task) -> str:
    """What ``feature_importance`` measures the drop of, for people."""
    return _IMPORTANCE_RANKING[task.kind].name


@dataclass(frozen=True)
class Metrics(Mapping[str, float]):
    """Scores on one labelled set, by name (``Task.metrics``): a read-only mapping, in the task's metric order."""

    table: Mapping[str, float]

    def __getitem__(self, name: str) -> float:
        return self.table[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def as_dict(self) -> dict[str, float]:
        return dict(self.table)


def predicted_labels(proba_positive: np.ndarray) -> np.ndarray:
    """A binary classifier's labels: 1 where ``proba_positive > 0.5`` (see ``Task.predicted``)."""
    return BINARY.predicted(np.asarray(proba_positive))


def task_metrics(task: Task, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Every metric of this task, plus ``rows`` (and ``positive_rate`` for binary).

    ROC AUC is NaN when the rows hold a single class (one-vs-rest: when a class has no rows or all of them).

    Raises:
        ValueError: empty or unequal-length inputs, labels outside the classes, probabilities outside
            [0, 1] or NaN, values that are not finite.
    """
    y = np.asarray(y_true).ravel() if not task.is_classifier else np.asarray(y_true).ravel().astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    rows = int(y.size)
    if rows == 0 or rows != s.shape[0]:
        raise ValueError(f"need equal, non-zero numbers of labels and scores; got {rows} and {s.shape[0]}")
    if task.kind is TaskKind.REGRESSION:
        return _regression_metrics(y.astype(np.float64), s.reshape(-1))
    if ((y < 0) | (y >= len(task.classes))).any():
        raise ValueError(f"labels must be class indices 0..{len(task.classes) - 1}")
    if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ValueError("probabilities must lie in [0, 1] and not be NaN")
    if task.kind is TaskKind.BINARY:
        return _binary_metrics(y, s.reshape(-1))
    return _multiclass_metrics(y, s, len(task.classes))


def _binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    labels = (p > 0.5).astype(np.int64)
    return {
        "roc_auc": roc_auc(y, p),
        "f1": float(skm.f1_score(y, labels, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y, labels)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "precision": float(skm.precision_score(y, labels, zero_division=0)),
        "recall": float(skm.recall_score(y, labels, zero_division=0)),
        "rows": int(y.size),
        "positive_rate": float(y.mean()),
    }


def _multiclass_metrics(y: np.ndarray, proba: np.ndarray, classes: int) -> dict[str, float]:
    if proba.ndim != 2 or proba.shape[1] != classes:
        raise ValueError(f"probabilities have shape {proba.shape}, not (n, {classes})")
    labels = np.argmax(proba, axis=1)
    every = list(range(classes))
    present = np.unique(y).size == classes
    # Rows of a model's probabilities sum to 1 up to float32 rounding; log_loss and roc_auc want them exact.
    normalised = proba / proba.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(skm.accuracy_score(y, labels)),
        "macro_f1": float(skm.f1_score(y, labels, labels=every, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y, normalised, labels=every)),
        "roc_auc_ovr": (
            float(skm.roc_auc_score(y, normalised, multi_class="ovr", labels=every)) if present else math.nan
        ),
        "rows": int(y.size),
    }


def _regression_metrics(y: np.ndarray, values: np.ndarray) -> dict[str, float]:
    if not (np.isfinite(y).all() and np.isfinite(values).all()):
        raise ValueError("targets and predictions must be finite numbers")
    return {
        "rmse": float(math.sqrt(skm.mean_squared_error(y, values))),
        "mae": float(skm.mean_absolute_error(y, values)),
        "r2": float(skm.r2_score(y, values)) if y.size > 1 else math.nan,
        "rows": int(y.size),
    }


def compute_metrics(y_true: np.ndarray, scores: np.ndarray, task: Task = BINARY) -> Metrics:
    """Every metric of ``task`` for ``scores`` (``Task.scores``) against encoded targets (``Task.encode``).

    Raises:
        ValueError: see ``task_metrics``.
    """
    return Metrics(task_metrics(task, y_true, scores))


IMPORTANCE_ROWS = 5_000  # permutation importance shuffles a seeded sample of this many holdout rows
IMPORTANCE_CLASS_FLOOR = 50  # ... to which each class short of this many rows gets its others back


def importance_sample(y: np.ndarray, seed: int, task: Task = BINARY, limit: int = IMPORTANCE_ROWS) -> np.ndarray:
    """The positions of the holdout rows permutation importance uses: all of them, or a seeded sample of ``limit``.

    A classifier's sample keeps at least ``IMPORTANCE_CLASS_FLOOR`` rows of each class (all, if it has fewer), so
    a rare class stays: without it ROC AUC is undefined (binary) or refused (one-vs-rest).
    """
    if task.is_classifier:
        return sample_positions_by_label(np.asarray(y), limit, seed, IMPORTANCE_CLASS_FLOOR)
    return sample_positions(len(y), limit, seed)


def feature_importance(
    pipeline: Pipeline,
    model_frame: pd.DataFrame,
    y: np.ndarray,
    seed: int,
    n_repeats: int = 3,
    task: Task = BINARY,
    max_rows: int = IMPORTANCE_ROWS,
) -> dict[str, float]:
    """Mean drop in the task's ranking metric (ROC AUC, one-vs-rest ROC AUC, R²) when each raw feature is shuffled.

    Raw features (the columns of ``model_frame``), not the one-hot columns the model sees, so the names
    match the schema and a categorical counts once. Largest first. On a seeded sample of about ``max_rows`` rows
    when there are more (``importance_sample``): each feature costs ``n_repeats`` predictions of every row used,
    which on a 1M-row holdout took three times the fit. A ``build_pipeline`` pipeline is shuffled after its
    preprocessing (``_shuffled_drops``), any other Pipeline by scikit-learn's ``permutation_importance`` on the raw
    frame.
    """
    if len(model_frame) > max_rows:
        picked = importance_sample(y, seed, task, max_rows)
        model_frame, y = model_frame.iloc[picked], np.asarray(y)[picked]
    features = [str(name) for name in model_frame.columns]
    columns = preprocessed_columns(pipeline, features)
    ranking = _IMPORTANCE_RANKING[task.kind]
    if columns is None:
        result = permutation_importance(pipeline, model_frame, y, scoring=ranking.scorer(), n_repeats=n_repeats,
                                        random_state=seed)  # fmt: skip
        drops = result.importances_mean
    else:
        matrix = np.asarray(pipeline.steps[0][1].transform(model_frame))
        model = pipeline.steps[-1][1]
        drops = _shuffled_drops(model, matrix, np.asarray(y), columns, task.kind, ranking, n_repeats, seed)
    pairs = zip(features, drops, strict=True)
    return dict(sorted(((name, float(value)) for name, value in pairs), key=lambda kv: -kv[1]))


_SHUFFLES_BYTES = 64 * 2**20  # shuffled copies of the matrix predicted in one call, up to this size together


def _shuffled_drops(
    model: object, matrix: np.ndarray, y: np.ndarray, columns: list[list[int]], kind: TaskKind, ranking: _Ranking,
    repeats: int, seed: int,
) -> np.ndarray:  # fmt: skip
    """Permutation importance on the preprocessed matrix: each feature's columns shuffled together, by rows.

    The same measure as shuffling the raw feature and preprocessing again (``core.pipeline.preprocessed_columns``
    says why), without preprocessing the rows once per shuffle: a fifth of the importance's time (20 features, idle).
    The shuffled copies are stacked and predicted together (``_SHUFFLES_BYTES`` at a time): one prediction call
    per shuffle of 5,000 rows cost half again as much, in each call's fixed cost.
    """
    rows = len(matrix)
    baseline = ranking.score(y, ranking.outputs(model, matrix, kind))
    rng = np.random.default_rng(seed)
    shuffles = [where for where in columns for _ in range(repeats)]
    per_call = max(1, min(len(shuffles), _SHUFFLES_BYTES // max(matrix.nbytes, 1)))
    # One buffer of copies, each shuffled in its feature's columns and put back after its call: np.tile made
    # fresh copies for every call at about a fortieth of a plain copy's speed (0.3-0.5 s of 61 copies of 5,000 rows).
    stacked = np.empty((per_call * rows, matrix.shape[1]), dtype=matrix.dtype)
    for k in range(per_call):
        stacked[k * rows : (k + 1) * rows] = matrix
    scores = np.empty(len(shuffles))
    for first in range(0, len(shuffles), per_call):
        batch = shuffles[first : first + per_call]
        for k, where in enumerate(batch):
            stacked[k * rows : (k + 1) * rows, where] = matrix[:, where][rng.permutation(rows)]
        outputs = ranking.outputs(model, stacked[: len(batch) * rows], kind)
        for k, where in enumerate(batch):
            scores[first + k] = ranking.score(y, outputs[k * rows : (k + 1) * rows])
            stacked[k * rows : (k + 1) * rows, where] = matrix[:, where]
    mean: np.ndarray = (baseline - scores.reshape(len(columns), repeats)).mean(axis=1)
    return mean
