"""core.label_check: accuracy (classifiers) and RMSE (regressors) on labelled traffic vs the holdout's."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from driftloop.core import lineage
from driftloop.core.label_check import LABELLED_COLUMNS, check_labels, labelled_rows
from driftloop.core.task import Task, TaskKind, as_text
from tasks.drift import truth_baseline

BINARY = Task(TaskKind.BINARY, ("No", "Yes"))
MULTICLASS = Task(TaskKind.MULTICLASS, ("bus", "car", "bike", "walk"))
REGRESSION = Task(TaskKind.REGRESSION)
SEEDS = [0, 1, 2, 3, 4]
ROWS = 2000  # accuracy's standard error ≈ 0.007 and RMSE's ≈ 1.6%: far inside the margins below


def test_too_few_labels_are_not_judged() -> None:
    check = check_labels(BINARY, np.array(["Yes"] * 10), np.array(["No"] * 10), 0.8, min_rows=50, max_drop=0.05)
    assert check.status == "insufficient labels"
    assert check.accuracy is None
    assert check.value is None
    assert "need 50" in check.summary()


def test_a_drop_beyond_the_threshold_is_degraded() -> None:
    predicted = np.array(["Yes"] * 70 + ["No"] * 30)
    actual = np.array(["Yes"] * 60 + ["No"] * 40)  # 90% accurate
    assert check_labels(BINARY, predicted, actual, 0.96, min_rows=50, max_drop=0.05).status == "degraded"
    assert check_labels(BINARY, predicted, actual, 0.94, min_rows=50, max_drop=0.05).status == "ok"


def test_summary_reports_the_figures() -> None:
    check = check_labels(BINARY, np.array(["No"] * 100), np.array(["No"] * 80 + ["Yes"] * 20), 0.9, 50, 0.05)
    assert check.accuracy == 0.8
    assert check.drop is not None
    assert abs(check.drop - 0.1) < 1e-12
    assert check.summary() == (
        "label check: accuracy 0.8000 on 100 labelled rows vs holdout 0.9000 (drop +0.1000, allowed 0.0500): degraded"
    )


# --------------------------------------------------------------------------------------------- classifiers


def classified(task: Task, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True classes and predictions that are right with probability ``accuracy`` (wrong: another class)."""
    rng = np.random.default_rng(seed)
    classes = np.asarray(task.classes, dtype=object)
    truth = rng.integers(0, len(classes), ROWS)
    wrong = rng.random(ROWS) >= accuracy
    shift = rng.integers(1, len(classes), ROWS)  # never 0: a wrong prediction is another class
    predicted = np.where(wrong, (truth + shift) % len(classes), truth)
    return classes[predicted], classes[truth]


@pytest.mark.parametrize("task", [BINARY, MULTICLASS], ids=["binary", "multiclass"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_classifier_as_good_as_its_holdout_is_ok(task: Task, seed: int) -> None:
    predicted, actual = classified(task, 0.88, seed)
    check = check_labels(task, predicted, actual, 0.88, min_rows=100, max_drop=0.05)
    assert check.status == "ok"
    assert check.metric == "accuracy"
    assert check.accuracy == pytest.approx(0.88, abs=0.03)
    assert check.rows == ROWS


@pytest.mark.parametrize("task", [BINARY, MULTICLASS], ids=["binary", "multiclass"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_classifier_much_worse_than_its_holdout_is_degraded(task: Task, seed: int) -> None:
    predicted, actual = classified(task, 0.72, seed)
    check = check_labels(task, predicted, actual, 0.88, min_rows=100, max_drop=0.05)
    assert check.status == "degraded"
    assert check.accuracy == pytest.approx(0.72, abs=0.03)
    assert check.drop == pytest.approx(0.16, abs=0.03)
    assert check.rise is None


def test_labels_a_classifier_does_not_know_are_left_out() -> None:
    predicted = np.array(["bus"] * 150, dtype=object)
    actual = np.array(["bus"] * 100 + ["tram"] * 30 + [""] * 10 + [None] * 10, dtype=object)
    check = check_labels(MULTICLASS, predicted, actual, 0.9, min_rows=100, max_drop=0.05)
    assert (check.rows, check.accuracy, check.status) == (100, 1.0, "ok")  # counted, "tram" would make it 0.77
    assert check_labels(MULTICLASS, predicted, actual, 0.9, min_rows=101, max_drop=0.05).status == (
        "insufficient labels"
    )


# --------------------------------------------------------------------------------------------- regressors


def regressed(noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (the signal) and true values (signal + Gaussian noise): the RMSE is about ``noise``.

    The predictions come as the prediction log's ``label`` holds them (text), the truths as feedback stores them.
    """
    rng = np.random.default_rng(seed)
    signal = rng.normal(300.0, 90.0, ROWS)
    truth = signal + rng.normal(0.0, noise, ROWS)
    return signal.astype(str).astype(object), truth.astype(str).astype(object)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_regressor_as_good_as_its_holdout_is_ok(seed: int) -> None:
    predicted, actual = regressed(38.0, seed)
    check = check_labels(REGRESSION, predicted, actual, 38.0, min_rows=100, max_drop=0.1)
    assert check.status == "ok"
    assert (check.metric, check.accuracy, check.drop) == ("rmse", None, None)
    assert check.value == pytest.approx(38.0, rel=0.05)
    assert check.mae == pytest.approx(38.0 * math.sqrt(2 / math.pi), rel=0.05)  # a normal's mean |x|
    assert check.rise is not None
    assert abs(check.rise) < 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_a_little_worse_regressor_within_the_allowance_is_ok(seed: int) -> None:
    predicted, actual = regressed(40.0, seed)  # about 5% worse, 10% allowed
    check = check_labels(REGRESSION, predicted, actual, 38.0, min_rows=100, max_drop=0.1)
    assert check.status == "ok"
    assert check.rise == pytest.approx(0.053, abs=0.03)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_regressor_much_worse_than_its_holdout_is_degraded(seed: int) -> None:
    predicted, actual = regressed(50.0, seed)  # about 32% worse
    check = check_labels(REGRESSION, predicted, actual, 38.0, min_rows=100, max_drop=0.1)
    assert check.status == "degraded"
    assert check.rise == pytest.approx(0.32, abs=0.05)
    # The allowance is relative: 40% worse allowed, the same errors are fine.
    assert check_labels(REGRESSION, predicted, actual, 38.0, min_rows=100, max_drop=0.4).status == "ok"


def test_a_regressors_summary() -> None:
    predicted = np.array([10.0, 20.0, 30.0, 40.0] * 50)
    actual = np.array(["12", "18", "30", "40"] * 50, dtype=object)  # errors 2, 2, 0, 0: rmse √2, mae 1
    check = check_labels(REGRESSION, predicted, actual, 1.3, min_rows=100, max_drop=0.1)
    assert check.value == pytest.approx(math.sqrt(2))
    assert check.mae == pytest.approx(1.0)
    assert check.summary() == (
        "label check: rmse 1.414 (mae 1) on 200 labelled rows vs holdout 1.3 (+8.8%, allowed +10%): ok"
    )
    worse = check_labels(REGRESSION, predicted, actual, 1.2, min_rows=100, max_drop=0.1)
    assert worse.summary().endswith("(+17.9%, allowed +10%): degraded")


def test_values_a_regressor_cannot_score_are_left_out() -> None:
    predicted = np.array(["5"] * 100 + ["5"] * 4 + ["nan", ""], dtype=object)
    actual = np.array(["5"] * 100 + ["n/a", "inf", "", None] + ["1000", "1000"], dtype=object)
    check = check_labels(REGRESSION, predicted, actual, 1.0, min_rows=100, max_drop=0.1)
    assert (check.rows, check.value, check.status) == (100, 0.0, "ok")  # counted, any of them would be huge


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("noise", "verdict"), [(38.0, "ok"), (50.0, "degraded")])
def test_a_label_beyond_float32_range_is_left_out_so_it_neither_hides_nor_makes_a_change(
    seed: int, noise: float, verdict: str
) -> None:
    """A typo such as 1e300 once made the squared errors overflow: RMSE inf, its margin NaN, and the check "ok"."""
    predicted, actual = regressed(noise, seed)
    check = check_labels(REGRESSION, np.append(predicted, "300.0"), np.append(actual, "1e+300"), 38.0, 100, 0.1)
    assert (check.rows, check.status) == (ROWS, verdict)
    assert check.value is not None
    assert math.isfinite(check.value)
    assert check.value == check_labels(REGRESSION, predicted, actual, 38.0, 100, 0.1).value


def test_a_perfect_holdout_makes_any_error_degraded() -> None:
    exact = np.arange(100.0)
    assert check_labels(REGRESSION, exact, exact.astype(str), 0.0, 10, 0.1).status == "ok"
    check = check_labels(REGRESSION, exact, (exact + 0.5).astype(str), 0.0, 10, 0.1)
    assert check.status == "degraded"
    assert check.rise is None
    assert "(n/a, allowed +10%): degraded" in check.summary()


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="3 predictions but 2 true values"):
        check_labels(BINARY, np.array(["No"] * 3), np.array(["No"] * 2), 0.9, 1, 0.05)


# --------------------------------------------------------------------------------------------- noise


NOISE_SEEDS = range(20)


def _small_regressed(noise: float, seed: int, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(300.0, 90.0, rows)
    return signal.astype(str).astype(object), (signal + rng.normal(0.0, noise, rows)).astype(str).astype(object)


def test_an_unchanged_regressor_on_a_few_hundred_rows_is_never_called_degraded() -> None:
    """RMSE on 300 rows moves by ±7% (95%) around the holdout's: the 5% allowance alone fired on some of these."""
    checks = [check_labels(REGRESSION, *_small_regressed(38.0, seed), 38.0, 100, 0.05) for seed in NOISE_SEEDS]
    assert [check.status for check in checks] == ["ok"] * len(checks)
    beyond = [check for check in checks if check.rise is not None and check.rise > 0.05]
    assert beyond  # the allowance alone would have called these degraded: the check above could fail
    assert all("within these rows' noise" in check.summary() for check in beyond)


def test_an_unchanged_classifier_is_called_degraded_at_most_as_often_as_the_noise_margin_allows() -> None:
    """On 100 labelled rows accuracy moves by ±7% (95%): a 95% margin bounds the false alarms near 5%."""
    checks = []
    for seed in range(400):
        rng = np.random.default_rng(seed)
        truth = rng.integers(0, 2, 100)
        right = rng.random(100) < 0.85
        classes = np.asarray(BINARY.classes, dtype=object)
        checks.append(check_labels(BINARY, classes[np.where(right, truth, 1 - truth)], classes[truth], 0.85, 100, 0.05))
    false_alarms = sum(check.status == "degraded" for check in checks) / len(checks)
    by_allowance_alone = sum(check.drop is not None and check.drop > 0.05 for check in checks) / len(checks)
    assert false_alarms <= 0.065
    assert by_allowance_alone > false_alarms  # the noise margin is what kept these from firing


@pytest.mark.parametrize("seed", NOISE_SEEDS)
def test_a_real_rise_on_a_few_hundred_rows_is_still_degraded(seed: int) -> None:
    check = check_labels(REGRESSION, *_small_regressed(50.0, seed), 38.0, 100, 0.05)  # about 32% worse
    assert check.status == "degraded"


def test_the_holdouts_own_noise_counts_too() -> None:
    """A small holdout's accuracy is itself a draw: compared with it, an unchanged model still rarely alarms."""
    with_holdout, window_only = [], []
    classes = np.asarray(BINARY.classes, dtype=object)
    for seed in range(400):
        rng = np.random.default_rng(seed)
        baseline = float(np.mean(rng.random(150) < 0.85))  # the holdout's accuracy, measured on 150 rows
        truth = rng.integers(0, 2, 200)
        predicted = classes[np.where(rng.random(200) < 0.85, truth, 1 - truth)]
        with_holdout.append(check_labels(BINARY, predicted, classes[truth], baseline, 100, 0.05, 150).status)
        window_only.append(check_labels(BINARY, predicted, classes[truth], baseline, 100, 0.05).status)
    false_alarms = with_holdout.count("degraded") / len(with_holdout)
    assert false_alarms <= 0.065
    assert window_only.count("degraded") / len(window_only) > false_alarms


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["Yes", "No", "Yes"], dtype=object),  # Python strings: compared as they are
        np.array(["Yes", "No", "Yes"]),  # a numpy text array
        np.array([1, "Yes", None, 2.5], dtype=object),  # mixed: compared as their text, as before
        np.array([0, 1, 1]),  # numbers
    ],
)
def test_as_text_compares_exactly_as_the_text_copy(labels: np.ndarray) -> None:
    for name in ("Yes", "1", "None", "2.5", "0"):
        assert (as_text(labels) == name).tolist() == (labels.astype(str) == name).tolist()


def test_an_object_array_of_strings_is_not_copied() -> None:
    labels = np.array(["Yes", "No"], dtype=object)
    assert as_text(labels) is labels
    mixed = np.array(["Yes", 1], dtype=object)
    assert as_text(mixed) is not mixed


def test_labelled_rows_keeps_the_labelled_rows_and_the_three_columns() -> None:
    window = pd.DataFrame(
        {
            "tenure": [1.0, 2.0, 3.0, 4.0],
            "label": ["Yes", "No", "No", "Yes"],
            "probability": [0.9, 0.2, 0.4, 0.7],
            "actual": ["Yes", None, "Yes", np.nan],
        }
    )
    labelled = labelled_rows(window)
    assert list(labelled.columns) == list(LABELLED_COLUMNS)
    assert labelled.to_dict("list") == {"label": ["Yes", "No"], "probability": [0.9, 0.4], "actual": ["Yes", "Yes"]}


def test_labelled_rows_of_an_empty_window_is_empty() -> None:
    window = pd.DataFrame({name: pd.Series([], dtype=object) for name in LABELLED_COLUMNS})
    assert labelled_rows(window).empty


def test_after_a_retrain_learnt_a_changed_truth_live_labels_are_held_to_that_truth_s_holdout_rows() -> None:
    """Trial 9: a retrain's whole holdout mixed the old truth's rows (0.591); on the new truth's rows it read 0.80.

    Held to 0.591, live accuracy of 0.60 read 'ok' and each partial retrain lowered the bar; held to the new truth's
    holdout rows it reads 'degraded'. A version without the record keeps its whole holdout.
    """
    whole = {f"{lineage.METRIC}accuracy": "0.591", f"{lineage.METRIC}rows": "800"}
    learnt = {**whole, f"{lineage.TRUTH_BASELINE}accuracy": "0.8", f"{lineage.TRUTH_BASELINE}rows": "300"}
    assert truth_baseline(whole, BINARY) == (0.591, 800)
    assert truth_baseline(learnt, BINARY) == (0.8, 300)
    # The label-free estimate's bar: the same rows, where its calibration was fitted (trial 11).
    assert truth_baseline(learnt, BINARY, "accuracy") == (0.8, 300)
    unrecorded, rows = truth_baseline(learnt, REGRESSION, "rmse")
    assert math.isnan(unrecorded)
    assert rows == 300
    predicted = np.array(["Yes"] * 400)
    actual = np.array(["Yes"] * 240 + ["No"] * 160)  # 60% right
    for tags, status in ((whole, "ok"), (learnt, "degraded")):
        baseline, rows = truth_baseline(tags, BINARY)
        assert check_labels(BINARY, predicted, actual, baseline, 50, 0.05, rows).status == status
