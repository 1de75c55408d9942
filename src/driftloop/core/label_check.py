"""Concept drift: does the model still score as well on labelled recent traffic as on its holdout?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

LabelStatus = Literal["degraded", "ok", "insufficient labels"]


@dataclass(frozen=True)
class LabelCheck:
    status: LabelStatus
    rows: int
    min_rows: int
    accuracy: float | None
    baseline_accuracy: float
    max_drop: float

    @property
    def drop(self) -> float | None:
        return None if self.accuracy is None else self.baseline_accuracy - self.accuracy

    def summary(self) -> str:
        if self.accuracy is None:
            return f"label check: {self.rows} labelled row(s), need {self.min_rows}: not judged"
        return (
            f"label check: accuracy {self.accuracy:.4f} on {self.rows} labelled rows vs holdout "
            f"{self.baseline_accuracy:.4f} (drop {self.drop:+.4f}, allowed {self.max_drop:.4f}): {self.status}"
        )


def check_labels(
    predicted: np.ndarray, actual: np.ndarray, baseline_accuracy: float, min_rows: int, max_drop: float
) -> LabelCheck:
    """Compare accuracy on the labelled window with the version's holdout accuracy.

    Args:
        predicted: The class the server answered, per labelled row.
        actual: The true class that arrived later, per row.
        baseline_accuracy: The version's holdout accuracy (recorded at registration).
        min_rows: Fewer labelled rows than this are not judged.
        max_drop: A larger drop in accuracy is concept drift.
    """
    rows = len(actual)
    if rows < min_rows:
        return LabelCheck("insufficient labels", rows, min_rows, None, baseline_accuracy, max_drop)
    accuracy = float(np.mean(np.asarray(predicted, dtype=object) == np.asarray(actual, dtype=object)))
    status: LabelStatus = "degraded" if baseline_accuracy - accuracy > max_drop else "ok"
    return LabelCheck(status, rows, min_rows, accuracy, baseline_accuracy, max_drop)
