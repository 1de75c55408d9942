"""Evidently 0.7.23: the drift HTML report (built from bounded samples) and Evidently's own per-column verdicts.

Both calls type the columns the same way ``core.drift`` does: ``DataDefinition(numerical_columns=<profile's
numerical columns, binary ones included>, categorical_columns=<its categorical columns>)``, and pass only those
columns, so Evidently infers nothing. Results are read from the snapshot by metric type, column and metric id,
never by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.container import MetricContainer
from evidently.legacy.renderers.html_widgets import header_text, text_widget
from evidently.presets import DataDriftPreset, DataSummaryPreset

from driftloop.core.drift import DriftVerdict, ReferenceProfile, sample_frame
from driftloop.core.features import as_numbers
from driftloop.errors import DriftloopError

__all__ = ["EvidentlyDrift", "build_report", "evidently_column_verdicts"]

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS = "evidently:metric_v2:DriftedColumnsCount"
_FAILED = "FAIL"  # a drift test that fails = drift detected


class _Note(MetricContainer):  # type: ignore[misc]  # evidently ships no types: MetricContainer is Any
    """A one-line header (a counter widget, as every report has) and a Markdown block; computes nothing."""

    headline: str
    text: str

    def generate_metrics(self, context: Any) -> list[Any]:
        return []

    def render(self, context: Any, child_widgets: Any = None) -> list[Any]:
        return [header_text(label=self.headline), text_widget(title="How this report was built", text=self.text)]


@dataclass(frozen=True)
class EvidentlyDrift:
    """Evidently's verdicts. ``columns``: column → (method, threshold, score, drifted)."""

    columns: dict[str, tuple[str, float, float, bool]]
    share: float
    drift: bool


def build_report(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    path: Path,
    max_rows: int = 5000,
    seed: int = 0,
    *,
    drift_share: float = 0.5,
    verdict: DriftVerdict | None = None,
) -> Path:
    """Write Evidently's DataDriftPreset + DataSummaryPreset report as one self-contained HTML file.

    It runs on the profile's sample and a sample of ``current``, each at most ``max_rows`` rows (seeded). The
    page opens with a note naming both sample sizes and, when ``verdict`` is given, driftloop's verdict on the
    full data. Columns with no value in either sample are left out (Evidently cannot test them) and listed there.
    """
    columns = profile.columns
    missing = [c for c in columns if c not in current.columns]
    if missing:
        raise DriftloopError(f"the current data lacks column(s) {missing} needed for the drift report")
    reference = _evidently_types(sample_frame(profile.sample, max_rows, seed)[columns], profile.kinds)
    window = _evidently_types(sample_frame(current, max_rows, seed)[columns], profile.kinds)
    empty = [c for c in columns if reference[c].isna().all() or window[c].isna().all()]
    kept = [c for c in columns if c not in empty]
    if not kept or window.empty:
        raise DriftloopError("the drift report needs at least one current row and one column with values")

    note = _Note(
        headline=f"Evidently on {_rows(len(reference), profile.rows)} reference rows and "
        f"{_rows(len(window), len(current))} current rows; the drift verdict uses all rows",
        text=_note_text(profile, current, reference, window, empty, verdict),
    )
    report = Report([note, DataDriftPreset(drift_share=drift_share), DataSummaryPreset()], include_tests=True)
    definition = _definition(profile.kinds, kept)
    # A column of one value (a load test's copies of one request) has no spread: Evidently's correlations divide by
    # it, numpy warns on the terminal, and the report shows the correlation as missing, which is what it is.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = report.run(
            current_data=Dataset.from_pandas(window[kept], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[kept], data_definition=definition),
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(snapshot.get_html_str(as_iframe=False), encoding="utf-8")
    return path


def _evidently_types(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Numerical columns as float64.

    Evidently's summary subtracts them, which numpy refuses for booleans: a True/False feature of the training
    snapshot keeps that type in the profile's sample.
    """
    numerical = [name for name in frame.columns if kinds.get(name) == "numerical"]
    return frame.assign(**{name: as_numbers(frame[name]) for name in numerical})


def evidently_column_verdicts(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    drift_share: float = 0.5,
) -> EvidentlyDrift:
    """Run Evidently's DataDriftPreset on the full frames and read back its per-column and dataset verdicts."""
    kinds = dict.fromkeys(numeric, "numerical") | dict.fromkeys(categorical, "categorical")
    columns = list(kinds)
    definition = _definition(kinds, columns)
    snapshot = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    document = snapshot.dict()
    failed = {t["metric_config"]["metric_id"] for t in document["tests"] if t["status"] == _FAILED}
    verdicts: dict[str, tuple[str, float, float, bool]] = {}
    share: float | None = None
    drift = False
    for metric in document["metrics"]:
        config = metric["config"]
        if config["type"] == _VALUE_DRIFT:
            verdicts[config["column"]] = (
                str(config["method"]),
                float(config["threshold"]),
                float(metric["value"]),
                metric["id"] in failed,
            )
        elif config["type"] == _DRIFTED_COLUMNS:
            share = float(metric["value"]["share"])
            drift = metric["id"] in failed
    if share is None or set(verdicts) != set(columns):
        raise DriftloopError(f"Evidently's snapshot lacks drift results for {sorted(set(columns) - set(verdicts))}")
    return EvidentlyDrift(columns=verdicts, share=share, drift=drift)


def _definition(kinds: Mapping[str, str], columns: Sequence[str]) -> DataDefinition:
    return DataDefinition(
        numerical_columns=[c for c in columns if kinds[c] == "numerical"],
        categorical_columns=[c for c in columns if kinds[c] == "categorical"],
    )


def _rows(used: int, total: int) -> str:
    return f"all {total:,}" if used >= total else f"a sample of {used:,} of {total:,}"


def _note_text(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    empty: list[str],
    verdict: DriftVerdict | None,
) -> str:
    sampled = len(reference) < profile.rows or len(window) < len(current)
    text = (
        f"**{'Built from samples' if sampled else 'Built from all rows'}.** Evidently ran on "
        f"{_rows(len(reference), profile.rows)} reference rows and {_rows(len(window), len(current))} current rows "
        "(random, seeded). driftloop's drift verdict uses every reference and current row, with the same tests "
        "and thresholds as this report"
        + (", so the scores below, taken on samples, can differ from it." if sampled else ".")
    )
    if verdict is not None:
        text += f"\n\n**Verdict on the full data:** {verdict.summary()}."
    if empty:
        text += f"\n\nLeft out (no value in a sample): {', '.join(empty)}."
    return text
