"""What a task means: its target encoding, model outputs, metrics and their direction, and the default gate.

The one place that knows how a binary classifier, a multiclass classifier and a regressor differ. Everything
downstream asks a ``Task`` instead of indexing ``[:, 1]`` or assuming two classes.

Model outputs, by task (what ``io.onnx_runtime`` returns and the server answers):

* classifiers: ``labels`` int64 ``(n,)``, an index into ``classes``, and ``probabilities`` float32 ``(n, k)``,
  one column per class in ``classes`` order;
* regressors: ``values`` float32 ``(n,)``.

This module stays light (numpy only): the server imports it. ``core.evaluation`` computes the metrics.

The *score* of a row is what metrics and the gate's significance tests take: the positive class's probability
(binary), the ``(n, k)`` probabilities (multiclass), the predicted value (regression).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

# The largest magnitude a feature or a regressor's label may have: models take and give float32, where a larger
# number is infinite.
FLOAT32_MAX = 3.4028234663852886e38  # float(numpy.finfo(numpy.float32).max)


class TaskKind(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


# Quality metrics of each task and their direction (True: higher is better). Rows and positive_rate describe
# the data and have no better direction.
TASK_METRICS: dict[TaskKind, dict[str, bool]] = {
    TaskKind.BINARY: {
        "roc_auc": True,
        "f1": True,
        "accuracy": True,
        "log_loss": False,
        "precision": True,
        "recall": True,
    },
    TaskKind.MULTICLASS: {"accuracy": True, "macro_f1": True, "log_loss": False, "roc_auc_ovr": True},
    TaskKind.REGRESSION: {"rmse": False, "mae": False, "r2": True},
}
HIGHER_IS_BETTER: dict[str, bool] = {name: up for metrics in TASK_METRICS.values() for name, up in metrics.items()}

# The gate's default primary metric and floors. ROC AUC (one-vs-rest for several classes) is 0.5 by chance
# whatever the number of classes, and R² is 0 for predicting the mean, so one floor reads the same on any data.
PRIMARY_METRIC: dict[TaskKind, str] = {
    TaskKind.BINARY: "roc_auc",
    TaskKind.MULTICLASS: "roc_auc_ovr",
    TaskKind.REGRESSION: "r2",
}
DEFAULT_FLOORS: dict[TaskKind, dict[str, float]] = {
    TaskKind.BINARY: {"roc_auc": 0.70, "accuracy": 0.70},
    TaskKind.MULTICLASS: {"roc_auc_ovr": 0.70},
    TaskKind.REGRESSION: {"r2": 0.10},
}
# The metric the label check compares with the version's holdout value.
LABEL_CHECK_METRIC: dict[TaskKind, str] = {
    TaskKind.BINARY: "accuracy",
    TaskKind.MULTICLASS: "accuracy",
    TaskKind.REGRESSION: "rmse",
}


def as_text(values: np.ndarray) -> np.ndarray:
    """``values`` compared as text: ``values.astype(str)``, without the copy when they already are strings.

    An object array of Python strings compares with ``==`` exactly as its ``astype(str)`` copy would; making
    that copy of a million labels took longer than the comparison itself.
    """
    if values.dtype.kind == "U":
        return values
    if values.dtype.kind == "O":
        from pandas.api.types import infer_dtype  # here: the server imports this module and never calls this

        if infer_dtype(values, skipna=False) == "string":
            return values
    text: np.ndarray = values.astype(str)
    return text


def _regression_label(value: object) -> bool:
    """A number a regressor can be scored against: finite and within float32's range, as its outputs are.

    A label beyond it (1e300, a typo) would make the squared errors overflow to infinity.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int of hundreds of digits, from JSON
        return False
    return abs(number) <= FLOAT32_MAX  # False for NaN and ±inf too


@dataclass(frozen=True)
class Task:
    """One model's task: its kind and, for classifiers, the classes in model output order.

    Attributes:
        kind: binary, multiclass or regression.
        classes: Class names by output index (binary: negative first, positive second); empty for regression.
    """

    kind: TaskKind
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.is_classifier and len(self.classes) < 2:
            raise ValueError(f"a {self.kind} task needs at least two classes, got {list(self.classes)}")
        if self.kind is TaskKind.BINARY and len(self.classes) != 2:
            raise ValueError(f"a binary task has exactly two classes, got {list(self.classes)}")
        if self.kind is TaskKind.REGRESSION and self.classes:
            raise ValueError("a regression task has no classes")

    def record(self) -> str:
        """The task as a version tag records it (``from_record`` reads it back)."""
        return json.dumps({"kind": self.kind.value, "classes": list(self.classes)}, separators=(",", ":"))

    @classmethod
    def from_record(cls, text: str) -> Task:
        """The task ``record`` wrote.

        Raises:
            ValueError: the text is not a recorded task.
        """
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"not a recorded task: {text[:80]!r}")
        return cls(TaskKind(value["kind"]), tuple(str(name) for name in value.get("classes", ())))

    @property
    def is_classifier(self) -> bool:
        return self.kind is not TaskKind.REGRESSION

    @property
    def metric_directions(self) -> dict[str, bool]:
        return TASK_METRICS[self.kind]

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self.kind]

    @property
    def default_floors(self) -> dict[str, float]:
        return dict(DEFAULT_FLOORS[self.kind])

    @property
    def label_check_metric(self) -> str:
        return LABEL_CHECK_METRIC[self.kind]

    def check_metric(self, name: str, what: str = "metric") -> None:
        """Raise ValueError naming the valid metrics if ``name`` is not one of this task's."""
        if name not in self.metric_directions:
            raise ValueError(
                f"unknown {what} {name!r} for a {self.kind} model; valid metric names: "
                + ", ".join(self.metric_directions)
            )

    # ------------------------------------------------------------------------------------------ targets

    def encode(self, labels: Iterable[object]) -> np.ndarray:
        """Model targets: class indices (labels compared as text) for classifiers, float64 values for regressors.

        A label outside ``classes`` becomes -1 (validation refuses such snapshots before training).
        """
        values = np.asarray(labels) if hasattr(labels, "__array__") else np.asarray(list(labels), dtype=object)
        if not self.is_classifier:
            return np.asarray(values, dtype=np.float64)
        from pandas import factorize  # here: the server imports this module and never calls this

        # Each distinct label looked up once: a million labels one by one took 0.2 s per call, three per run.
        codes, distinct = factorize(as_text(values))
        index = {name: i for i, name in enumerate(self.classes)}
        lookup = np.array([*(index.get(str(label), -1) for label in distinct), -1], dtype=np.int64)
        encoded: np.ndarray = lookup[codes]
        return encoded

    def class_name(self, index: int) -> str:
        return self.classes[index]

    def usable_labels(self, labels: np.ndarray) -> np.ndarray:
        """Which recorded true values (text, as feedback stores them) this task can learn from and score.

        Classifiers: one of ``classes``. Regressors: a finite number within float32's range.
        """
        if self.is_classifier:
            return np.isin(as_text(labels), np.asarray(self.classes, dtype=object))
        return np.fromiter((_regression_label(value) for value in labels), dtype=bool, count=len(labels))

    # ------------------------------------------------------------------------------------------ outputs

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """Scores from the model's second output (probabilities) or a regressor's values, as float64."""
        values = np.asarray(outputs, dtype=np.float64)
        if self.kind is TaskKind.BINARY:
            return values[:, 1] if values.ndim == 2 else values
        if self.kind is TaskKind.REGRESSION:
            return values.reshape(-1)
        return values

    def predicted(self, scores: np.ndarray) -> np.ndarray:
        """Labels (class indices) a classifier's scores stand for; a regressor's scores are its predictions.

        Binary: ``p > 0.5`` strictly, so that at 0.5 this is the label scikit-learn's ``predict`` and the ONNX
        ``label`` output give (argmax over (p0, p1) picks class 0 on a tie). Multiclass: the argmax, first on a tie.
        """
        values: np.ndarray = np.asarray(scores)
        if self.kind is TaskKind.BINARY:
            labels: np.ndarray = (values > 0.5).astype(np.int64)
            return labels
        if self.kind is TaskKind.MULTICLASS:
            indices: np.ndarray = np.argmax(values, axis=1).astype(np.int64)
            return indices
        return values.astype(np.float64)
