"""A classifier's performance estimated without labels, from its calibrated confidence (confidence-based, CBPE).

At training, a monotone (isotonic) map from the model's score to the probability of being right is fitted on the
holdout, where the truth is known:

    binary      the positive class's probability  → P(the row is positive)
    multiclass  the predicted class's probability → P(the prediction is right)

It travels in the reference profile as two arrays (no pickle) and is applied with ``np.interp``, which is what
isotonic regression's ``predict`` does with ``out_of_bounds="clip"``. On a window of predictions, each row's
calibrated probability of being right is its expected accuracy; their mean is the window's. The 95% interval is
the one of the accuracy its labels would show (independent Bernoulli rows: variance Σ p(1−p) / n²): it counts the
labels' randomness, not the calibration's own error, which is larger where the holdout had few rows.

The estimate holds while the calibration does: under covariate shift (inputs move, the truth given the inputs
does not) it sees the model reach regions where it is less sure. Concept drift (the truth itself changes) leaves
the model as sure as before: only labels show that (``core.label_check``).

Binary models also get an expected ROC AUC: rows count as fractional positives (p) and negatives (1 − p); its
interval is Hanley and McNeil's for that many expected positives and negatives. Regressors: not
available (estimating an error needs a model of the loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from driftloop.core.label_check import beyond_allowance
from driftloop.core.task import Task, TaskKind, as_text

CalibrationKind = Literal["binary", "top-label"]
EstimateStatus = Literal["degraded", "ok", "not available"]

MIN_CALIBRATION_ROWS = 50  # fewer holdout rows: no calibration is fitted (the estimate says so)
# Fewer wrong holdout answers: none either. A holdout without errors calibrates every confidence to 1.0, and the
# estimate then read "ok, accuracy 1.000 (95% 1.000-1.000)" on traffic the labels showed 75% right (trial 18).
MIN_CALIBRATION_ERRORS = 10
Z_95 = 1.959964


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted isotonic map: ``scores`` rising, ``probabilities`` the calibrated value at each."""

    kind: CalibrationKind
    scores: np.ndarray
    probabilities: np.ndarray

    def apply(self, scores: np.ndarray) -> np.ndarray:
        calibrated: np.ndarray = np.interp(np.asarray(scores, dtype=np.float64), self.scores, self.probabilities)
        return calibrated


def fit_calibration(task: Task, scores: np.ndarray, y_true: np.ndarray) -> Calibration | None:
    """The calibration of a classifier's holdout ``scores`` (``Task.scores``) against its encoded ``y_true``.

    None for regressors, with fewer than ``MIN_CALIBRATION_ROWS`` holdout rows, and with fewer than
    ``MIN_CALIBRATION_ERRORS`` wrong answers among them.
    """
    if not task.is_classifier or len(y_true) < MIN_CALIBRATION_ROWS:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    if int((task.predicted(scores) != np.asarray(y_true)).sum()) < MIN_CALIBRATION_ERRORS:
        return None
    if task.kind is TaskKind.BINARY:
        kind: CalibrationKind = "binary"
        x, y = scores.reshape(-1), (np.asarray(y_true) == 1).astype(np.float64)
    else:
        kind = "top-label"
        x, y = scores.max(axis=1), (task.predicted(scores) == np.asarray(y_true)).astype(np.float64)
    from sklearn.isotonic import IsotonicRegression  # here: drift checks import this module, and never fit

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    return Calibration(kind, np.asarray(fitted.X_thresholds_), np.asarray(fitted.y_thresholds_))


@dataclass(frozen=True)
class PerformanceEstimate:
    """One estimate. ``baseline`` is the version's holdout accuracy; the status judges the drop from it."""

    status: EstimateStatus
    rows: int
    baseline: float
    max_drop: float
    accuracy: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    roc_auc: float | None = None
    roc_auc_interval: tuple[float, float] | None = None
    reason: str = ""  # why it is not available

    @property
    def drop(self) -> float | None:
        return None if self.accuracy is None else self.baseline - self.accuracy

    def summary(self) -> str:
        return f"estimated performance (no labels): {self.status}: {self.detail()}"

    def detail(self) -> str:
        """The figures (or why there are none), without the status."""
        if self.accuracy is None or self.accuracy_interval is None:
            return self.reason
        low, high = self.accuracy_interval
        text = (
            f"accuracy {self.accuracy:.3f} (95% {low:.3f}–{high:.3f}) on {self.rows:,} rows vs holdout "
            f"{self.baseline:.3f} (drop {self.drop:+.3f}, allowed {self.max_drop:.3f})"
        )
        if self.roc_auc is not None and self.roc_auc_interval is not None:
            low, high = self.roc_auc_interval
            text += f"; ROC AUC {self.roc_auc:.3f} (95% {low:.3f}–{high:.3f})"
        return text


def estimate_performance(
    calibration: Calibration | None,
    task: Task,
    scores: np.ndarray,
    predicted: np.ndarray,
    baseline: float,
    max_drop: float,
    min_rows: int,
) -> PerformanceEstimate:
    """Expected accuracy (and binary ROC AUC) of the window's predictions, judged like the label check.

    Args:
        calibration: The version's (``fit_calibration``); None: not available.
        task: The model's task.
        scores: The prediction log's ``probability`` column: the positive class's probability (binary), the
            predicted class's (multiclass).
        predicted: The prediction log's ``label`` column: the class name the server answered.
        baseline: The version's holdout accuracy.
        max_drop: An estimated accuracy more than this below ``baseline`` is ``degraded``.
        min_rows: Fewer rows are not estimated.
    """
    rows = len(scores)
    if calibration is None:
        reason = (
            "a regressor's error cannot be estimated from its outputs alone"
            if not task.is_classifier
            else f"this version has no calibration: its holdout had fewer than {MIN_CALIBRATION_ROWS} rows, or fewer "
            f"than {MIN_CALIBRATION_ERRORS} wrong answers to learn its confidence from, or it was trained before "
            "calibrations were kept"
        )
        return PerformanceEstimate("not available", rows, baseline, max_drop, reason=reason)
    values, labels = np.asarray(scores, dtype=np.float64), np.asarray(predicted, dtype=object)
    keep = np.isfinite(values)
    if not keep.all():
        values, labels = values[keep], labels[keep]
    if values.size < min_rows:
        return PerformanceEstimate(
            "not available", int(values.size), baseline, max_drop, reason=f"{values.size} rows, need {min_rows}"
        )
    # Sorted once: the calibration's lookup reads rising scores ten times faster, the ROC AUC needs them rising,
    # and accuracy and its interval are sums, whatever the order.
    order = np.argsort(values)
    values = values[order]
    calibrated = calibration.apply(values)
    roc_auc = roc_interval = None
    if calibration.kind == "binary":
        positive = (as_text(labels) == task.classes[1])[order]
        right = np.where(positive, calibrated, 1.0 - calibrated)
        roc_auc = _expected_roc_auc_of_sorted(values, calibrated)
        if roc_auc is not None:
            roc_interval = _roc_auc_interval(roc_auc, float(calibrated.sum()), float((1.0 - calibrated).sum()))
    else:
        right = calibrated
    accuracy = float(right.mean())
    half = Z_95 * math.sqrt(float(np.sum(right * (1.0 - right)))) / right.size
    status: EstimateStatus = "degraded" if beyond_allowance("accuracy", accuracy, baseline, max_drop) else "ok"
    return PerformanceEstimate(
        status,
        int(right.size),
        baseline,
        max_drop,
        accuracy=accuracy,
        accuracy_interval=(max(0.0, accuracy - half), min(1.0, accuracy + half)),
        roc_auc=roc_auc,
        roc_auc_interval=roc_interval,
    )


def expected_roc_auc(scores: np.ndarray, positive_probability: np.ndarray) -> float | None:
    """ROC AUC where each row is a positive with weight p and a negative with weight 1 − p (ties count half)."""
    order = np.argsort(scores)  # not stable, and need not be: tied scores are summed as one group
    return _expected_roc_auc_of_sorted(scores[order], positive_probability[order])


def _expected_roc_auc_of_sorted(ranked: np.ndarray, p: np.ndarray) -> float | None:
    """``expected_roc_auc`` of scores already in rising order."""
    boundaries = np.flatnonzero(np.diff(ranked)) + 1
    positives = np.add.reduceat(p, np.r_[0, boundaries])
    negatives = np.add.reduceat(1.0 - p, np.r_[0, boundaries])
    total_pos, total_neg = positives.sum(), negatives.sum()
    if total_pos <= 0 or total_neg <= 0:
        return None
    below = np.cumsum(negatives) - negatives  # negative weight strictly below each score
    return float(np.sum(positives * (below + 0.5 * negatives)) / (total_pos * total_neg))


def _roc_auc_interval(auc: float, positives: float, negatives: float) -> tuple[float, float]:
    """Hanley and McNeil's (1982) 95% interval of a ROC AUC measured on these many positives and negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    half = Z_95 * math.sqrt(max(variance, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)
