"""Drift per segment on known truth: a shift confined to one segment is found there, and only there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.core.drift import build_profile, check_drift
from driftloop.core.schema import DatasetSchema
from driftloop.core.segments import SEGMENT_WINDOW_ROWS, check_segments, drifted_segments
from driftloop.core.task import Task, TaskKind

TASK = Task(TaskKind.BINARY, ("no", "yes"))
CONTRACTS = ("month", "year", "two-year")


def _traffic(rng: np.random.Generator, rows: int, shift_in: str | None = None) -> pd.DataFrame:
    contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.35, 0.10])
    frame = pd.DataFrame(
        {
            "tenure": rng.normal(30, 10, rows),
            "charges": rng.normal(70, 20, rows),
            "usage": rng.normal(0, 1, rows),
            "contract": contract,
        }
    )
    if shift_in is not None:
        moved = contract == shift_in
        frame.loc[moved, "tenure"] += 6  # 0.6 sd: strong in the segment, diluted to < 0.1 in the whole
        frame.loc[moved, "charges"] += 12
    frame["probability"] = rng.uniform(0, 1, rows)
    frame["label"] = np.where(frame["probability"] >= 0.5, "yes", "no")
    frame["actual"] = None
    return frame


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_shift_in_one_segment_is_reported_there_and_not_elsewhere(seed: int) -> None:
    rng = np.random.default_rng(seed)
    training = _traffic(rng, 6000)
    profile = build_profile(training, ["tenure", "charges", "usage"], ["contract"], segments=["contract"])
    window = _traffic(rng, 3000, shift_in="two-year")  # 10% of the rows
    whole = check_drift(profile, window[["tenure", "charges", "usage", "contract"]], drift_share=0.5, min_rows=100)
    assert whole.status == "no drift"  # diluted: the whole window does not reach the share
    segments = check_segments(profile, window, ["contract"], TASK, drift_share=0.5, min_rows=100, label_min_rows=50)
    assert [s.value for s in segments] == ["month", "year", "two-year"]  # most rows first
    assert drifted_segments(segments) == ["contract=two-year"]
    two_year = segments[2]
    # The segment's reference is small (p-value tests, each with its 5% false alarms): the moved columns at least.
    assert {"tenure", "charges"} <= set(two_year.drifted_columns)
    assert two_year.share >= 0.5
    assert "contract=two-year: drift (drifted: " in two_year.summary()


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_no_shift_no_segment_drifts_and_small_segments_are_not_tested(seed: int) -> None:
    rng = np.random.default_rng(seed)
    profile = build_profile(_traffic(rng, 6000), ["tenure", "charges", "usage"], ["contract"], segments=["contract"])
    window = _traffic(rng, 3000)
    segments = check_segments(profile, window, ["contract"], TASK, drift_share=0.5, min_rows=100, label_min_rows=50)
    assert drifted_segments(segments) == []
    few = check_segments(profile, window.iloc[:300], ["contract"], TASK, drift_share=0.5, min_rows=100,
                         label_min_rows=50)  # fmt: skip
    assert [s.verdict.startswith("not tested: fewer than 100 rows") for s in few] == [
        (window.iloc[:300]["contract"] == s.value).sum() < 100 for s in few
    ]


def test_segment_labels_give_each_segment_its_realized_accuracy() -> None:
    rng = np.random.default_rng(9)
    profile = build_profile(_traffic(rng, 6000), ["tenure", "charges", "usage"], ["contract"], segments=["contract"])
    window = _traffic(rng, 3000)
    month = (window["contract"] == "month").to_numpy()
    # Right on every month row, wrong on every other labelled row.
    window["actual"] = np.where(month, window["label"], np.where(window["label"] == "yes", "no", "yes"))
    by_value = {s.value: s for s in check_segments(profile, window, ["contract"], TASK, drift_share=0.5,
                                                   min_rows=100, label_min_rows=50)}  # fmt: skip
    assert by_value["month"].realized == 1.0
    assert by_value["year"].realized == 0.0
    assert by_value["month"].labelled == month.sum()


def test_a_segment_must_be_a_categorical_feature() -> None:
    base = {
        "name": "s",
        "target": {"name": "y", "classes": ["a", "b"], "positive": "b"},
        "features": [{"name": "x", "kind": "numeric"}, {"name": "c", "kind": "categorical", "categories": ["u"]}],
    }
    assert DatasetSchema.model_validate({**base, "segments": ["c"]}).segments == ("c",)
    assert DatasetSchema.model_validate({**base, "segments": "c"}).segments == ("c",)  # one name, not in a list
    with pytest.raises(ValueError, match="segments: 'z' is not a feature"):
        DatasetSchema.model_validate({**base, "segments": "z"})
    with pytest.raises(ValueError, match="segments: 'x' is a numeric feature"):
        DatasetSchema.model_validate({**base, "segments": ["x"]})
    with pytest.raises(ValueError, match="segments: 'z' is not a feature"):
        DatasetSchema.model_validate({**base, "segments": ["z"]})
    assert DatasetSchema.model_validate(base).fingerprint() == DatasetSchema.model_validate(base).fingerprint()


@pytest.mark.parametrize(("seed", "shifted"), [(11, True), (12, True), (13, False), (14, False)])
def test_a_big_segment_is_tested_on_a_sample_and_keeps_its_verdict(seed: int, shifted: bool) -> None:
    rng = np.random.default_rng(seed)
    profile = build_profile(_traffic(rng, 6000), ["tenure", "charges", "usage"], ["contract"], segments=["contract"])
    window = _traffic(rng, 60_000, shift_in="month" if shifted else None)  # month: about 33,000 rows
    by_value = {s.value: s for s in check_segments(profile, window, ["contract"], TASK, drift_share=0.5,
                                                   min_rows=100, label_min_rows=50)}  # fmt: skip
    month = by_value["month"]
    assert month.rows == (window["contract"] == "month").sum() > SEGMENT_WINDOW_ROWS
    assert month.tested_rows == SEGMENT_WINDOW_ROWS
    assert f"(tested on {SEGMENT_WINDOW_ROWS:,})" in month.summary()
    assert (month.verdict == "drift") is shifted
    assert by_value["two-year"].tested_rows == by_value["two-year"].rows  # below the cap: every row


def test_rows_missing_the_segment_column_are_a_segment_of_their_own() -> None:
    rng = np.random.default_rng(21)
    training = _traffic(rng, 6000)
    training.loc[training.index[:900], "contract"] = None
    profile = build_profile(training, ["tenure", "charges", "usage"], ["contract"], segments=["contract"])
    window = _traffic(rng, 3000)
    window.loc[window.index[:400], "contract"] = None
    by_value = {s.value: s for s in check_segments(profile, window, ["contract"], TASK, drift_share=0.5,
                                                   min_rows=100, label_min_rows=50)}  # fmt: skip
    assert by_value["(missing)"].rows == 400
    assert by_value["(missing)"].verdict == "no drift"
    assert sum(s.rows for s in by_value.values()) == 3000
