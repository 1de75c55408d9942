"""Do two models score alike? Probabilities and labels, compared: the one rule for every such comparison.

It decides ONNX parity at export (scikit-learn vs ONNX on the holdout), the server's self-check when it loads a
version (its outputs vs those recorded at registration) and a rollout's smoke test (a slot's answers vs the same
recording).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ParityReport:
    """The outcome of comparing two models' outputs on the same rows.

    ``max_abs_diff`` and ``mean_abs_diff`` are NaN when the outputs could not be compared (see ``reason``).
    ``ties`` counts rows whose expected positive probability is within ``tie_band`` of 0.5: there the label
    is decided by float rounding (RandomForest gives exactly 0.5, ONNX 0.50000006), so a mismatch there
    is not a defect.
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def mismatch(self, reference: str = "the recording") -> str:
        """What differs, in a sentence, for a failed comparison against ``reference``."""
        if math.isnan(self.max_abs_diff):
            return f"outputs cannot be compared with {reference}: {self.reason}"
        if self.max_abs_diff > self.tolerance:
            return (
                f"probabilities differ from {reference} by up to {self.max_abs_diff:.3g} "
                f"(tolerance {self.tolerance:g}) on {self.rows} sample rows"
            )
        return f"predicted labels differ from {reference} on {self.label_mismatches_outside_tie_band} row(s)"

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
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
    """Compare ``(n, 2)`` probabilities and ``(n,)`` labels of a reference (sklearn) and a candidate (ONNX).

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

    if p_exp.ndim != 2 or p_exp.shape[1] != 2:
        return _failed(rows, tolerance, tie_band, f"expected probabilities have shape {p_exp.shape}, not (n, 2)")
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
    tied = np.abs(p_exp[:, 1] - 0.5) <= tie_band
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


def compare_with_recording(selfcheck: Mapping[str, Any], labels: Any, probabilities: Any) -> ParityReport:
    """Compare outputs with those recorded at registration (``selfcheck``: labels, probabilities, tolerance).

    The recording's tolerance is also its tie band: a label may differ only where the recorded positive
    probability is that close to 0.5. Outputs that are not numbers fail with the reason.

    Raises:
        ValueError: the recording itself is unreadable.
    """
    try:
        expected_labels = np.asarray(selfcheck["labels"], dtype=np.int64)
        expected = np.asarray(selfcheck["probabilities"], dtype=np.float64)
        tolerance = float(selfcheck.get("tolerance", 1e-5))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the recorded self-check outputs are unreadable: {error!r}") from None
    try:
        got = np.asarray(probabilities, dtype=np.float64)
        got_labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        return _failed(len(expected), tolerance, tolerance, "the outputs are not numeric labels and probabilities")
    return compare_outputs(expected, got, expected_labels, got_labels, tolerance=tolerance, tie_band=tolerance)
