"""The monitoring store and performance by window: a check's figures kept and read back, windows on known truth."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.check_record import format_checks
from driftloop.core.performance_estimate import fit_calibration
from driftloop.core.performance_windows import format_windows, performance_by_window
from driftloop.core.task import Task, TaskKind
from driftloop.io.check_store import open_check_store
from tests.support.checks import BINARY, make_record


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_checks_are_kept_and_read_back_oldest_first_per_model(tmp_path: Path, seed: int) -> None:
    store = open_check_store(f"sqlite:///{tmp_path / 'log' / 'predictions.db'}")
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    try:
        for hour, shift in enumerate([0.0, 0.0, 1.5]):
            store.write(make_record(start + timedelta(hours=hour), "churn", seed + hour, shift, 40 * hour))
        store.write(make_record(start, "other", seed, 0.0, 0))
        records = store.read("churn")
        assert [r.ts for r in records] == [start + timedelta(hours=h) for h in range(3)]
        assert [r.verdict for r in records] == ["no drift", "no drift", "drift"]
        assert [r.labelled_rows for r in records] == [0, 40, 80]
        assert records[2].label_coverage == pytest.approx(80 / 800)
        assert records[2].drifted_columns == ["a"]
        assert records[2].columns[0]["column"] == "a"
        assert records[2].columns[0]["drifted"] is True
        assert records[2].weighted_share == pytest.approx(0.9)
        assert records[2].decided_by.startswith("rule weighted")
        assert records[2].labels == "ok"
        assert records[1].labels == "insufficient labels"
        assert records[0].estimate == "not available"
        assert records[0].estimated_accuracy is None
        assert [r.ts for r in store.read("churn", last=2)] == [start + timedelta(hours=h) for h in (1, 2)]
        assert store.read("churn", since=start + timedelta(minutes=90))[0].verdict == "drift"
        latest = store.latest()
        assert sorted(latest) == ["churn", "other"]
        assert latest["churn"].verdict == "drift"
        assert format_checks(records)[2]["labels"] == "80 (10%)"
        assert format_checks(records)[2]["top drifting"] == "a"
        assert [row["features"] for row in format_checks(records)] == ["no drift", "no drift", "drift"]
        assert format_checks(records)[2]["realized"] == "accuracy 1"  # ok: no mark
    finally:
        store.close()


def _served(seed: int, hours: int, rows_per_hour: int, coverage: list[float], accuracy: list[float]) -> pd.DataFrame:
    """Traffic with known truth: hour h is right ``accuracy[h]`` of the time, with ``coverage[h]`` labelled."""
    rng = np.random.default_rng(seed)
    frames = []
    start = pd.Timestamp("2026-12-01 00:00", tz="UTC")
    for hour in range(hours):
        ts = start + pd.Timedelta(hours=hour) + pd.to_timedelta(rng.uniform(0, 3599, rows_per_hour), unit="s")
        predicted = rng.choice(["no", "yes"], rows_per_hour)
        right = rng.random(rows_per_hour) < accuracy[hour]
        truth = np.where(right, predicted, np.where(predicted == "yes", "no", "yes")).astype(object)
        truth[rng.random(rows_per_hour) >= coverage[hour]] = None
        frames.append(
            pd.DataFrame({"ts": ts, "model_version": "1", "label": predicted, "probability": 0.5, "actual": truth})
        )
    return pd.concat(frames, ignore_index=True).sort_values("ts", ignore_index=True)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_windows_count_coverage_and_realize_only_with_enough_labels(seed: int) -> None:
    served = _served(seed, 3, 2000, coverage=[1.0, 0.5, 0.01], accuracy=[0.9, 0.6, 0.9])
    windows = performance_by_window(served, BINARY, {}, "1h", min_labels=100, min_rows=100)
    assert [w.rows for w in windows] == [2000, 2000, 2000]
    assert windows[0].coverage == 1.0
    assert 0.45 < windows[1].coverage < 0.55
    assert windows[2].coverage < 0.03
    assert windows[0].realized == pytest.approx(0.9, abs=0.03)
    assert windows[1].realized == pytest.approx(0.6, abs=0.04)
    assert windows[2].realized is None  # ~20 labels: not judged, whatever they say
    assert all(w.estimated_accuracy is None for w in windows)  # no calibration given
    one = performance_by_window(served, BINARY, {}, "1D", min_labels=100, min_rows=100)
    assert [w.rows for w in one] == [6000]
    assert one[0].labelled == sum(w.labelled for w in windows)
    assert format_windows(windows)[2]["realized accuracy"] == "-"


def test_the_estimate_per_window_follows_the_calibration() -> None:
    rng = np.random.default_rng(7)
    scores = rng.uniform(0, 1, 5000)
    truth = (rng.random(5000) < scores).astype(int)  # calibrated as it is
    calibration = fit_calibration(BINARY, scores, truth)
    sure = pd.DataFrame(
        {"ts": pd.Timestamp("2026-12-01 00:10", tz="UTC"), "probability": rng.choice([0.02, 0.98], 1000)}
    )
    unsure = pd.DataFrame(
        {"ts": pd.Timestamp("2026-12-01 01:10", tz="UTC"), "probability": rng.uniform(0.4, 0.6, 1000)}
    )
    served = pd.concat([sure, unsure], ignore_index=True)
    served["label"] = np.where(served["probability"] >= 0.5, "yes", "no")
    served["actual"] = None
    served["model_version"] = "1"
    sure_window, unsure_window = performance_by_window(served, BINARY, {"1": calibration}, "1h", 100, 100)
    assert sure_window.estimated_accuracy is not None
    assert sure_window.estimated_accuracy > 0.9
    assert unsure_window.estimated_accuracy == pytest.approx(0.55, abs=0.05)
    assert sure_window.labelled == 0
    assert sure_window.realized is None


def test_a_regressors_windows_show_realized_rmse_and_no_estimated_accuracy_column() -> None:
    served = pd.DataFrame(
        {
            "ts": pd.Timestamp("2026-12-01 00:10", tz="UTC"),
            "model_version": "1",
            "label": ["10.0", "12.0"] * 100,
            "probability": np.nan,
            "actual": ["11.0", "12.0"] * 100,
        }  # fmt: skip
    )
    (window,) = performance_by_window(served, Task(TaskKind.REGRESSION), {}, "1h", min_labels=100, min_rows=100)
    (row,) = format_windows([window])
    assert row["realized rmse"] == f"{math.sqrt(0.5):.4g}"
    assert "estimated accuracy" not in row
    classifier = performance_by_window(_served(4, 1, 200, coverage=[1.0], accuracy=[0.9]), BINARY, {}, "1h", 100, 100)
    assert format_windows(classifier)[0]["estimated accuracy"] == "-"
    assert format_windows(classifier)[0]["coverage"] == "100%"
    # Rounded down as in the checks table: 800 labelled of 802 is 99% (trial 18 saw 99% there, 100% here).
    almost = performance_by_window(_served(4, 1, 802, coverage=[0.998], accuracy=[0.9]), BINARY, {}, "1h", 100, 100)
    assert almost[0].labelled < 802
    assert format_windows(almost)[0]["coverage"] == "99%"


def test_a_bad_window_length_is_refused() -> None:
    with pytest.raises(ValueError):
        performance_by_window(_served(1, 1, 10, [1.0], [1.0]), BINARY, {}, "fortnightly", 1, 1)


def test_a_window_served_by_two_versions_is_split_and_each_estimated_with_its_own_calibration() -> None:
    rng = np.random.default_rng(8)
    served = pd.DataFrame(
        {
            "ts": pd.Timestamp("2026-12-01 00:30", tz="UTC"),
            "model_version": np.repeat(["1", "2"], 500),
            "probability": 0.8,
            "actual": None,
        }
    )
    served["label"] = "yes"
    optimistic = fit_calibration(BINARY, rng.uniform(0, 1, 4000), np.ones(4000, dtype=int))  # always right
    honest = fit_calibration(BINARY, (s := rng.uniform(0, 1, 4000)), (rng.random(4000) < s).astype(int))
    one, two = performance_by_window(served, BINARY, {"1": optimistic, "2": honest}, "1h", 100, 100)
    assert (one.version, one.rows, two.version, two.rows) == ("1", 500, "2", 500)
    assert one.estimated_accuracy == pytest.approx(1.0)
    assert two.estimated_accuracy == pytest.approx(0.8, abs=0.05)


def test_the_table_names_drifting_segments_and_rounds_coverage_down() -> None:
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    nearly_all = replace(make_record(start, "churn", 1, 1.0, 799), segments=[
        {"segment": "region=east", "verdict": "drift", "rows": 300},
        {"segment": "region=west", "verdict": "no drift", "rows": 300},
        {"segment": "region=north", "verdict": "not tested: fewer than 200 rows", "rows": 20},
    ])  # fmt: skip
    few = make_record(start, "churn", 1, 0.0, 1)
    nothing = replace(make_record(start, "churn", 1, 0.0, 0), verdict="insufficient data", rows=0, share=0.0)
    table = format_checks([nearly_all, few, nothing])
    assert table[0]["drifting segments"] == "region=east"
    assert table[0]["labels"] == "799 (99%)"  # not all of the 800 rows: not 100%
    assert table[1]["drifting segments"] == "-"
    assert table[1]["labels"] == "1 (<1%)"
    assert table[2]["share"] == "-"  # nothing was tested
    assert table[2]["labels"] == "0 (-)"
    assert table[0]["share"] == f"{nearly_all.share:.2f}"


def test_the_history_marks_a_degraded_label_check_and_estimate_beside_a_clean_feature_verdict() -> None:
    """An episode opened by the labels reads as such: features 'no drift', the realized column 'degraded'."""
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    clean = replace(make_record(start, "churn", 1, 0.0, 80, calibrated=True), estimate="ok")  # its 0.7 as if ok
    opened = replace(clean, labels="degraded", realized_value=0.466, estimate="degraded", action="emit")
    row = format_checks([opened])[0]
    assert (row["features"], row["action"]) == ("no drift", "emit")
    assert row["realized"] == "accuracy 0.466 degraded"
    assert row["estimated acc."].endswith(" degraded")
    assert not format_checks([clean])[0]["realized"].endswith("degraded")
    assert not format_checks([clean])[0]["estimated acc."].endswith("degraded")
