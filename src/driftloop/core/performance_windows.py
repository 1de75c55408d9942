"""Performance per time window of served traffic: realized (from the labels that came back) beside estimated.

Labels arrive late and partly, so each window says how many of its rows are labelled (the coverage). Its realized
value is the label check's metric on those rows (``core.label_check``), only once at least ``min_labels`` came
back; its estimate is the label-free one (``core.performance_estimate``) on all of its rows. The window is the time
the prediction was served, not the time its label arrived: a window's realized value fills in as labels come.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from driftloop.core.check_record import share_of_rows
from driftloop.core.label_check import check_labels
from driftloop.core.performance_estimate import Calibration, estimate_performance
from driftloop.core.task import Task


@dataclass(frozen=True)
class WindowPerformance:
    """One window of served predictions.

    Attributes:
        start: The window's first moment (UTC), windows being ``[start, start + every)``.
        version: The model version that served these rows (a window served by two versions has a row for each).
        rows: Predictions served in it.
        labelled: Of them, rows whose usable true label came back.
        metric: The realized metric's name: accuracy (classifiers) or rmse (regressors).
        realized: The metric on the labelled rows; None below ``min_labels``.
        estimated_accuracy: The label-free expected accuracy (classifiers with a calibration); else None.
    """

    start: datetime
    version: str
    rows: int
    labelled: int
    metric: str
    realized: float | None
    estimated_accuracy: float | None

    @property
    def coverage(self) -> float:
        return self.labelled / self.rows if self.rows else 0.0


def performance_by_window(
    frame: pd.DataFrame,
    task: Task,
    calibrations: Mapping[str, Calibration | None],
    every: str,
    min_labels: int,
    min_rows: int,
) -> list[WindowPerformance]:
    """Each non-empty window's figures, oldest first.

    Args:
        frame: Prediction log rows: ``ts`` (UTC), ``model_version``, ``label``, ``probability``, ``actual`` (None
            where no label).
        task: The model's task.
        calibrations: Each version's calibration (its rows' estimate); a version missing or None: no estimate.
        every: The window length as pandas spells a frequency: ``1h``, ``1D``, ``7D``.
        min_labels: Fewer usable labels than this leave ``realized`` empty (the label check's own minimum).
        min_rows: Fewer rows than this are not estimated.

    Raises:
        ValueError: ``every`` is not a frequency.
    """
    if frame.empty:
        return []
    keys = frame["ts"].dt.floor(pd.tseries.frequencies.to_offset(every)).rename("start")
    windows = []
    for (start, version), rows in frame.groupby([keys, frame["model_version"].astype(str)], sort=True):
        labelled = rows[rows["actual"].notna()]
        check = check_labels(task, labelled["label"].to_numpy(), labelled["actual"].to_numpy(), np.nan, min_labels, 0.0)
        estimate = estimate_performance(
            calibrations.get(str(version)),
            task,
            rows["probability"].to_numpy(),
            rows["label"].to_numpy(),
            np.nan,
            0.0,
            min_rows,
        )
        windows.append(
            WindowPerformance(
                start=pd.Timestamp(str(start)).to_pydatetime(),
                version=str(version),
                rows=len(rows),
                labelled=check.rows,
                metric=check.metric,
                realized=check.value,
                estimated_accuracy=estimate.accuracy,
            )
        )
    return windows


def format_windows(windows: list[WindowPerformance]) -> list[dict[str, str]]:
    """One row of text per window, for a terminal table (``driftloop monitor``).

    A regressor's rows have no estimated accuracy column: its error cannot be estimated without labels.
    """
    rows = []
    for w in windows:
        row = {
            "window from (UTC)": w.start.strftime("%Y-%m-%d %H:%M"),
            "version": w.version,
            "rows": f"{w.rows:,}",
            "labelled": f"{w.labelled:,}",
            "coverage": share_of_rows(w.coverage),  # as the checks table: 800 of 802 is 99%
            f"realized {w.metric}": "-" if w.realized is None else f"{w.realized:.4g}",
        }
        if w.metric == "accuracy":
            row["estimated accuracy"] = "-" if w.estimated_accuracy is None else f"{w.estimated_accuracy:.3f}"
        rows.append(row)
    return rows
