"""Concept drift: does the model still score as well on labelled recent traffic as on its holdout?

The metric is the task's label-check metric (``Task.label_check_metric``): accuracy for classifiers, RMSE for
regressors. Classifiers are degraded when accuracy drops by more than ``max_drop`` (absolute); regressors when
RMSE rises by more than ``max_drop`` relative to the holdout RMSE (0.1: 10% worse), since RMSE has the target's
unit and no absolute threshold reads the same on every data set.

And only when the change is more than the window's own noise: a few hundred labelled rows of an unchanged model
move RMSE by several percent and accuracy by a few points, and a false alarm costs a retrain and then, while it is
refused, the cooldown that delays the response to real drift. The noise is the one-sided 95% margin of the
difference between the metric on these rows and on the holdout, both measured on finite samples: 1.645 standard
errors, from accuracy's √(a(1−a)/n) on each side, and RMSE's delta-method sd(e²) / (2·RMSE·√n) on the window and
RMSE / √(2n) on the holdout (its errors are not kept: the Gaussian case). Without the holdout's size, the window's
noise alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from driftloop.core.task import Task, as_text

LabelStatus = Literal["degraded", "ok", "insufficient labels"]
LABELLED_COLUMNS = ("label", "probability", "actual")  # what the label check, target drift and estimates read
Z_ONE_SIDED_95 = 1.644854


@dataclass(frozen=True)
class LabelCheck:
    """One label check.

    Attributes:
        status: degraded, ok, or insufficient labels (fewer usable labelled rows than ``min_rows``).
        rows: Labelled rows whose true value the task can use (``Task.usable_labels``).
        min_rows: Fewer usable rows than this are not judged.
        metric: The metric compared: ``accuracy`` (classifiers) or ``rmse`` (regressors).
        value: The metric on the labelled rows; None when not judged.
        baseline: The version's holdout value of the metric.
        max_drop: Allowed accuracy drop (classifiers) or relative RMSE rise (regressors).
        mae: Regressors: the mean absolute error on the labelled rows (reported, not judged).
        noise: The metric's one-sided 95% margin on these rows, in its unit.
    """

    status: LabelStatus
    rows: int
    min_rows: int
    metric: str
    value: float | None
    baseline: float
    max_drop: float
    mae: float | None = None
    noise: float = 0.0  # the one-sided 95% margin of the metric on these rows; a smaller change is not judged worse

    @property
    def accuracy(self) -> float | None:
        """The labelled accuracy (classifiers); None for regressors and when not judged."""
        return self.value if self.metric == "accuracy" else None

    @property
    def drop(self) -> float | None:
        """Classifiers: holdout accuracy minus labelled accuracy."""
        return None if self.accuracy is None else self.baseline - self.accuracy

    @property
    def rise(self) -> float | None:
        """Regressors: labelled RMSE relative to the holdout's, minus 1 (0.1: 10% worse); None if not defined."""
        if self.metric != "rmse" or self.value is None or not self.baseline > 0:
            return None
        return self.value / self.baseline - 1

    def summary(self) -> str:
        if self.value is None:
            return f"label check: {self.rows} labelled row(s), need {self.min_rows}: not judged"
        if self.metric == "accuracy":
            text = (
                f"label check: accuracy {self.value:.4f} on {self.rows} labelled rows vs holdout "
                f"{self.baseline:.4f} (drop {self.drop:+.4f}, allowed {self.max_drop:.4f}): {self.status}"
            )
        else:
            rise = "n/a" if self.rise is None else f"{self.rise:+.1%}"
            mae = "" if self.mae is None else f" (mae {self.mae:.4g})"
            text = (
                f"label check: {self.metric} {self.value:.4g}{mae} on {self.rows} labelled rows vs holdout "
                f"{self.baseline:.4g} ({rise}, allowed +{self.max_drop * 100:g}%): {self.status}"
            )
        if self.status == "ok" and beyond_allowance(self.metric, self.value, self.baseline, self.max_drop):
            text += f" (beyond the allowance, but within these rows' noise: ±{self.noise:.4g})"
        return text


def labelled_rows(window: pd.DataFrame) -> pd.DataFrame:
    """The rows of a prediction-log window whose true value came back, with the ``LABELLED_COLUMNS`` only.

    Built from the three columns' arrays: on a 1M-row window, taking the labelled rows of every column cost about
    twice as long, and selecting the three through ``DataFrame.loc`` longer still.
    """
    known = window["actual"].notna().to_numpy()
    return pd.DataFrame({name: window[name].to_numpy()[known] for name in LABELLED_COLUMNS})


def check_labels(
    task: Task,
    predicted: np.ndarray,
    actual: np.ndarray,
    baseline: float,
    min_rows: int,
    max_drop: float,
    baseline_rows: int | None = None,
) -> LabelCheck:
    """Compare the task's label-check metric on the labelled window with the version's holdout value.

    Args:
        task: The model's task.
        predicted: What the server answered, per labelled row: the class name (classifiers) or the value
            (regressors, as numbers or text).
        actual: The true value that arrived later, per row, as feedback stores it (text); rows whose value the
            task cannot use (a class it does not know, not a finite number within float32 range) are left out.
        baseline: The version's holdout accuracy (classifiers) or RMSE (regressors), recorded at registration.
        min_rows: Fewer usable labelled rows than this are not judged.
        max_drop: Classifiers: a larger drop in accuracy is concept drift. Regressors: a larger relative rise
            in RMSE is.
        baseline_rows: How many holdout rows ``baseline`` was measured on (its own noise); None: not counted.
    """
    predicted, actual = np.asarray(predicted, dtype=object), np.asarray(actual, dtype=object)
    if predicted.shape != actual.shape:
        raise ValueError(f"{predicted.size} predictions but {actual.size} true values")
    metric = task.label_check_metric
    usable = task.usable_labels(actual)
    if not task.is_classifier:
        usable &= task.usable_labels(predicted)  # a row logged without its value cannot be scored
    rows = int(np.count_nonzero(usable))
    if rows < min_rows:
        return LabelCheck("insufficient labels", rows, min_rows, metric, None, baseline, max_drop)

    if task.is_classifier:
        accuracy = 1.0 - float(np.mean(row_errors(task, predicted[usable], actual[usable])))
        holdout = baseline * (1 - baseline) / baseline_rows if baseline_rows and 0 <= baseline <= 1 else 0.0
        noise = Z_ONE_SIDED_95 * math.sqrt(accuracy * (1 - accuracy) / rows + holdout)
        worse = beyond_allowance(metric, accuracy, baseline, max_drop) and baseline - accuracy > noise
        return LabelCheck("degraded" if worse else "ok", rows, min_rows, metric, accuracy, baseline, max_drop,
                          noise=noise)  # fmt: skip

    squared = row_errors(task, predicted[usable], actual[usable])
    rmse = math.sqrt(float(np.mean(squared)))
    mae = float(np.mean(np.sqrt(squared)))
    window = (float(np.std(squared)) / (2 * rmse * math.sqrt(rows))) ** 2 if rmse > 0 else 0.0
    holdout = baseline**2 / (2 * baseline_rows) if baseline_rows and math.isfinite(baseline) else 0.0
    noise = Z_ONE_SIDED_95 * math.sqrt(window + holdout)
    worse = beyond_allowance(metric, rmse, baseline, max_drop) and rmse - baseline > noise
    return LabelCheck("degraded" if worse else "ok", rows, min_rows, metric, rmse, baseline, max_drop, mae, noise)


def row_errors(task: Task, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Each row's error as the label check counts it: 1.0 or 0.0 for a wrong or right class, or the squared error.

    For rows whose values the task can use (``check_labels`` picks them).
    """
    predicted, actual = np.asarray(predicted, dtype=object), np.asarray(actual, dtype=object)
    if task.is_classifier:
        wrong: np.ndarray = np.not_equal(as_text(predicted), as_text(actual)).astype(np.float64)
        return wrong
    squared: np.ndarray = (predicted.astype(np.float64) - actual.astype(np.float64)) ** 2
    return squared


def beyond_allowance(metric: str, value: float | None, baseline: float, max_drop: float) -> bool:
    """The change from the holdout is more than ``max_drop`` allows, noise aside (the estimate uses it too)."""
    if value is None:
        return False
    if metric == "accuracy":
        return baseline - value > max_drop
    # As a product, not a ratio, so that a perfect holdout (RMSE 0) still reads: any error is worse.
    return value > baseline * (1 + max_drop)
