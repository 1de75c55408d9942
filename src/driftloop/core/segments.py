"""Drift and performance per segment: the window split by a categorical column the schema names (``segments``).

A change confined to one segment (one contract type, one region) is diluted in the whole window's verdict. Each
segment's rows are tested against the reference rows of the same segment: those of the profile's seeded sample
(``ReferenceProfile.sample``, up to 5,000 training rows), so no more is stored. With a reference of at most 1,000
rows Evidently's rules pick p-value tests (K-S, chi-square, Z), as they would for any small reference. The
segment's estimate and realized performance are the whole check's, on its rows only. Segments are reported; the
episode policy does not act on them.

A segment's drift test and its estimate use a seeded sample of at most ``SEGMENT_WINDOW_ROWS`` of its window rows.
Its reference has at most a few thousand rows, and a two-sample test's power is set by the smaller sample: K-S on
1,000 reference rows against 20,000 window rows has an effective size of 952 rows, against 200,000 of 995, for ten
times the work. Realized performance uses every labelled row of the segment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from driftloop.core.drift import ReferenceProfile, build_profile, check_drift
from driftloop.core.label_check import check_labels
from driftloop.core.performance_estimate import estimate_performance
from driftloop.core.sampling import sample_positions
from driftloop.core.task import Task

MIN_REFERENCE_ROWS = 100  # fewer reference rows of a segment in the sample: it is not tested
SEGMENT_WINDOW_ROWS = 20_000  # a segment's drift test and estimate sample its window rows down to this many
MISSING = "(missing)"  # the segment of rows whose segment column is missing


@dataclass(frozen=True)
class SegmentCheck:
    """One segment's figures. ``verdict`` is the drift test's status, or why the segment was not tested."""

    column: str
    value: str
    rows: int
    verdict: str
    share: float | None = None
    drifted_columns: tuple[str, ...] = ()
    estimated_accuracy: float | None = None
    labelled: int = 0
    realized_metric: str = ""
    realized: float | None = None
    tested_rows: int = 0  # window rows the drift test and estimate used (a sample when the segment has more)

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "segment": self.name,
            "rows": self.rows,
            "verdict": self.verdict,
            "share": self.share,
            "drifted_columns": list(self.drifted_columns),
            "estimated_accuracy": self.estimated_accuracy,
            "labelled": self.labelled,
            "realized_metric": self.realized_metric,
            "realized": self.realized,
            "tested_rows": self.tested_rows,
        }

    def summary(self) -> str:
        if self.share is None:
            return f"{self.name}: {self.verdict} ({self.rows:,} rows)"
        drifted = f"drifted: {', '.join(self.drifted_columns[:3])}; " if self.drifted_columns else ""
        text = f"{self.name}: {self.verdict} ({drifted}share {self.share:.2f}, {self.rows:,} rows"
        if 0 < self.tested_rows < self.rows:
            text += f" (tested on {self.tested_rows:,})"
        if self.estimated_accuracy is not None:
            text += f", estimated accuracy {self.estimated_accuracy:.3f}"
        if self.realized is not None:
            text += f", {self.realized_metric} {self.realized:.4g} on {self.labelled:,} labels"
        return text + ")"


def check_segments(
    profile: ReferenceProfile,
    window: pd.DataFrame,
    segments: Sequence[str],
    task: Task,
    *,
    drift_share: float,
    min_rows: int,
    label_min_rows: int,
    seed: int = 0,
) -> list[SegmentCheck]:
    """Each segment value seen in the window, most rows first within a column.

    Args:
        profile: The champion's profile; its sample gives each segment's reference rows.
        window: The prediction log's window: features, ``label``, ``probability``, ``actual``.
        segments: The schema's segment columns (categorical features).
        task: The model's task.
        drift_share: The whole check's; a segment is drift when this share of its columns drifted.
        min_rows: Fewer window rows in a segment: not tested.
        label_min_rows: Fewer labels in a segment: its realized value is not computed.
        seed: Seeds the sample of a segment's window rows that its drift test and estimate use.
    """
    numeric, categorical = list(profile.numeric), list(profile.categorical)
    rng = np.random.default_rng(seed)
    probability, predicted = window["probability"].to_numpy(), window["label"].to_numpy()
    actual, known = window["actual"].to_numpy(), window["actual"].notna().to_numpy()
    results = []
    for column in segments:
        if column not in profile.categorical or column not in window:
            continue
        reference_values = profile.sample[column].astype(object).where(profile.sample[column].notna(), MISSING)
        for value, positions in _segment_rows(window[column]):
            label = str(value)
            reference = profile.sample[reference_values == value]
            labelled = positions[known[positions]]
            labelled_rows = len(labelled)
            if len(positions) < min_rows:
                why = f"not tested: fewer than {min_rows} rows"
                results.append(SegmentCheck(column, label, len(positions), why, labelled=labelled_rows))
                continue
            if len(reference) < MIN_REFERENCE_ROWS:
                why = f"not tested: {len(reference)} reference rows"
                results.append(SegmentCheck(column, label, len(positions), why, labelled=labelled_rows))
                continue
            # The segment column is one value on both sides within a segment (or missing throughout): not tested.
            others = [name for name in categorical if name != column]
            segment_profile = build_profile(
                reference, numeric, others, sample_rows=1, thresholds=profile.thresholds, workers=1
            )
            tested = positions[sample_positions(len(positions), SEGMENT_WINDOW_ROWS, rng)]
            verdict = check_drift(segment_profile, window.iloc[tested], drift_share=drift_share, min_rows=min_rows)
            # Figures only: the segments are reported, not judged against the holdout (NaN baselines).
            labels = check_labels(task, predicted[labelled], actual[labelled], math.nan, label_min_rows, 0.0)
            estimate = estimate_performance(
                profile.calibration, task, probability[tested], predicted[tested], math.nan, 0.0, min_rows
            )
            results.append(
                SegmentCheck(
                    column,
                    label,
                    len(positions),
                    verdict.status,
                    verdict.share,
                    tuple(verdict.drifted_columns),
                    estimate.accuracy,
                    labels.rows,
                    labels.metric,
                    labels.value,
                    len(tested),
                )
            )
    return sorted(results, key=lambda s: (segments.index(s.column), -s.rows, s.value))


def _segment_rows(values: pd.Series) -> list[tuple[object, np.ndarray]]:
    """Each value of a segment column (``MISSING`` for missing ones) and the positions of its rows.

    By integer codes (``pd.factorize``), not a groupby over the values: on a 1M-row window that grouping of
    Python strings cost more than the segments' drift tests.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    found = [(uniques[code], np.flatnonzero(codes == code)) for code in range(len(uniques))]
    missing = np.flatnonzero(codes < 0)
    return found + ([(MISSING, missing)] if missing.size else [])


def drifted_segments(checks: Sequence[SegmentCheck]) -> list[str]:
    """The names of the segments whose own test found drift."""
    return [s.name for s in checks if s.verdict == "drift"]
