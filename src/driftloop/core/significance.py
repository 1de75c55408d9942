"""How sure is "the candidate is better"? Intervals for a metric difference between two models on the same rows.

ROC AUC uses DeLong's method: the variance of the difference of two correlated AUCs from their placement values,
exact in O(n log n), so a 200,000-row holdout takes milliseconds. Every other metric uses a paired bootstrap:
each replicate reweights the shared rows (Poisson(1) weights, the streaming form of resampling with replacement)
and recomputes the metric for both models, so the interval accounts for the rows being shared. Those metrics are
weighted sums over rows, vectorised across replicates (2,000 replicates of 10,000 rows: about a second on a
2-core machine); with unit weights each equals scikit-learn's metric of the same name (tested).

Every task kind has its metrics here, taking the task's scores (``core.task``): binary classifiers the positive
class's probability, multiclass classifiers the ``(n, k)`` probabilities (accuracy, macro F1, log loss, one-vs-rest
ROC AUC), regressors the predicted values (RMSE, MAE, R²). DeLong's method covers binary ROC AUC only; the rest,
one-vs-rest AUC included, take the bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from driftloop.core.task import HIGHER_IS_BETTER, TaskKind

# Above this many rows the interval is computed on a seeded sample (the record says how many rows it used):
# the interval is already narrow, and replicates × rows floats must stay bounded.
MAX_BOOTSTRAP_ROWS = 50_000
# Replicates computed at once: bounds the weight matrix to about 8 MB of float64 per chunk at the row cap.
_CHUNK_VALUES = 1_000_000

WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC (Mann-Whitney, ties count one half) for each row of ``weights``."""
    order = np.argsort(score, kind="mergesort")
    y, score, weights = y[order], score[order], weights[:, order]
    _, starts = np.unique(score, return_index=True)
    positives = np.add.reduceat(weights * (y == 1), starts, axis=1)
    negatives = np.add.reduceat(weights * (y == 0), starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc: np.ndarray = (positives * (below + 0.5 * negatives)).sum(axis=1) / pairs
    return auc


def _mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: np.ndarray = (weights @ values) / weights.sum(axis=1)
    return mean


def _accuracy(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _mean(((score > 0.5).astype(np.int64) == y).astype(np.float64), weights)


def _log_loss(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    eps = np.finfo(np.float64).eps  # scikit-learn clips probabilities the same way
    p = np.clip(score, eps, 1 - eps)
    return _mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights)


def _confusion(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    predicted = score > 0.5
    true_positive = weights @ (predicted & (y == 1)).astype(np.float64)
    false_positive = weights @ (predicted & (y == 0)).astype(np.float64)
    false_negative = weights @ (~predicted & (y == 1)).astype(np.float64)
    return true_positive, false_positive, false_negative


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # scikit-learn's zero_division=0: an empty denominator scores 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def _precision(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    tp, fp, _ = _confusion(y, score, weights)
    return _ratio(tp, tp + fp)


def _recall(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    tp, _, fn = _confusion(y, score, weights)
    return _ratio(tp, tp + fn)


def _f1(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    tp, fp, fn = _confusion(y, score, weights)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _normalised(score: np.ndarray) -> np.ndarray:
    # A model's probability rows sum to 1 only up to float32 rounding; the task's own metrics normalise too.
    normalised: np.ndarray = score / score.sum(axis=1, keepdims=True)
    return normalised


def _one_hot(indices: np.ndarray, classes: int) -> np.ndarray:
    one_hot: np.ndarray = (indices[:, None] == np.arange(classes)).astype(np.float64)
    return one_hot


def _multiclass_accuracy(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _mean((np.argmax(score, axis=1) == y).astype(np.float64), weights)


def _multiclass_log_loss(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    eps = np.finfo(np.float64).eps  # scikit-learn clips probabilities the same way
    p = np.clip(_normalised(score)[np.arange(y.size), y], eps, 1 - eps)
    return _mean(-np.log(p), weights)


def _macro_f1(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    classes = score.shape[1]
    truth, predicted = _one_hot(y, classes), _one_hot(np.argmax(score, axis=1), classes)
    true_positive = weights @ (truth * predicted)
    # Per class, 2·tp + fp + fn is the rows predicted as the class plus the rows truly of it.
    per_class = _ratio(2 * true_positive, weights @ truth + weights @ predicted)
    macro: np.ndarray = per_class.mean(axis=1)
    return macro


def _roc_auc_ovr(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    per_class = [_auc((y == c).astype(np.int64), score[:, c], weights) for c in range(score.shape[1])]
    macro: np.ndarray = np.stack(per_class).mean(axis=0)
    return macro


def _rmse(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    rmse: np.ndarray = np.sqrt(_mean((y - score) ** 2, weights))
    return rmse


def _mae(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _mean(np.abs(y - score), weights)


def _r2(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """1 − SSE / SST, SST around each replicate's weighted mean; NaN when the weighted targets do not vary."""
    total = weights.sum(axis=1)
    # SST = Σw(y−s)² − W(ȳ−s)² for any shift s, in one matrix product. Shifting by the observed target nearest
    # the mean keeps that subtraction small (stable), and makes constant targets give exactly zero.
    centred = y - y[np.argmin(np.abs(y - y.mean()))] if y.size else y
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = (weights @ centred) / total
        total_squares = weights @ centred**2 - total * offset**2
        r2: np.ndarray = np.where(total_squares > 0, 1 - (weights @ (y - score) ** 2) / total_squares, np.nan)
    return r2


# Scores by task (``core.task``): binary, the positive-class probability (the label is ``score > 0.5``);
# multiclass, the (n, k) probabilities (the label is the argmax, first on a tie); regression, the prediction.
WEIGHTED_METRICS: dict[TaskKind, dict[str, WeightedMetric]] = {
    TaskKind.BINARY: {
        "roc_auc": _auc,
        "accuracy": _accuracy,
        "log_loss": _log_loss,
        "precision": _precision,
        "recall": _recall,
        "f1": _f1,
    },
    TaskKind.MULTICLASS: {
        "accuracy": _multiclass_accuracy,
        "log_loss": _multiclass_log_loss,
        "macro_f1": _macro_f1,
        "roc_auc_ovr": _roc_auc_ovr,
    },
    TaskKind.REGRESSION: {"rmse": _rmse, "mae": _mae, "r2": _r2},
}


def _metric_function(metric: str, kind: TaskKind) -> WeightedMetric:
    """Raises ValueError naming the valid metrics when ``kind`` has no ``metric``."""
    metrics = WEIGHTED_METRICS[TaskKind(kind)]
    if metric not in metrics:
        raise ValueError(
            f"no significance test for metric {metric!r} of a {kind} model; choose one of: {', '.join(metrics)}"
        )
    return metrics[metric]


def _labels(y: np.ndarray, kind: TaskKind) -> np.ndarray:
    """Class indices (int64) for classifiers, targets (float64) for regressors, flat."""
    return np.asarray(y, dtype=np.float64 if kind is TaskKind.REGRESSION else np.int64).ravel()


def _scores(score: np.ndarray, kind: TaskKind) -> np.ndarray:
    """float64 scores: (n, k) for multiclass, flat otherwise.

    Raises:
        ValueError: multiclass scores that are not a matrix of at least two columns.
    """
    score = np.asarray(score, dtype=np.float64)
    if kind is not TaskKind.MULTICLASS:
        return score.ravel()
    if score.ndim != 2 or score.shape[1] < 2:
        raise ValueError(f"multiclass scores must have shape (rows, classes ≥ 2), got {score.shape}")
    return score


def weighted_metric(
    metric: str,
    y: np.ndarray,
    score: np.ndarray,
    weights: np.ndarray | None = None,
    kind: TaskKind = TaskKind.BINARY,
) -> np.ndarray:
    """``metric`` for each row of ``weights`` (shape replicates × rows); unit weights when None.

    Args:
        metric: A name in ``WEIGHTED_METRICS[kind]``.
        y: True labels (0/1, class indices 0..k-1) or regression targets.
        score: The task's scores: positive-class probabilities, (n, k) probabilities, or predictions.
        weights: Row weights, replicates × rows (a single row of weights may be 1-D).
        kind: The task kind the metric, labels and scores belong to.

    Raises:
        ValueError: an unknown metric for ``kind``, labels and scores of different lengths, multiclass scores
            that are not (n, k), or class indices outside 0..k-1.
    """
    kind = TaskKind(kind)
    function = _metric_function(metric, kind)
    y, score = _labels(y, kind), _scores(score, kind)
    if score.shape[0] != y.size:
        raise ValueError(f"need as many scores as labels; got {score.shape[0]} and {y.size}")
    if kind is TaskKind.MULTICLASS and y.size and (y.min() < 0 or y.max() >= score.shape[1]):
        raise ValueError(f"multiclass labels must be class indices 0..{score.shape[1] - 1}")
    w = np.ones((1, y.size)) if weights is None else np.atleast_2d(weights)
    return function(y, score, w)


@dataclass(frozen=True)
class MetricDifference:
    """Candidate minus champion on one set of rows, with an interval (paired bootstrap, or DeLong's for ROC AUC).

    ``improvement`` and its interval are oriented so that positive means the candidate is better, whatever the
    metric's direction (for log loss, RMSE and MAE it is champion − candidate).

    Attributes:
        metric: The metric compared.
        rows: Labelled rows in the set.
        rows_used: Rows the interval was computed on (fewer than ``rows`` above ``MAX_BOOTSTRAP_ROWS``).
        candidate: The candidate's value on all rows.
        champion: The champion's value on all rows.
        improvement: How much better the candidate is (positive: better).
        low: Lower end of the interval of ``improvement``.
        high: Upper end of the interval of ``improvement``.
        confidence: The interval's confidence level, e.g. 0.95.
        resamples: Bootstrap replicates (0 for DeLong's interval).
        method: How the interval was computed: ``paired bootstrap`` or ``DeLong``.
    """

    metric: str
    rows: int
    rows_used: int
    candidate: float
    champion: float
    improvement: float
    low: float
    high: float
    confidence: float
    resamples: int
    method: str = "paired bootstrap"

    @property
    def significantly_better(self) -> bool:
        """The whole interval lies above zero."""
        return self.low > 0

    @property
    def significantly_worse(self) -> bool:
        """The whole interval lies below zero."""
        return self.high < 0

    def worse_beyond(self, margin: float) -> bool:
        """The whole interval lies below ``-margin``: worse, with confidence, by more than ``margin``."""
        return self.high < -margin

    def describe(self) -> str:
        """``roc_auc 0.8312 vs 0.8101: 0.0211 better, 95% CI of the improvement [+0.0083, +0.0342]``.

        The interval is of the improvement (candidate better by), whichever way the point estimate goes.
        """
        sampled = f", on a sample of {self.rows_used} rows" if self.rows_used < self.rows else ""
        direction = "better" if self.improvement >= 0 else "worse"
        return (
            f"{self.metric} {self.candidate:.4f} vs {self.champion:.4f}: {abs(self.improvement):.4f} {direction}, "
            f"{self.confidence:.0%} CI of the improvement [{self.low:+.4f}, {self.high:+.4f}]{sampled}"
        )


def _paired(
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    confidence: float,
    kind: TaskKind = TaskKind.BINARY,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' scores with one number of rows (scores (n, k) for multiclass, else flat).

    Raises:
        ValueError: unequal numbers of rows or classes, no rows, or a confidence outside (0, 1).
    """
    y = _labels(y, kind)
    a, b = _scores(candidate, kind), _scores(champion, kind)
    if y.size == 0 or not y.size == a.shape[0] == b.shape[0]:
        raise ValueError(
            f"need the same non-zero number of labels and scores; got {y.size}, {a.shape[0]}, {b.shape[0]}"
        )
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"the two models' scores have different shapes: {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return y, a, b


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    kind: TaskKind = TaskKind.BINARY,
) -> MetricDifference:
    """The candidate's improvement over the champion on the same rows, with a percentile interval.

    Args:
        metric: A name in ``WEIGHTED_METRICS[kind]``.
        y: True labels: 0/1 (binary), class indices 0..k-1 (multiclass), targets (regression).
        candidate: The candidate's scores on the rows: positive-class probabilities (binary), (n, k)
            probabilities (multiclass), predictions (regression).
        champion: The champion's, on the same rows in the same order.
        confidence: Coverage of the interval, in (0, 1).
        resamples: Bootstrap replicates (at least 100).
        seed: Seeds the replicates, so a decision can be reproduced exactly.
        kind: The task kind of both models.

    Raises:
        ValueError: unequal lengths, no rows, a bad confidence or resample count, or an unknown metric for
            ``kind``.
    """
    kind = TaskKind(kind)
    _metric_function(metric, kind)
    y, a, b = _paired(y, candidate, champion, confidence, kind)
    if resamples < 100:
        raise ValueError(f"need at least 100 bootstrap resamples, got {resamples}")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    candidate_value = float(weighted_metric(metric, y, a, kind=kind)[0])
    champion_value = float(weighted_metric(metric, y, b, kind=kind)[0])

    rng = np.random.default_rng(seed)
    rows = y.size
    if rows > MAX_BOOTSTRAP_ROWS:
        keep = np.sort(rng.choice(rows, size=MAX_BOOTSTRAP_ROWS, replace=False))
        y, a, b = y[keep], a[keep], b[keep]
    chunk = max(1, _CHUNK_VALUES // y.size)
    differences: list[np.ndarray] = []
    for start in range(0, resamples, chunk):
        weights = rng.poisson(1.0, size=(min(chunk, resamples - start), y.size)).astype(np.float64)
        differences.append(
            sign * (weighted_metric(metric, y, a, weights, kind) - weighted_metric(metric, y, b, weights, kind))
        )
    replicates = np.concatenate(differences)
    replicates = replicates[np.isfinite(replicates)]
    tail = (1 - confidence) / 2
    low, high = (
        (float(np.quantile(replicates, tail)), float(np.quantile(replicates, 1 - tail)))
        if replicates.size
        else (math.nan, math.nan)
    )
    return MetricDifference(
        metric=metric,
        rows=rows,
        rows_used=int(y.size),
        candidate=candidate_value,
        champion=champion_value,
        improvement=sign * (candidate_value - champion_value),
        low=low,
        high=high,
        confidence=confidence,
        resamples=resamples,
    )


def interval_method(metric: str, kind: TaskKind = TaskKind.BINARY) -> str:
    """How ``compare_metric`` computes the interval for ``metric`` of a ``kind`` model."""
    return "DeLong" if kind == TaskKind.BINARY and metric == "roc_auc" else "paired bootstrap"


def compare_metric(
    metric: str,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    kind: TaskKind = TaskKind.BINARY,
) -> MetricDifference:
    """The candidate's improvement over the champion with an interval: DeLong for binary ROC AUC, else the bootstrap.

    Raises:
        ValueError: as ``paired_bootstrap`` and ``delong_difference``.
    """
    if interval_method(metric, kind) == "DeLong":
        return delong_difference(y, candidate, champion, confidence=confidence)
    return paired_bootstrap(
        metric, y, candidate, champion, confidence=confidence, resamples=resamples, seed=seed, kind=kind
    )


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC as the Mann–Whitney statistic: pairs (positive, negative) ranked in order, ties counting half.

    scikit-learn's ``roc_auc_score`` to float rounding, without its input checks, which took most of the
    permutation importance's 60 calls. NaN when ``y`` (0/1) holds a single class.
    """
    positive = np.asarray(y).ravel() == 1
    ones = int(np.count_nonzero(positive))
    zeros = positive.size - ones
    if ones == 0 or zeros == 0:
        return math.nan
    ranks = _midranks(np.asarray(scores, dtype=np.float64).ravel())
    return float((ranks[positive].sum() - ones * (ones + 1) / 2) / (ones * zeros))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    _, inverse, counts = np.unique(values[order], return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based position where each distinct value starts
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = (first + (counts + 1) / 2)[inverse]
    return ranks


def _placements(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's placement values.

    Per positive: the share of negatives it outranks (ties count ½); per negative: the share of positives that
    outrank it.
    """
    m, n = positives.size, negatives.size
    combined = _midranks(np.concatenate([positives, negatives]))
    among_positives, among_negatives = _midranks(positives), _midranks(negatives)
    positive_placements = (combined[:m] - among_positives) / n
    negative_placements = 1.0 - (combined[m:] - among_negatives) / m
    return float(positive_placements.mean()), positive_placements, negative_placements


def delong_difference(
    y: np.ndarray, candidate: np.ndarray, champion: np.ndarray, *, confidence: float = 0.95
) -> MetricDifference:
    """ROC AUC of the candidate minus the champion's on the same rows, with DeLong's normal interval.

    Raises:
        ValueError: unequal lengths, no rows, a bad confidence, or rows of only one class.
    """
    y, a, b = _paired(y, candidate, champion, confidence)
    positive = y == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError(f"ROC AUC needs both classes; got {m} positive and {n} negative rows")
    auc_a, pos_a, neg_a = _placements(a[positive], a[~positive])
    auc_b, pos_b, neg_b = _placements(b[positive], b[~positive])
    # Var(AUC_a - AUC_b) = Var_pos(V_a - V_b) / m + Var_neg(V_a - V_b) / n, over the placement values.
    variance = 0.0
    if m > 1:
        variance += float(np.var(pos_a - pos_b, ddof=1)) / m
    if n > 1:
        variance += float(np.var(neg_a - neg_b, ddof=1)) / n
    half_width = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(variance)
    improvement = auc_a - auc_b
    return MetricDifference(
        metric="roc_auc",
        rows=int(y.size),
        rows_used=int(y.size),
        candidate=auc_a,
        champion=auc_b,
        improvement=improvement,
        low=improvement - half_width,
        high=improvement + half_width,
        confidence=confidence,
        resamples=0,
        method="DeLong",
    )
