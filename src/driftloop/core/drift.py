"""Data-drift verdicts that agree with Evidently 0.7.23's ``DataDriftPreset``, computed from a reference profile.

The rules, read from Evidently's source (``legacy/calculations/data_drift.py:get_one_column_drift``,
``legacy/calculations/stattests/registry.py:_get_default_stattest`` and the test modules beside it):

* Per column, missing values (NaN, None, ±inf) are dropped first, on each side. "Reference size" below is the
  number of values left in the *reference column*, not the frame's row count.
* ``distinct`` is the number of distinct values in reference and current together.
* Reference size ≤ 1000: numerical with ``distinct`` > 5 → K-S p-value; otherwise (and for categorical columns)
  chi-square p-value if ``distinct`` > 2, else Z-test p-value. Threshold 0.05; drift ⇔ p < 0.05, except K-S:
  p ≤ 0.05. One departure, on purpose: the chi-square is the two-sample test of homogeneity, where Evidently's is
  the goodness-of-fit test against the reference's proportions, which flags unchanged traffic far more often than
  5% when the reference is that small (``_two_sample_chi_square_p_value``).
* Reference size > 1000: numerical with ``distinct`` > 5 → Wasserstein distance normed by the reference's
  population std (at least 0.001); otherwise, and for every categorical column → Jensen-Shannon distance
  (natural log, on category frequencies, no smoothing). Threshold 0.1; drift ⇔ distance ≥ 0.1.
* Dataset drift ⇔ share of drifted columns ≥ ``drift_share`` (default 0.5).

Column kinds are given explicitly, as Evidently's ``DataDefinition(numerical_columns=..., categorical_columns=...)``
receives them in ``io.drift_report``. Binary (0/1) features go in as numerical (they are ``DatasetSchema.numeric``):
with two distinct values Evidently tests a numerical column exactly as it tests a categorical one (Z-test or
Jensen-Shannon), and the HTML report then shows them as numbers. Categorical values are compared as text.

Drift that matters: a profile may carry the model's permutation importances (measured on its holdout at training
time), normalised to weights (negative ones count as 0). The importance-weighted share is the weight of the drifted
features. ``DriftRule`` says which share decides the verdict: ``share`` (Evidently's, the default), ``weighted``, or
``either``; each is compared with ``drift_share``, and the verdict says which fired. Without weights (a profile
saved before they were kept, or a model no feature matters to), ``weighted`` falls back to the plain share, saying so.

Prediction drift: the model's own output is one more monitored column, tested by the same rules, reported
beside the feature verdict and never counted in the share (which stays Evidently's: drifted *feature* columns).
Its reference is the candidate's holdout output (``prediction_values``); the current side is the prediction
log's ``probability`` (binary: positive-class probability, regression: the value) or ``label`` (multiclass: the
predicted class) column. A profile saved without it reports prediction drift as not available.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from driftloop.core.drift_rule import DRIFT_RULES, DriftRule, DriftStatus, apply_rule
from driftloop.core.performance_estimate import Calibration
from driftloop.core.sampling import sample_positions
from driftloop.core.task import Task, TaskKind, as_text
from driftloop.errors import DatasetError

__all__ = [
    "CHI_SQUARE",
    "JENSEN_SHANNON",
    "KS",
    "NO_CURRENT_VALUES",
    "PREDICTION",
    "WASSERSTEIN",
    "Z_TEST",
    "CategoricalReference",
    "ColumnDrift",
    "ColumnKind",
    "DriftStatus",
    "DriftVerdict",
    "NumericReference",
    "PredictionReference",
    "ReferenceProfile",
    "TargetReference",
    "build_profile",
    "check_drift",
    "check_target_drift",
    "importance_weights",
    "prediction_column",
    "prediction_values",
    "sample_frame",
    "window_predictions",
]

ColumnKind = Literal["numerical", "categorical"]

# Method names exactly as Evidently reports them (ValueDrift's ``method``).
KS = "K-S p_value"
CHI_SQUARE = "chi-square p_value"
Z_TEST = "Z-test p_value"
WASSERSTEIN = "Wasserstein distance (normed)"
JENSEN_SHANNON = "Jensen-Shannon distance"
# Ours alone: the current window has no value at all in the column (Evidently raises instead).
NO_CURRENT_VALUES = "no current values"

P_VALUE_METHODS = frozenset({KS, CHI_SQUARE, Z_TEST})
P_VALUE_THRESHOLD = 0.05
DISTANCE_THRESHOLD = 0.1
SMALL_REFERENCE = 1000  # reference values at or below this: p-value tests
FEW_VALUES = 5  # a numerical column with at most this many distinct values is tested like a categorical one
TWO_VALUES = 2  # at most this many distinct values (reference ≤ 1000): Z-test instead of chi-square
MIN_NORM = 0.001  # Wasserstein's divisor when the reference's std is smaller

PREDICTION = "prediction"  # the prediction column's name, unless a feature has it
PREDICTION_FALLBACK = "__prediction__"
# The prediction log window's column that holds the model's output, by the prediction column's kind.
PREDICTION_SOURCES: dict[ColumnKind, str] = {"numerical": "probability", "categorical": "label"}


@dataclass(frozen=True, eq=False)
class NumericReference:
    """What the numerical tests need from one reference column."""

    values: np.ndarray  # the finite values, sorted, float64
    std: float  # population std (ddof=0) computed as Evidently does, in the original row order
    distinct: int

    @property
    def count(self) -> int:
        return int(self.values.size)


@dataclass(frozen=True)
class CategoricalReference:
    """Category (as text) → count in the reference, missing values left out."""

    counts: Mapping[str, int]

    @property
    def count(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, eq=False)
class PredictionReference:
    """The model's output on its holdout: the reference side of the prediction-drift test."""

    column: str
    reference: NumericReference | CategoricalReference

    @property
    def kind(self) -> ColumnKind:
        return "numerical" if isinstance(self.reference, NumericReference) else "categorical"

    @property
    def source(self) -> str:
        """The prediction log window's column holding the same quantity."""
        return PREDICTION_SOURCES[self.kind]


@dataclass(frozen=True, eq=False)
class TargetReference:
    """The training rows' target: the reference side of the target-drift test (the labels that come back)."""

    column: str
    reference: NumericReference | CategoricalReference


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Everything a drift check needs from the reference data, so only the current window is read at check time.

    ``sample`` is a seeded random sample of the reference rows (profile columns only), for the HTML report.
    ``columns`` and ``kinds`` are the features only; ``prediction`` is None in a profile saved before
    prediction drift was monitored. ``weights`` (``importance_weights``: each feature's, summing to 1) is None in
    one saved before importances were kept.
    """

    rows: int
    numeric: Mapping[str, NumericReference]
    categorical: Mapping[str, CategoricalReference]
    sample: pd.DataFrame
    prediction: PredictionReference | None = None
    weights: Mapping[str, float] | None = None
    calibration: Calibration | None = None  # the model's (core.performance_estimate); None in older profiles
    target: TargetReference | None = None  # the training target (target drift); None in older profiles
    thresholds: Mapping[str, float] | None = None  # per-column drift thresholds from the schema; None: the defaults
    segments: tuple[str, ...] = ()  # the schema's segment columns (core.segments)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        """Each column's type as Evidently sees it."""
        kinds: dict[str, ColumnKind] = dict.fromkeys(self.numeric, "numerical")
        kinds.update(dict.fromkeys(self.categorical, "categorical"))
        return kinds


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test. ``score`` is a p-value or a distance, depending on ``method``."""

    column: str
    kind: ColumnKind
    method: str
    threshold: float
    score: float
    drifted: bool

    @property
    def strength(self) -> float:
        """How far past (> 1) or short of (< 1) its threshold the score is, comparable across methods."""
        if math.isnan(self.score):
            return math.inf
        if self.method in P_VALUE_METHODS:
            return self.threshold / self.score if self.score > 0 else math.inf
        return self.score / self.threshold

    def detail(self) -> str:
        """``chisquare 0.0074, threshold 0.05``: the test, its score and the threshold it is judged by."""
        return f"{self.method} {self.score:.4g}, threshold {self.threshold:g}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "threshold": _json_float(self.threshold),
            "score": _json_float(self.score),
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftVerdict:
    """The outcome of one drift check. ``drifted_columns`` is ordered from the most strongly drifted.

    ``columns``, ``drifted_columns``, ``share`` and ``status`` are about the features. ``prediction`` is the
    model output's own test, not counted in them; None when it was not available (a profile without it, no
    predictions given, or too few rows to test anything).
    """

    status: DriftStatus
    rows: int
    min_rows: int
    drift_share: float
    share: float
    drifted_columns: list[str]
    columns: list[ColumnDrift]
    reference_rows: int = 0
    prediction: ColumnDrift | None = None
    weighted_share: float | None = None  # the drifted features' importance weight; None without weights
    rule: DriftRule = "share"
    fired: tuple[str, ...] = ()  # each share that reached drift_share, as "share 0.60" / "weighted share 0.81"
    rule_note: str = ""  # why the rule could not be applied as asked (no weights), else empty

    @property
    def is_drift(self) -> bool:
        return self.status == "drift"

    @property
    def prediction_drift(self) -> bool | None:
        """Whether the model's output drifted; None when that was not tested."""
        return None if self.prediction is None else self.prediction.drifted

    def top(self, limit: int = 5) -> list[ColumnDrift]:
        """The most strongly drifted columns, at most ``limit``."""
        by_name = {c.column: c for c in self.columns}
        return [by_name[name] for name in self.drifted_columns[:limit]]

    def summary(self) -> str:
        if self.status == "insufficient data":
            return f"insufficient data: {self.rows:,} rows in the window, at least {self.min_rows:,} needed"
        relation = "≥" if self.share >= self.drift_share else "<"
        text = (
            f"{self.status}: {len(self.drifted_columns)} of {len(self.columns)} columns drifted "
            f"(share {self.share:.2f} {relation} drift_share {self.drift_share:.2f}) in {self.rows:,} rows"
        )
        if self.weighted_share is not None:
            relation = "≥" if self.weighted_share >= self.drift_share else "<"
            text += f"; importance-weighted share {self.weighted_share:.2f} {relation} {self.drift_share:.2f}"
        if self.rule != "share":
            text += f"; {self.decided_by()}"
        top = self.top(3)
        if top:
            text += "; top: " + ", ".join(f"{c.column} ({c.method} {_fmt_score(c.score)})" for c in top)
        return f"{text}; {self._prediction_text()}"

    def decided_by(self) -> str:
        """Which rule decided, and what fired under it: the verdict's reason in one phrase."""
        if self.status == "insufficient data":
            return "no rule applied"
        fired = ", ".join(self.fired) if self.fired else "nothing reached drift_share"
        note = f" ({self.rule_note})" if self.rule_note else ""
        return f"rule {self.rule}{note}: {fired}"

    def _prediction_text(self) -> str:
        c = self.prediction
        if c is None:
            return "prediction drift: not available"
        return f"prediction: {'drift' if c.drifted else 'no drift'} ({c.method} {_fmt_score(c.score)})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "rows": self.rows,
            "min_rows": self.min_rows,
            "reference_rows": self.reference_rows,
            "drift_share": self.drift_share,
            "share": self.share,
            "weighted_share": self.weighted_share,
            "rule": self.rule,
            "fired": list(self.fired),
            "rule_note": self.rule_note,
            "drifted_columns": list(self.drifted_columns),
            "columns": [c.as_dict() for c in self.columns],
            "prediction": None if self.prediction is None else self.prediction.as_dict(),
        }

    def markdown(self, top: int = 10) -> str:
        """A short Markdown summary (verdict, share, window, top drifted columns), e.g. for a Prefect artifact."""
        lines = [
            f"### Drift check: **{self.status}**",
            "",
            "| | |",
            "|---|---|",
            f"| Verdict | {self.status} |",
        ]
        if self.status == "insufficient data":
            lines.append(f"| Window | {self.rows:,} rows (at least {self.min_rows:,} needed) |")
        else:
            lines += [
                f"| Drifted columns | {len(self.drifted_columns)} of {len(self.columns)} "
                f"(share {self.share:.2f}; dataset drift at ≥ {self.drift_share:.2f}) |",
                f"| Importance-weighted share | {self._weighted_cell()} |",
                f"| Decided by | {self.decided_by()} |",
                f"| Window | {self.rows:,} rows (minimum {self.min_rows:,}) |",
            ]
        if self.reference_rows:
            lines.append(f"| Reference | {self.reference_rows:,} rows |")
        if self.status != "insufficient data":
            lines.append(f"| Predictions | {self._prediction_cell()} |")
        shown = self.top(top)
        if shown:
            lines += ["", "| Column | Method | Score | Threshold |", "|---|---|---|---|"]
            lines += [f"| {c.column} | {c.method} | {_fmt_score(c.score)} | {c.threshold:g} |" for c in shown]
            hidden = len(self.drifted_columns) - len(shown)
            if hidden > 0:
                lines += ["", f"… and {hidden} more drifted column(s)."]
        return "\n".join(lines) + "\n"

    def _weighted_cell(self) -> str:
        if self.weighted_share is None:
            return "not available (no importances in the reference profile)"
        return f"{self.weighted_share:.2f}"

    def _prediction_cell(self) -> str:
        c = self.prediction
        if c is None:
            return "not available (no prediction reference or no predictions)"
        threshold = "" if math.isnan(c.threshold) else f", threshold {c.threshold:g}"
        return (
            f"{'drift' if c.drifted else 'no drift'} ({c.method} {_fmt_score(c.score)}{threshold}); "
            "not counted in the share"
        )


def prediction_column(features: Iterable[str]) -> str:
    """The prediction column's name: ``prediction``, or ``__prediction__`` when a feature is called that."""
    return PREDICTION_FALLBACK if PREDICTION in set(features) else PREDICTION


def prediction_values(task: Task, scores: np.ndarray) -> tuple[np.ndarray, ColumnKind]:
    """What prediction drift monitors of a model's scores (``Task.scores``), and as which kind of column.

    Binary: the positive class's probability; regression: the value (both numerical). Multiclass: the predicted
    class's name (categorical), as the prediction log's ``label`` column holds it.
    """
    if task.kind is TaskKind.MULTICLASS:
        names: np.ndarray = np.asarray(task.classes, dtype=object)[task.predicted(scores)]
        return names, "categorical"
    return np.asarray(scores, dtype=np.float64).reshape(-1), "numerical"


def window_predictions(profile: ReferenceProfile, window: pd.DataFrame) -> pd.Series | None:
    """The window's column to test against the profile's prediction reference; None if either is missing."""
    if profile.prediction is None or profile.prediction.source not in window.columns:
        return None
    series: pd.Series = window[profile.prediction.source]
    return series


def importance_weights(importances: Mapping[str, float], columns: Sequence[str]) -> dict[str, float] | None:
    """Each column's share of the total importance (a negative or missing one counts as 0); None if none is > 0.

    Permutation importance is negative when shuffling a feature happened to help: the model does not rely on it.
    """
    clipped = {name: max(float(importances.get(name, 0.0)), 0.0) for name in columns}
    clipped = {name: value if math.isfinite(value) else 0.0 for name, value in clipped.items()}
    total = sum(clipped.values())
    if total <= 0:
        return None
    return {name: value / total for name, value in clipped.items()}


def build_profile(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    sample_rows: int = 5000,
    seed: int = 0,
    *,
    predictions: np.ndarray | pd.Series | None = None,
    prediction_kind: ColumnKind = "numerical",
    importances: Mapping[str, float] | None = None,
    calibration: Calibration | None = None,
    target: pd.Series | None = None,
    target_kind: ColumnKind = "categorical",
    thresholds: Mapping[str, float] | None = None,
    segments: Sequence[str] = (),
    workers: int = 2,
) -> ReferenceProfile:
    """Precompute the reference side of every drift test, and keep a seeded sample of rows for the report.

    ``predictions``, the model's output on its holdout (``prediction_values``, any length), becomes the
    prediction reference, a column of kind ``prediction_kind``; without it the profile has none.
    ``importances`` (each feature's permutation importance) become the profile's ``weights``; ``calibration``
    is kept as given (``core.performance_estimate.fit_calibration``); ``target`` (the training rows' target, a
    column of kind ``target_kind``: categorical for classifiers, numerical for regressors) becomes the reference
    of target drift. ``thresholds`` (the schema's per-column ``drift_threshold``) replace the tests' default
    thresholds for those columns; ``segments`` are kept for the checks (``core.segments``). ``frame`` may hold other
    columns too. The numerical columns are sorted on ``workers`` threads (numpy's sort releases the GIL).

    Raises:
        DatasetError: a column is missing, listed twice, not numerical where it should be, or has no value.
    """
    numeric, categorical = list(numeric), list(categorical)
    columns = numeric + categorical
    if not columns:
        raise DatasetError("a reference profile needs at least one column; none were given")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DatasetError(f"columns listed more than once (numerical and categorical?): {repeated}")
    _require_columns(frame, columns, "reference")
    if sample_rows < 1:
        raise DatasetError(f"sample_rows must be at least 1, got {sample_rows}")

    if workers > 1 and len(numeric) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            columns_of = [frame[name] for name in numeric]  # read here: the threads only sort
            numeric_refs = dict(zip(numeric, pool.map(_numeric_reference, columns_of, numeric), strict=True))
    else:
        numeric_refs = {name: _numeric_reference(frame[name], name) for name in numeric}
    categorical_refs = {name: _categorical_reference(frame[name], name) for name in categorical}
    prediction = None
    if predictions is not None:
        column = prediction_column(columns)
        series = pd.Series(np.asarray(predictions), name=column)
        reference: NumericReference | CategoricalReference = (
            _numeric_reference(series, column)
            if prediction_kind == "numerical"
            else _categorical_reference(series, column)
        )
        prediction = PredictionReference(column, reference)

    return ReferenceProfile(
        rows=len(frame),
        numeric=numeric_refs,
        categorical=categorical_refs,
        sample=sample_frame(frame, sample_rows, seed)[columns],
        prediction=prediction,
        weights=None if importances is None else importance_weights(importances, columns),
        calibration=calibration,
        target=None if target is None else _target_reference(target, target_kind),
        thresholds=dict(thresholds) if thresholds else None,
        segments=tuple(segments),
    )


def _target_reference(target: pd.Series, kind: ColumnKind) -> TargetReference:
    name = str(target.name) if target.name is not None else "target"
    if kind == "numerical":
        return TargetReference(name, _numeric_reference(target, name))
    return TargetReference(name, _categorical_reference(target.astype(str), name))


def check_target_drift(profile: ReferenceProfile, task: Task, labels: pd.Series, min_rows: int) -> ColumnDrift | None:
    """The labels that came back (as feedback stores them: text) against the training target, by Evidently's rules.

    Only labels the task can use count (``Task.usable_labels``: a classifier's classes, a regressor's finite
    numbers). None when the profile has no target reference or fewer than ``min_rows`` labels are usable.
    Reported beside the verdict, never counted in the share.
    """
    reference = profile.target
    if reference is None:
        return None
    values = np.asarray(labels, dtype=object)
    usable = values[task.usable_labels(values)]
    if usable.size < min_rows:
        return None
    if isinstance(reference.reference, NumericReference):
        return _numeric_drift(reference.column, reference.reference, pd.Series(usable.astype(np.float64)))
    return _categorical_drift(reference.column, reference.reference, pd.Series(as_text(usable)))


def _numeric_reference(series: pd.Series, name: str) -> NumericReference:
    clean = _numeric_series(series, name, "reference")
    clean = clean[np.isfinite(clean.to_numpy(dtype=np.float64, na_value=np.nan))]
    if clean.empty:
        raise DatasetError(f"column {name!r} has no value in the reference data; drift cannot be measured")
    values = np.sort(clean.to_numpy(dtype=np.float64))
    # np.std of the Series in row order, exactly Evidently's call, so the Wasserstein divisor matches to the bit.
    std = float(np.std(clean))
    distinct = int(np.count_nonzero(np.diff(values))) + 1
    return NumericReference(values=values, std=std, distinct=distinct)


def _categorical_reference(series: pd.Series, name: str) -> CategoricalReference:
    counts = _category_counts(series)
    if not counts:
        raise DatasetError(f"column {name!r} has no value in the reference data; drift cannot be measured")
    return CategoricalReference(counts=dict(sorted(counts.items())))


def check_drift(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    drift_share: float = 0.5,
    min_rows: int = 100,
    *,
    workers: int = 2,
    predictions: pd.Series | None = None,
    rule: DriftRule = "share",
) -> DriftVerdict:
    """Test every profile column of ``current`` against the reference, as Evidently's DataDriftPreset would.

    Fewer than ``min_rows`` current rows give ``"insufficient data"`` and test nothing. Columns of ``current``
    that are not in the profile are ignored. Columns are tested on ``workers`` threads (numpy's sorts and
    arithmetic release the GIL); the result does not depend on it.

    ``predictions`` (the model's output per current row, see ``window_predictions``) is tested against the
    profile's prediction reference, when both exist, and reported as the verdict's ``prediction``.

    ``rule`` says which share decides (``DriftRule``); the plain share is computed and reported whatever it is.

    Raises:
        DatasetError: a profile column is missing from ``current``, or a numerical one holds non-numbers; an
            unknown ``rule``.
    """
    if len(current) >= min_rows:  # an empty window (no predictions yet) has no feature columns
        _require_columns(current, profile.columns, "current")
    column: ColumnSource = current.__getitem__
    return check_drift_columns(
        profile,
        column,
        len(current),
        drift_share,
        min_rows,
        workers=workers,
        prediction_source=None if predictions is None else lambda: predictions,
        rule=rule,
    )


ColumnSource = Callable[[str], pd.Series]


def check_drift_columns(
    profile: ReferenceProfile,
    column: ColumnSource,
    rows: int,
    drift_share: float = 0.5,
    min_rows: int = 100,
    *,
    workers: int = 2,
    prediction_source: Callable[[], pd.Series] | None = None,
    rule: DriftRule = "share",
) -> DriftVerdict:
    """``check_drift`` on a window of ``rows`` rows whose columns are fetched one at a time by ``column(name)``.

    For a window larger than memory (``io.window_spill``): at most ``workers`` columns are held at once, and the
    verdict is the in-memory one, exactly. ``prediction_source`` gives the model output's column, when tested.
    """
    if rule not in DRIFT_RULES:
        raise DatasetError(f"drift rule {rule!r}: choose one of {', '.join(DRIFT_RULES)}")
    if not 0 < drift_share <= 1:
        raise DatasetError(f"drift_share must be in (0, 1], got {drift_share}")
    if min_rows < 1:
        raise DatasetError(f"min_rows must be at least 1, got {min_rows}")
    if rows < min_rows:
        return DriftVerdict("insufficient data", rows, min_rows, drift_share, 0.0, [], [], profile.rows, rule=rule)

    tests: list[Callable[[], ColumnDrift]] = [
        partial(_fetched, _numeric_drift, name, ref, column) for name, ref in profile.numeric.items()
    ]
    tests += [partial(_fetched, _categorical_drift, name, ref, column) for name, ref in profile.categorical.items()]
    predictions = None if prediction_source is None else prediction_source()
    prediction_test = _prediction_test(profile.prediction, predictions)
    if prediction_test is not None:
        tests.append(prediction_test)  # last, so that it is popped off the results below
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda test: test(), tests))
    else:
        results = [test() for test in tests]
    prediction = results.pop() if prediction_test is not None else None
    if profile.thresholds:
        results = [with_threshold(c, profile.thresholds.get(c.column)) for c in results]
    drifted = sorted((c for c in results if c.drifted), key=lambda c: (-c.strength, c.column))
    share = len(drifted) / len(results)
    drifted_names = [c.column for c in drifted]
    weights = profile.weights
    weighted = None if weights is None else min(1.0, sum(weights.get(name, 0.0) for name in drifted_names))
    status, fired, note = apply_rule(rule, share, weighted, drift_share)
    return DriftVerdict(
        status,
        rows,
        min_rows,
        drift_share,
        share,
        drifted_names,
        results,
        profile.rows,
        prediction,
        weighted_share=weighted,
        rule=rule,
        fired=fired,
        rule_note=note,
    )


def with_threshold(column: ColumnDrift, threshold: float | None) -> ColumnDrift:
    """The same test judged at ``threshold`` instead (None: as it was), with the test's own comparison."""
    if threshold is None or math.isnan(column.score):  # no value to test is drift, whatever the threshold
        return column
    if column.method == KS:
        drifted = column.score <= threshold
    elif column.method in P_VALUE_METHODS:
        drifted = column.score < threshold
    else:
        drifted = column.score >= threshold
    return replace(column, threshold=threshold, drifted=drifted)


def _fetched(
    test: Callable[[str, Any, pd.Series], ColumnDrift], name: str, reference: Any, column: ColumnSource
) -> ColumnDrift:
    """Run one column's test on its values, fetched only now (so a lazy window holds few columns at once)."""
    return test(name, reference, column(name))


def _prediction_test(
    reference: PredictionReference | None, predictions: pd.Series | None
) -> Callable[[], ColumnDrift] | None:
    if reference is None or predictions is None:
        return None
    if isinstance(reference.reference, NumericReference):
        return partial(_numeric_drift, reference.column, reference.reference, predictions)
    return partial(_categorical_drift, reference.column, reference.reference, predictions)


def sample_frame(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows drawn without replacement (seeded), kept in their original order, index reset."""
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.iloc[sample_positions(len(frame), rows, seed)].reset_index(drop=True)


def _numeric_drift(name: str, ref: NumericReference, series: pd.Series) -> ColumnDrift:
    values = _numeric_series(series, name, "current").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    cur = values if finite.all() else values[finite]
    if cur.size == 0:
        return ColumnDrift(name, "numerical", NO_CURRENT_VALUES, math.nan, math.nan, True)
    small = ref.count <= SMALL_REFERENCE
    if ref.distinct <= FEW_VALUES:
        ref_keys, ref_counts = np.unique(ref.values, return_counts=True)
        cur_keys, cur_counts = np.unique(cur, return_counts=True)
        keys = np.union1d(ref_keys, cur_keys)
        if keys.size <= FEW_VALUES:
            return _discrete_drift(
                name,
                "numerical",
                _aligned(keys, ref_keys, ref_counts),
                _aligned(keys, cur_keys, cur_counts),
                small,
            )
    if small:
        p_value = float(stats.ks_2samp(ref.values, cur).pvalue)
        return ColumnDrift(name, "numerical", KS, P_VALUE_THRESHOLD, p_value, p_value <= P_VALUE_THRESHOLD)
    score = _wasserstein_sorted(ref.values, np.sort(cur)) / max(ref.std, MIN_NORM)
    return ColumnDrift(name, "numerical", WASSERSTEIN, DISTANCE_THRESHOLD, score, score >= DISTANCE_THRESHOLD)


def _categorical_drift(name: str, ref: CategoricalReference, series: pd.Series) -> ColumnDrift:
    counts = _category_counts(series)
    if not counts:
        return ColumnDrift(name, "categorical", NO_CURRENT_VALUES, math.nan, math.nan, True)
    keys = sorted(set(ref.counts) | set(counts))
    ref_counts = np.array([ref.counts.get(k, 0) for k in keys], dtype=np.int64)
    cur_counts = np.array([counts.get(k, 0) for k in keys], dtype=np.int64)
    return _discrete_drift(name, "categorical", ref_counts, cur_counts, ref.count <= SMALL_REFERENCE)


def _discrete_drift(
    name: str, kind: ColumnKind, ref_counts: np.ndarray, cur_counts: np.ndarray, small_reference: bool
) -> ColumnDrift:
    """Counts per distinct value, aligned and in sorted key order (the Z-test's reference value is the first)."""
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    if not small_reference:
        score = float(distance.jensenshannon(ref_counts / n_ref, cur_counts / n_cur))
        return ColumnDrift(name, kind, JENSEN_SHANNON, DISTANCE_THRESHOLD, score, score >= DISTANCE_THRESHOLD)
    if ref_counts.size > TWO_VALUES:
        p_value = _two_sample_chi_square_p_value(ref_counts, cur_counts)
        return ColumnDrift(name, kind, CHI_SQUARE, P_VALUE_THRESHOLD, p_value, p_value < P_VALUE_THRESHOLD)
    p_value = _z_test_p_value(ref_counts, cur_counts)
    return ColumnDrift(name, kind, Z_TEST, P_VALUE_THRESHOLD, p_value, p_value < P_VALUE_THRESHOLD)


def _two_sample_chi_square_p_value(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Pearson's chi-square test that both samples come from one distribution (the 2 × k table of counts).

    Evidently's test is the goodness-of-fit one (``scipy.stats.chisquare`` of the current counts against the
    reference's proportions), which takes those proportions as exact. From a small reference they are not: on
    unchanged traffic of 1,000 rows it flagged a 5-value column in 34% of 2,000 simulated windows against 918
    reference rows and 70% against 300 (a retrain's recent rows: trial 54), where 5% is the test's level. This one
    counts both samples' noise: 4-5% of those windows at either size (``tests/unit/test_drift.py`` holds 40 of
    each, in both directions).
    """
    # Every value has a count on one side at least (the keys are both sides' values): no expected count is 0.
    return float(stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False).pvalue)


def _z_test_p_value(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Evidently's two-proportion Z-test, term for term (its float rounding included)."""
    if ref_counts.size == 1:  # one value, the same on both sides
        return 1.0
    n1, n2 = int(ref_counts.sum()), int(cur_counts.sum())
    p1 = float(n1 - int(ref_counts[0])) / n1
    p2 = float(n2 - int(cur_counts[0])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def _wasserstein_sorted(ref: np.ndarray, cur: np.ndarray) -> float:
    """First Wasserstein distance between two sorted samples: ∫|F_ref − F_cur| over the merged values.

    scipy.stats.wasserstein_distance's sum, but the merge is a stable argsort of two sorted runs (linear) and the
    CDF gaps are counted in whole numbers instead of two searchsorted calls over the merged array.
    """
    n, m = ref.size, cur.size
    both = np.concatenate([ref, cur])
    order = np.argsort(both, kind="stable")
    gaps = np.diff(both[order])
    # n·m·(F_ref − F_cur) after each merged value: m more for a reference value, n less for a current one. Inside
    # a run of equal values the gap is 0, so the counts there (partial) add nothing. Counted in float64, which
    # holds these whole numbers (at most n·m) exactly below 2**53, and multiplies them by the gaps in place.
    steps = np.where(order[:-1] < n, float(m), -float(n))
    np.cumsum(steps, out=steps)
    np.abs(steps, out=steps)
    steps *= gaps
    # Not np.dot: BLAS wakes its thread pool for every call, which costs more than the sum on a busy 2-core box.
    return float(steps.sum()) / (n * m)


def _aligned(keys: np.ndarray, subset: np.ndarray, counts: np.ndarray) -> np.ndarray:
    out = np.zeros(keys.size, dtype=np.int64)
    out[np.searchsorted(keys, subset)] = counts
    return out


def _numeric_series(series: pd.Series, name: str, side: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series
    try:
        return pd.to_numeric(series)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"numerical column {name!r} in the {side} data holds non-numbers: {exc}") from exc


def _category_counts(series: pd.Series) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key, count in series.value_counts(dropna=True, sort=False).items():
        if count:  # a pandas Categorical lists its unused categories with 0
            text = str(key)
            counts[text] = counts.get(text, 0) + int(count)
    return counts


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], side: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"the {side} data lacks column(s) {missing}; it has {list(frame.columns)}")


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _fmt_score(score: float) -> str:
    if math.isnan(score):
        return "—"
    return f"{score:.3g}" if score < 0.001 else f"{score:.4f}"
