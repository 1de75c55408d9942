"""Do two models score alike? Their outputs compared: the one rule for every such comparison.

Classifiers: probabilities within an absolute tolerance, and labels equal except where the two most likely classes
are within the tie band of each other. Regressors: values within ``tolerance × max(1, |expected|, median |expected|)``:
absolute for small values and relative for large ones, since a float32 graph carries about 7 significant digits of
the magnitudes it works with. Those are the outputs' typical size even where one output is near 0 (a tree
ensemble's sum of a base value near 40 and leaves near -40 rounds as numbers near 40 do; trial 15's retrains were
refused for 2e-5 on a duration near 0 while every output near 40 carried the same error).

It decides ONNX parity at export (scikit-learn vs ONNX on the holdout, or ``PARITY_ROWS`` of it), the server's
self-check when it loads a version (its outputs vs those recorded at registration) and a rollout's smoke test (a
slot's answers vs the same recording).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from driftloop.core.sampling import sample_positions
from driftloop.core.task import Task

# Export parity compares at most this many holdout rows (a seeded sample): on a 1M-row holdout, scoring every row
# with both models (and proving the grouped serving graph on them) cost more than the rest of the export.
PARITY_ROWS = 100_000


def parity_rows(rows: int, limit: int = PARITY_ROWS, seed: int = 0) -> np.ndarray:
    """The positions of the holdout rows export parity compares: every row, or a seeded sample of ``limit``."""
    return sample_positions(rows, limit, seed)


@dataclass(frozen=True)
class ParityReport:
    """The outcome of comparing two models' outputs on the same rows.

    ``max_abs_diff`` and ``mean_abs_diff`` are NaN when the outputs could not be compared (see ``reason``).
    ``ties`` counts rows whose two most likely classes are within ``2 × tie_band`` of each other (binary: the
    positive probability within ``tie_band`` of 0.5): there the label is decided by float rounding (RandomForest
    gives exactly 0.5, ONNX 0.50000006), so a mismatch there is not a defect. Regressors have no labels: the
    label fields are 0 and ``max_abs_diff`` is of the values.
    """

    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    label_mismatches: int
    label_mismatches_outside_tie_band: int
    ties: int
    tolerance: float
    tie_band: float
    passed: bool
    reason: str
    outputs: str = "probabilities"  # what max_abs_diff measures: "probabilities", or a regressor's "values"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def mismatch(self, reference: str = "the recording") -> str:
        """What differs, in a sentence, for a failed comparison against ``reference``."""
        if math.isnan(self.max_abs_diff):
            return f"outputs cannot be compared with {reference}: {self.reason}"
        if self.outputs == "values" or self.max_abs_diff > self.tolerance:
            return (
                f"{self.outputs} differ from {reference} by up to {self.max_abs_diff:.3g} "
                f"(tolerance {self.tolerance:g}) on {self.rows} sample rows"
            )
        return f"predicted labels differ from {reference} on {self.label_mismatches_outside_tie_band} row(s)"

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        if self.outputs == "values":
            return (
                f"parity {verdict} on {self.rows} rows: max |Δ| {self.max_abs_diff:.2e} "
                f"(tolerance {self.tolerance:.0e} × max(1, |value|, median |value|)), mean {self.mean_abs_diff:.2e}; "
                f"{self.reason}"
            )
        return (
            f"parity {verdict} on {self.rows} rows: max |Δp| {self.max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:.0e}), mean {self.mean_abs_diff:.2e}, "
            f"{self.label_mismatches} label mismatch(es), {self.label_mismatches_outside_tie_band} outside "
            f"the ±{self.tie_band:.0e} tie band ({self.ties} tie(s)); {self.reason}"
        )


def _failed(rows: int, tolerance: float, tie_band: float, reason: str) -> ParityReport:
    return ParityReport(
        rows=rows,
        max_abs_diff=math.nan,
        mean_abs_diff=math.nan,
        label_mismatches=0,
        label_mismatches_outside_tie_band=0,
        ties=0,
        tolerance=tolerance,
        tie_band=tie_band,
        passed=False,
        reason=reason,
    )


def compare_outputs(
    expected_proba: np.ndarray,
    actual_proba: np.ndarray,
    expected_labels: np.ndarray,
    actual_labels: np.ndarray,
    tolerance: float = 1e-5,
    tie_band: float = 1e-5,
) -> ParityReport:
    """Compare ``(n, k)`` probabilities and ``(n,)`` labels of a reference (sklearn) and a candidate (ONNX).

    Passes iff max |Δp| over both columns is ≤ ``tolerance`` and every label mismatch is a tie. Unusable
    outputs (shape mismatch, no rows, NaN) give a failed report with the reason, not an exception.

    Raises:
        ValueError: ``tolerance`` or ``tie_band`` is negative (a caller's mistake, not a model's).
    """
    if tolerance < 0 or tie_band < 0:
        raise ValueError(f"tolerance and tie_band must be >= 0; got {tolerance} and {tie_band}")
    p_exp = np.asarray(expected_proba, dtype=np.float64)
    p_act = np.asarray(actual_proba, dtype=np.float64)
    l_exp = np.asarray(expected_labels)
    l_act = np.asarray(actual_labels)
    rows = int(p_exp.shape[0]) if p_exp.ndim else 0

    if p_exp.ndim != 2 or p_exp.shape[1] < 2:
        return _failed(rows, tolerance, tie_band, f"expected probabilities have shape {p_exp.shape}, not (n, k ≥ 2)")
    if p_act.shape != p_exp.shape:
        return _failed(rows, tolerance, tie_band, f"probability shapes differ: {p_exp.shape} vs {p_act.shape}")
    if l_exp.shape != (rows,) or l_act.shape != (rows,):
        return _failed(rows, tolerance, tie_band, f"label shapes {l_exp.shape} and {l_act.shape} are not ({rows},)")
    if rows == 0:
        return _failed(rows, tolerance, tie_band, "no rows to compare")
    nan_rows = int((np.isnan(p_exp).any(axis=1) | np.isnan(p_act).any(axis=1)).sum())
    if nan_rows:
        return _failed(rows, tolerance, tie_band, f"{nan_rows} row(s) have NaN probabilities")

    diff = np.abs(p_exp - p_act)
    max_abs_diff = float(diff.max())
    mismatched = l_exp != l_act
    top_two = np.sort(p_exp, axis=1)[:, -2:]
    tied = top_two[:, 1] - top_two[:, 0] <= 2 * tie_band
    mismatches_outside = int((mismatched & ~tied).sum())

    problems = []
    if max_abs_diff > tolerance:
        over = int((diff > tolerance).any(axis=1).sum())
        problems.append(f"max |Δp| {max_abs_diff:.2e} > tolerance {tolerance:.0e} on {over} row(s)")
    if mismatches_outside:
        problems.append(f"{mismatches_outside} label mismatch(es) outside the tie band")
    return ParityReport(
        rows=rows,
        max_abs_diff=max_abs_diff,
        mean_abs_diff=float(diff.mean()),
        label_mismatches=int(mismatched.sum()),
        label_mismatches_outside_tie_band=mismatches_outside,
        ties=int(tied.sum()),
        tolerance=tolerance,
        tie_band=tie_band,
        passed=not problems,
        reason="; ".join(problems) if problems else "within tolerance",
    )


def compare_values(expected: np.ndarray, actual: np.ndarray, tolerance: float = 1e-5) -> ParityReport:
    """Compare a regressor's ``(n,)`` predictions: passes iff every ``|Δ| ≤ tolerance × max(1, |expected|, m)``.

    ``m`` is the median of ``|expected|`` over the rows: the magnitude the graph works with (module docstring).

    Raises:
        ValueError: ``tolerance`` is negative.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    v_exp = np.asarray(expected, dtype=np.float64)
    v_act = np.asarray(actual, dtype=np.float64)
    rows = int(v_exp.shape[0]) if v_exp.ndim else 0
    if v_exp.ndim == 2 and v_exp.shape[1] == 1:
        v_exp = v_exp[:, 0]
    if v_act.ndim == 2 and v_act.shape[1] == 1:
        v_act = v_act[:, 0]
    if v_exp.shape != (rows,) or v_act.shape != (rows,):
        return _failed(rows, tolerance, 0.0, f"value shapes {v_exp.shape} and {v_act.shape} are not ({rows},)")
    if rows == 0:
        return _failed(rows, tolerance, 0.0, "no rows to compare")
    not_finite = int((~np.isfinite(v_exp) | ~np.isfinite(v_act)).sum())
    if not_finite:
        return _failed(rows, tolerance, 0.0, f"{not_finite} row(s) have values that are not finite")
    diff = np.abs(v_exp - v_act)
    typical = float(np.median(np.abs(v_exp)))
    over = diff > tolerance * np.maximum(max(1.0, typical), np.abs(v_exp))
    reason = "within tolerance"
    if over.any():
        reason = (
            f"max |Δ| {float(diff.max()):.3g} beyond tolerance {tolerance:.0e} × max(1, |value|, median |value| "
            f"{typical:.3g}) on {int(over.sum())} row(s)"
        )
    return ParityReport(
        rows=rows,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        label_mismatches=0,
        label_mismatches_outside_tie_band=0,
        ties=0,
        tolerance=tolerance,
        tie_band=0.0,
        passed=not over.any(),
        reason=reason,
        outputs="values",
    )


def compare_predictions(
    task: Task,
    expected: tuple[np.ndarray, np.ndarray | None],
    actual: tuple[np.ndarray, np.ndarray | None],
    tolerance: float = 1e-5,
) -> ParityReport:
    """Compare two models' outputs for ``task``: ``(labels, probabilities)`` of a classifier, ``(values, None)``."""
    if task.is_classifier:
        if expected[1] is None or actual[1] is None:
            return _failed(len(expected[0]), tolerance, tolerance, "a classifier's outputs need probabilities")
        return compare_outputs(expected[1], actual[1], expected[0], actual[0], tolerance=tolerance, tie_band=tolerance)
    return compare_values(expected[0], actual[0], tolerance)


def compare_with_recording(selfcheck: Mapping[str, Any], first: Any, probabilities: Any = None) -> ParityReport:
    """Compare outputs with those recorded at registration (see ``io.tracking.build_selfcheck``).

    A classifier's recording holds labels and probabilities (``first`` is then the labels); a regressor's holds
    ``values`` (``first`` is then the predicted values). The recording's tolerance is also its tie band: a label may
    differ only where the recorded two most likely classes are that close. Outputs that are not numbers fail with
    the reason.

    Raises:
        ValueError: the recording itself is unreadable.
    """
    try:
        tolerance = float(selfcheck.get("tolerance", 1e-5))
        if "values" in selfcheck:
            expected_values = np.asarray(selfcheck["values"], dtype=np.float64)
        else:
            expected_labels = np.asarray(selfcheck["labels"], dtype=np.int64)
            expected = np.asarray(selfcheck["probabilities"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the recorded self-check outputs are unreadable: {error!r}") from None
    if "values" in selfcheck:
        try:
            got_values = np.asarray(first, dtype=np.float64)
        except (TypeError, ValueError):
            return _failed(len(expected_values), tolerance, 0.0, "the outputs are not numeric values")
        return compare_values(expected_values, got_values, tolerance)
    try:
        got = np.asarray(probabilities, dtype=np.float64)
        got_labels = np.asarray(first, dtype=np.int64)
    except (TypeError, ValueError):
        return _failed(len(expected), tolerance, tolerance, "the outputs are not numeric labels and probabilities")
    return compare_outputs(expected, got, expected_labels, got_labels, tolerance=tolerance, tie_band=tolerance)
