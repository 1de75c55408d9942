"""Performance estimated without labels, on data where the truth is known, across seeds.

The world: ``P(y = 1 | x1) = sigmoid(3·x1)``, whatever the inputs' distribution (so a covariate shift keeps the
calibration true). Trained where ``x1`` is spread wide, the model is mostly sure and right. Traffic squeezed near
the boundary (``x1`` close to 0) makes it unsure and often wrong: a covariate shift that hurts it. Traffic spread
wider still is a shift that does not. Labels flipped on the same inputs (concept drift) leave its confidence, and
so the estimate, unchanged: only labels show that (the estimate is never given them, so no test here could show
otherwise; tests/unit/test_label_check.py covers the labels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from driftloop.core.drift import build_profile
from driftloop.core.performance_estimate import (
    Calibration,
    estimate_performance,
    expected_roc_auc,
    fit_calibration,
)
from driftloop.core.task import Task, TaskKind
from driftloop.errors import DatasetError
from driftloop.io.reference import PROFILE_FILE, load_profile, save_profile

SEEDS = [0, 1, 2, 3, 4]
BINARY = Task(TaskKind.BINARY, ("no", "yes"))
MULTICLASS = Task(TaskKind.MULTICLASS, ("low", "mid", "high"))
MAX_DROP = 0.05


def _binary_world(rows: int, seed: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(0.0, spread, rows), rng.normal(0.0, 1.0, rows)])
    y = (rng.random(rows) < 1 / (1 + np.exp(-3.0 * x[:, 0]))).astype(int)
    return x, y


def _fitted_binary(seed: int) -> tuple[LogisticRegression, Calibration, float]:
    """A model, its holdout calibration and its holdout accuracy, as the training flow keeps them."""
    x, y = _binary_world(4000, seed, spread=2.0)
    model = LogisticRegression().fit(x, y)
    holdout_x, holdout_y = _binary_world(2000, seed + 1, spread=2.0)
    scores = model.predict_proba(holdout_x)[:, 1]
    calibration = fit_calibration(BINARY, scores, holdout_y)
    assert calibration is not None
    baseline = float(np.mean(BINARY.predicted(scores) == holdout_y))
    return model, calibration, baseline


def _window(model: LogisticRegression, seed: int, spread: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positive-class probabilities, the answered class names, the true encoded labels) of 1,000 rows."""
    x, y = _binary_world(1000, seed, spread)
    scores = model.predict_proba(x)[:, 1]
    names = np.asarray(BINARY.classes, dtype=object)[BINARY.predicted(scores)]
    return scores, names, y


def _realized(scores: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(BINARY.predicted(scores) == y))


@pytest.mark.parametrize("seed", SEEDS)
def test_unshifted_traffic_is_estimated_as_it_turns_out(seed: int) -> None:
    model, calibration, baseline = _fitted_binary(seed)
    scores, names, y = _window(model, seed + 10, spread=2.0)
    estimate = estimate_performance(calibration, BINARY, scores, names, baseline, MAX_DROP, min_rows=200)
    assert estimate.status == "ok"
    assert estimate.accuracy is not None
    assert estimate.accuracy_interval is not None
    low, high = estimate.accuracy_interval
    assert low <= _realized(scores, y) <= high
    assert estimate.roc_auc == pytest.approx(roc_auc_score(y, scores), abs=0.03)
    assert estimate.roc_auc_interval is not None
    low, high = estimate.roc_auc_interval
    assert low <= roc_auc_score(y, scores) <= high


@pytest.mark.parametrize("seed", SEEDS)
def test_a_covariate_shift_that_hurts_is_estimated_as_degraded_before_labels_and_the_labels_confirm_it(
    seed: int,
) -> None:
    model, calibration, baseline = _fitted_binary(seed)
    scores, names, y = _window(model, seed + 20, spread=0.3)
    estimate = estimate_performance(calibration, BINARY, scores, names, baseline, MAX_DROP, min_rows=200)
    assert estimate.status == "degraded"
    assert estimate.drop is not None
    assert estimate.drop > MAX_DROP
    realized = _realized(scores, y)
    assert baseline - realized > MAX_DROP  # the truth: it did get worse
    assert estimate.accuracy == pytest.approx(realized, abs=0.05)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_covariate_shift_that_does_not_hurt_is_not_degraded(seed: int) -> None:
    model, calibration, baseline = _fitted_binary(seed)
    scores, names, y = _window(model, seed + 30, spread=4.0)  # further from the boundary: easier
    estimate = estimate_performance(calibration, BINARY, scores, names, baseline, MAX_DROP, min_rows=200)
    assert estimate.status == "ok"
    assert baseline - _realized(scores, y) <= MAX_DROP  # the truth: it did not get worse


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_top_label_confidence_both_ways(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def world(rows: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(0.0, spread, (rows, 1))
        logits = np.column_stack([-3.0 * x[:, 0], np.zeros(rows), 3.0 * x[:, 0]])
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = np.array([rng.choice(3, p=row) for row in p])
        return x, y

    x, y = world(4000, 2.0)
    model = LogisticRegression().fit(x, y)
    holdout_x, holdout_y = world(2000, 2.0)
    holdout_scores = model.predict_proba(holdout_x)
    calibration = fit_calibration(MULTICLASS, holdout_scores, holdout_y)
    assert calibration is not None
    assert calibration.kind == "top-label"
    baseline = float(np.mean(MULTICLASS.predicted(holdout_scores) == holdout_y))
    for spread, expected in ((2.0, "ok"), (0.2, "degraded")):
        wx, wy = world(1000, spread)
        scores = model.predict_proba(wx)
        names = np.asarray(MULTICLASS.classes, dtype=object)[MULTICLASS.predicted(scores)]
        estimate = estimate_performance(
            calibration, MULTICLASS, scores.max(axis=1), names, baseline, MAX_DROP, min_rows=200
        )
        assert estimate.status == expected, (spread, estimate.summary())
        assert estimate.accuracy == pytest.approx(float(np.mean(MULTICLASS.predicted(scores) == wy)), abs=0.05)
        assert estimate.roc_auc is None  # the log keeps the predicted class's probability only


def test_regressors_and_versions_without_calibration_say_why_not() -> None:
    regression = Task(TaskKind.REGRESSION, ())
    assert fit_calibration(regression, np.zeros(100), np.zeros(100)) is None
    estimate = estimate_performance(None, regression, np.zeros(300), np.zeros(300), 1.0, MAX_DROP, 200)
    assert estimate.status == "not available"
    assert "regressor" in estimate.summary()
    older = estimate_performance(None, BINARY, np.zeros(300), np.zeros(300), 0.9, MAX_DROP, 200)
    assert "no calibration: its holdout had fewer than 50 rows, or fewer than 10 wrong answers to learn its " in (
        older.summary()
    )
    assert fit_calibration(BINARY, np.linspace(0, 1, 20), np.arange(20) % 2) is None  # too few holdout rows


@pytest.mark.parametrize("task", [BINARY, MULTICLASS])
def test_a_holdout_with_too_few_errors_calibrates_nothing(task: Task) -> None:
    """Trial 18: a holdout answered without error calibrated every confidence to 1.0, and the estimate said "ok,
    accuracy 1.000 (95% 1.000-1.000)" on traffic the labels then showed 75% right."""
    rng = np.random.default_rng(0)
    rows = 300
    y = rng.integers(0, len(task.classes), rows)
    confident = np.full((rows, len(task.classes)), 0.02)
    confident[np.arange(rows), y] = 1 - 0.02 * (len(task.classes) - 1)
    scores = confident[:, 1] if task.kind is TaskKind.BINARY else confident
    assert fit_calibration(task, scores, y) is None  # every answer right
    wrong = y.copy()
    wrong[:9] = (y[:9] + 1) % len(task.classes)
    assert fit_calibration(task, scores, wrong) is None  # 9 wrong: still too few
    wrong[:10] = (y[:10] + 1) % len(task.classes)
    assert fit_calibration(task, scores, wrong) is not None  # 10: enough to learn from


def test_too_few_rows_are_not_estimated() -> None:
    _, calibration, baseline = _fitted_binary(0)
    estimate = estimate_performance(
        calibration, BINARY, np.full(50, 0.9), np.full(50, "yes", dtype=object), baseline, MAX_DROP, 200
    )
    assert estimate.status == "not available"
    assert "50 rows, need 200" in estimate.summary()


def test_expected_roc_auc_is_the_roc_auc_of_rows_counted_as_fractional_positives_and_negatives() -> None:
    rng = np.random.default_rng(4)
    scores = np.round(rng.random(400), 2)  # ties on purpose
    p = rng.random(400)
    # Each row twice: a positive weighing p and a negative weighing 1 − p.
    weighted = roc_auc_score(np.r_[np.ones(400), np.zeros(400)], np.r_[scores, scores], sample_weight=np.r_[p, 1 - p])
    assert expected_roc_auc(scores, p) == pytest.approx(weighted, abs=1e-12)


def test_expected_roc_auc_with_certain_labels_is_roc_auc() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(500), 2)  # ties on purpose
    truth = (rng.random(500) < scores).astype(float)
    assert expected_roc_auc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert expected_roc_auc(scores, np.ones(500)) is None  # no expected negative


def test_the_calibration_survives_the_profile_files_and_damage_is_named(tmp_path: Path) -> None:
    _, calibration, _ = _fitted_binary(0)
    frame = pd.DataFrame({"x1": np.arange(300.0), "x2": np.arange(300.0) % 7})
    save_profile(build_profile(frame, ["x1", "x2"], [], calibration=calibration), tmp_path)
    loaded = load_profile(tmp_path).calibration
    assert loaded is not None
    assert loaded.kind == "binary"
    probe = np.linspace(-0.5, 1.5, 101)
    np.testing.assert_array_equal(loaded.apply(probe), calibration.apply(probe))
    (tmp_path / PROFILE_FILE).write_text((tmp_path / PROFILE_FILE).read_text().replace('"binary"', '"sigmoid"'))
    with pytest.raises(DatasetError, match="calibration must say its kind"):
        load_profile(tmp_path)
