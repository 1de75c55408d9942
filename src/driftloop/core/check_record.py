"""One drift check as the monitoring store keeps it: the figures an operator follows over time.

Built from the check's parts (the features' verdict, the label check, the estimate, the target test and what the
loop did about it); ``io.check_store`` keeps one row per check, ``driftloop monitor`` prints them and the server
exposes the newest as Prometheus metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server reads records (its metrics) without loading pandas, which core.drift needs
    from driftloop.core.drift import ColumnDrift, DriftVerdict
    from driftloop.core.label_check import LabelCheck
    from driftloop.core.performance_estimate import PerformanceEstimate

TOP_COLUMNS = 10  # the columns kept per check: the strongest drifts, then the closest to drifting


@dataclass(frozen=True)
class CheckRecord:
    """The figures of one check.

    Attributes:
        rows: Predictions in the window.
        labelled_rows: Of them, rows whose true label came back (usable by the task).
        columns: Per column, its score, threshold, method and whether it drifted (the ``TOP_COLUMNS`` strongest).
        estimated_accuracy: With ``estimated_low``/``_high``, the label-free estimate and its 95% interval.
        realized_value: The label check's metric (``realized_metric``) on the labelled rows, when judged.
        action: What the loop did: emit, re_emit, wait, close, none...
    """

    ts: datetime
    model_name: str
    model_version: str
    rows: int
    verdict: str
    share: float
    weighted_share: float | None
    decided_by: str
    drifted_columns: list[str]
    columns: list[dict[str, Any]]
    prediction_drift: bool | None
    target_drift: bool | None
    estimate: str
    estimated_accuracy: float | None
    estimated_low: float | None
    estimated_high: float | None
    estimated_roc_auc: float | None
    labels: str
    realized_metric: str
    realized_value: float | None
    labelled_rows: int
    action: str
    episode: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label_coverage(self) -> float | None:
        """The share of the window's rows whose label came back; None for an empty window."""
        return self.labelled_rows / self.rows if self.rows else None

    @property
    def opened_episode(self) -> bool:
        return self.action in ("emit", "re_emit")


def build_record(
    ts: datetime,
    model_name: str,
    model_version: str,
    verdict: DriftVerdict,
    labels: LabelCheck,
    estimate: PerformanceEstimate,
    target: ColumnDrift | None,
    action: str,
    episode: str | None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    segments: list[dict[str, Any]] | None = None,
) -> CheckRecord:
    """The record of a check from its parts."""
    interval = estimate.accuracy_interval
    return CheckRecord(
        ts=ts,
        model_name=model_name,
        model_version=model_version,
        rows=verdict.rows,
        verdict=verdict.status,
        share=verdict.share,
        weighted_share=verdict.weighted_share,
        decided_by=verdict.decided_by(),
        drifted_columns=list(verdict.drifted_columns),
        columns=[_column(c) for c in _strongest(verdict.columns)],
        prediction_drift=verdict.prediction_drift,
        target_drift=None if target is None else target.drifted,
        estimate=estimate.status,
        estimated_accuracy=estimate.accuracy,
        estimated_low=None if interval is None else interval[0],
        estimated_high=None if interval is None else interval[1],
        estimated_roc_auc=estimate.roc_auc,
        labels=labels.status,
        realized_metric=labels.metric,
        realized_value=labels.value,
        labelled_rows=labels.rows,
        action=action,
        episode=episode,
        window_start=window_start,
        window_end=window_end,
        segments=segments or [],
    )


def _strongest(columns: list[ColumnDrift]) -> list[ColumnDrift]:
    return sorted(columns, key=lambda c: (not c.drifted, -_finite(c.strength)))[:TOP_COLUMNS]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 1e300


def _column(column: ColumnDrift) -> dict[str, Any]:
    score = column.score if math.isfinite(column.score) else None
    return {
        "column": column.column,
        "method": column.method,
        "score": score,
        "threshold": column.threshold,
        "strength": None if not math.isfinite(column.strength) else round(column.strength, 6),
        "drifted": column.drifted,
    }


def format_checks(records: list[CheckRecord]) -> list[dict[str, str]]:
    """One row of text per check, for a terminal table (``driftloop monitor``)."""
    return [
        {
            "checked (UTC)": r.ts.strftime("%Y-%m-%d %H:%M"),
            "version": r.model_version,
            "rows": f"{r.rows:,}",
            "features": r.verdict,  # the feature verdict; the label and estimate columns say theirs
            "share": "-" if r.verdict == "insufficient data" else f"{r.share:.2f}",
            "weighted": _number(r.weighted_share, ".2f"),
            "top drifting": ", ".join(r.drifted_columns[:3]) or "-",
            "drifting segments": ", ".join(s["segment"] for s in r.segments if s.get("verdict") == "drift") or "-",
            "estimated acc.": _estimate(r),
            "realized": _realized(r),
            "labels": f"{r.labelled_rows:,} ({share_of_rows(r.label_coverage)})",
            "action": r.action,
        }
        for r in records
    ]


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def share_of_rows(value: float | None) -> str:
    """Whole percents rounded down, so that 100% means every row and 0% none: 999 of 1,000 is 99%."""
    if value is None:
        return "-"
    whole = math.floor(value * 100)
    return "<1%" if whole == 0 and value > 0 else f"{whole}%"


DEGRADED = "degraded"  # the status of a label check or an estimate beyond its allowed drop


def _estimate(record: CheckRecord) -> str:
    if record.estimated_accuracy is None:
        return "n/a"
    low, high = record.estimated_low, record.estimated_high
    interval = "" if low is None or high is None else f" ({low:.3f}–{high:.3f})"
    return f"{record.estimated_accuracy:.3f}{interval}" + _degraded(record.estimate)


def _realized(record: CheckRecord) -> str:
    if record.realized_value is None:
        return "-"
    return f"{record.realized_metric} {record.realized_value:.4g}" + _degraded(record.labels)


def _degraded(status: str) -> str:
    """A column's mark when its check found the model worse than on its holdout (a reason to open an episode)."""
    return f" {DEGRADED}" if status == DEGRADED else ""
