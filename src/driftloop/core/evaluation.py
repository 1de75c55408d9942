"""Holdout metrics of a binary classifier, and which direction of each is better."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

# Quality metrics only: rows and positive_rate describe the data and have no better direction.
HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "f1": True,
    "accuracy": True,
    "log_loss": False,
    "precision": True,
    "recall": True,
}


@dataclass(frozen=True)
class Metrics:
    """Scores on one labelled set. ``roc_auc`` is NaN when the set holds a single class."""

    roc_auc: float
    f1: float
    accuracy: float
    log_loss: float
    precision: float
    recall: float
    rows: int
    positive_rate: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def predicted_labels(proba_positive: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """1 where ``proba_positive > threshold``, else 0.

    Strictly greater, so that at 0.5 this is the label sklearn's ``predict`` and the ONNX ``label`` output give:
    argmax over (p0, p1), which picks class 0 on a tie.
    """
    return (np.asarray(proba_positive) > threshold).astype(np.int64)


def compute_metrics(y_true: np.ndarray, proba_positive: np.ndarray, threshold: float = 0.5) -> Metrics:
    """Metrics of positive-class probabilities against 0/1 labels; labels are ``proba > threshold``.

    Raises:
        ValueError: empty or unequal-length inputs, labels other than 0/1, probabilities outside [0, 1] or NaN.
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba_positive, dtype=np.float64).ravel()
    if y.size == 0 or y.size != p.size:
        raise ValueError(f"need equal, non-zero numbers of labels and probabilities; got {y.size} and {p.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1; got values {sorted(set(np.unique(y).tolist()) - {0, 1})}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1] and not be NaN")
    y = y.astype(np.int64)
    labels = predicted_labels(p, threshold)
    single_class = np.unique(y).size < 2
    return Metrics(
        roc_auc=math.nan if single_class else float(skm.roc_auc_score(y, p)),
        f1=float(skm.f1_score(y, labels, zero_division=0)),
        accuracy=float(skm.accuracy_score(y, labels)),
        log_loss=float(skm.log_loss(y, p, labels=[0, 1])),
        precision=float(skm.precision_score(y, labels, zero_division=0)),
        recall=float(skm.recall_score(y, labels, zero_division=0)),
        rows=int(y.size),
        positive_rate=float(y.mean()),
    )


def feature_importance(
    pipeline: Pipeline, model_frame: pd.DataFrame, y: np.ndarray, seed: int, n_repeats: int = 3
) -> dict[str, float]:
    """Mean drop in ROC AUC when each raw feature is shuffled, largest first.

    Raw features (the columns of ``model_frame``), not the one-hot columns the model sees, so the names
    match the schema and a categorical counts once.
    """
    result = permutation_importance(pipeline, model_frame, y, scoring="roc_auc", n_repeats=n_repeats, random_state=seed)
    pairs = zip(model_frame.columns, result.importances_mean, strict=True)
    return dict(sorted(((str(name), float(value)) for name, value in pairs), key=lambda kv: -kv[1]))
