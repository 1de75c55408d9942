"""PNG charts of a model's evaluation, for the run's artifacts.

Figures are bare ``Figure`` objects saved with the Agg renderer, never pyplot: no global figure state,
no GUI backend, safe in worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve


def _save(figure: Figure, path: Path | str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=100)
    return out


def confusion_matrix_png(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], path: Path | str) -> Path:
    """Counts of true (rows) against predicted (columns) classes; labels are indices into class_names."""
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(class_names))))
    figure = Figure(figsize=(4.5, 4))
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = range(len(class_names))
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="actual",
        title="Confusion matrix",
    )
    middle = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count > middle else "black")
    figure.tight_layout()
    return _save(figure, path)


def roc_curve_png(y_true: np.ndarray, proba_positive: np.ndarray, path: Path | str) -> Path:
    """The ROC curve with its AUC; needs both classes in y_true."""
    fpr, tpr, _ = roc_curve(y_true, proba_positive)
    auc = roc_auc_score(y_true, proba_positive)
    figure = Figure(figsize=(4.5, 4))
    ax = figure.add_subplot()
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    figure.tight_layout()
    return _save(figure, path)


def predicted_vs_actual_png(y_true: np.ndarray, predicted: np.ndarray, path: Path | str) -> Path:
    """A regressor's predictions against the true values, with the diagonal of perfect predictions."""
    figure = Figure(figsize=(4.5, 4))
    ax = figure.add_subplot()
    ax.scatter(y_true, predicted, s=6, alpha=0.5)
    low = float(min(np.min(y_true), np.min(predicted)))
    high = float(max(np.max(y_true), np.max(predicted)))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    ax.legend(loc="upper left")
    figure.tight_layout()
    return _save(figure, path)


def feature_importance_png(importances: dict[str, float], path: Path | str, metric: str = "ROC AUC") -> Path:
    """Horizontal bars, largest importance at the top."""
    ordered = sorted(importances.items(), key=lambda kv: kv[1])
    names = [name for name, _ in ordered]
    values = [value for _, value in ordered]
    figure = Figure(figsize=(6, max(2.0, 0.3 * len(names) + 1)))
    ax = figure.add_subplot()
    ax.barh(names, values)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel=f"mean drop in {metric} when shuffled", title="Permutation importance")
    figure.tight_layout()
    return _save(figure, path)
