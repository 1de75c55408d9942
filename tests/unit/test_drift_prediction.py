"""Prediction drift: the model's output as one more monitored column, reported beside the feature verdict.

Reference sides of over 1000 values, so the tests are distances (Wasserstein, Jensen-Shannon) with margins far
larger than sampling noise, not p-values that a true null rejects once in twenty.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.drift import (
    JENSEN_SHANNON,
    WASSERSTEIN,
    ReferenceProfile,
    build_profile,
    check_drift,
    prediction_column,
    prediction_values,
    window_predictions,
)
from driftloop.core.task import Task, TaskKind
from driftloop.errors import DatasetError
from driftloop.io.reference import PROFILE_FILE, load_profile, save_profile

BINARY = Task(TaskKind.BINARY, ("No", "Yes"))
MULTICLASS = Task(TaskKind.MULTICLASS, ("bus", "car", "bike", "walk"))
REGRESSION = Task(TaskKind.REGRESSION)
SEEDS = [0, 1, 2, 3, 4]
FEATURES = ["age", "income", "city"]
NUMERIC, CATEGORICAL = ["age", "income"], ["city"]
TRAIN_ROWS, HOLDOUT_ROWS, WINDOW_ROWS = 3000, 4000, 3000


def features(rows: int, rng: np.random.Generator, shifted: bool = False) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": rng.normal(45.0 if shifted else 40.0, 9.0, rows),
            "income": rng.lognormal(10.0, 1.0, rows),
            "city": rng.choice(["Lyon", "Oslo", "Pune"], rows),
        }
    )


def model_scores(task: Task, rows: int, rng: np.random.Generator, shifted: bool) -> np.ndarray:
    """What ``Task.scores`` gives for ``rows`` rows; ``shifted`` moves the output's distribution."""
    if task.kind is TaskKind.BINARY:
        return rng.beta(5.0, 2.0, rows) if shifted else rng.beta(2.0, 5.0, rows)
    if task.kind is TaskKind.REGRESSION:
        return rng.normal(360.0 if shifted else 300.0, 90.0, rows)
    weights = [0.1, 0.2, 0.3, 0.4] if shifted else [0.4, 0.3, 0.2, 0.1]
    winner = rng.choice(4, size=rows, p=weights)
    probabilities = rng.dirichlet(np.ones(4), rows) * 0.5
    probabilities[np.arange(rows), winner] += 0.5  # over 0.5: the argmax
    return probabilities


def logged_window(task: Task, rng: np.random.Generator, shifted_predictions: bool) -> pd.DataFrame:
    """A prediction-log window: the columns read_window gives, then the features (never shifted here)."""
    scores = model_scores(task, WINDOW_ROWS, rng, shifted_predictions)
    if task.kind is TaskKind.MULTICLASS:
        labels = np.asarray(task.classes, dtype=object)[task.predicted(scores)]
        score = scores.max(axis=1)  # the predicted class's probability: not what is tested
    elif task.kind is TaskKind.BINARY:
        labels = np.asarray(task.classes, dtype=object)[task.predicted(scores)]
        score = scores
    else:
        labels, score = scores.astype(str).astype(object), scores
    log = pd.DataFrame(
        {"ts": pd.Timestamp("2024-01-01", tz="UTC"), "label": labels, "probability": score, "actual": None}
    )
    return pd.concat([log, features(WINDOW_ROWS, rng)], axis=1)


def trained_profile(task: Task, seed: int) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    predictions, kind = prediction_values(task, model_scores(task, HOLDOUT_ROWS, rng, shifted=False))
    return build_profile(features(TRAIN_ROWS, rng), NUMERIC, CATEGORICAL, predictions=predictions, prediction_kind=kind)


TASKS = [
    pytest.param(BINARY, WASSERSTEIN, id="binary"),
    pytest.param(MULTICLASS, JENSEN_SHANNON, id="multiclass"),
    pytest.param(REGRESSION, WASSERSTEIN, id="regression"),
]


@pytest.mark.parametrize(("task", "method"), TASKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_shifted_predictions_are_prediction_drift_and_leave_the_feature_share_alone(
    task: Task, method: str, seed: int
) -> None:
    profile = trained_profile(task, seed)
    window = logged_window(task, np.random.default_rng(seed + 100), shifted_predictions=True)
    verdict = check_drift(profile, window, predictions=window_predictions(profile, window))
    assert verdict.prediction is not None
    assert verdict.prediction_drift is True
    assert (verdict.prediction.column, verdict.prediction.method) == ("prediction", method)
    # The feature verdict is exactly what it is without the prediction column.
    features_only = check_drift(profile, window)
    assert features_only.prediction is None
    assert (verdict.status, verdict.share, verdict.drifted_columns, verdict.columns) == (
        features_only.status,
        features_only.share,
        features_only.drifted_columns,
        features_only.columns,
    )
    assert verdict.status == "no drift"
    assert [c.column for c in verdict.columns] == FEATURES


@pytest.mark.parametrize(("task", "method"), TASKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_unshifted_predictions_are_not_prediction_drift(task: Task, method: str, seed: int) -> None:
    profile = trained_profile(task, seed)
    window = logged_window(task, np.random.default_rng(seed + 100), shifted_predictions=False)
    verdict = check_drift(profile, window, predictions=window_predictions(profile, window))
    assert verdict.prediction is not None
    assert verdict.prediction.method == method
    assert verdict.prediction_drift is False


@pytest.mark.parametrize("seed", SEEDS)
def test_drifted_features_with_steady_predictions(seed: int) -> None:
    profile = trained_profile(BINARY, seed)
    window = logged_window(BINARY, np.random.default_rng(seed + 100), shifted_predictions=False)
    window[FEATURES] = features(WINDOW_ROWS, np.random.default_rng(seed + 200), shifted=True)
    verdict = check_drift(profile, window, predictions=window_predictions(profile, window), drift_share=0.3)
    assert (verdict.status, verdict.drifted_columns, verdict.prediction_drift) == ("drift", ["age"], False)
    assert verdict.share == pytest.approx(1 / 3)


def test_what_is_monitored_of_each_task() -> None:
    values, kind = prediction_values(BINARY, np.array([0.2, 0.7]))
    assert (values.tolist(), kind) == ([0.2, 0.7], "numerical")
    values, kind = prediction_values(REGRESSION, np.array([12.5, -3.0]))
    assert (values.tolist(), kind) == ([12.5, -3.0], "numerical")
    values, kind = prediction_values(MULTICLASS, np.array([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1]]))
    assert (values.tolist(), kind) == (["bike", "bus"], "categorical")

    profile = trained_profile(MULTICLASS, 0)
    window = logged_window(MULTICLASS, np.random.default_rng(1), shifted_predictions=False)
    predictions = window_predictions(profile, window)
    assert predictions is not None
    assert predictions.equals(window["label"])
    numeric = trained_profile(REGRESSION, 0)
    numeric_predictions = window_predictions(numeric, window)
    assert numeric_predictions is not None
    assert numeric_predictions.equals(window["probability"])
    assert window_predictions(numeric, window.drop(columns="probability")) is None


def test_a_feature_called_prediction_keeps_its_name() -> None:
    assert prediction_column(["age", "city"]) == "prediction"
    assert prediction_column(["age", "prediction"]) == "__prediction__"
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"prediction": rng.normal(size=1500), "x": rng.normal(size=1500)})
    profile = build_profile(frame, ["prediction", "x"], [], predictions=rng.random(1500))
    assert profile.prediction is not None
    assert profile.prediction.column == "__prediction__"
    assert profile.columns == ["prediction", "x"]
    window = frame.assign(probability=rng.random(1500) ** 3)
    verdict = check_drift(profile, window, predictions=window_predictions(profile, window))
    assert verdict.prediction is not None
    assert (verdict.prediction.column, verdict.prediction.drifted) == ("__prediction__", True)
    assert [c.column for c in verdict.columns] == ["prediction", "x"]
    assert not any(c.drifted for c in verdict.columns)


@pytest.mark.parametrize("task", [BINARY, MULTICLASS], ids=["numerical", "categorical"])
def test_the_prediction_reference_round_trips(tmp_path: Path, task: Task) -> None:
    profile = trained_profile(task, 7)
    save_profile(profile, tmp_path)
    loaded = load_profile(tmp_path)
    assert loaded.prediction is not None
    assert profile.prediction is not None
    assert (loaded.prediction.column, loaded.prediction.kind) == (profile.prediction.column, profile.prediction.kind)
    assert loaded.columns == profile.columns
    window = logged_window(task, np.random.default_rng(8), shifted_predictions=True)
    assert check_drift(loaded, window, predictions=window_predictions(loaded, window)) == check_drift(
        profile, window, predictions=window_predictions(profile, window)
    )


def test_a_reference_saved_before_prediction_drift_reports_it_as_not_available(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    save_profile(build_profile(features(TRAIN_ROWS, rng), NUMERIC, CATEGORICAL), tmp_path)
    document = json.loads((tmp_path / PROFILE_FILE).read_text())
    assert "prediction" not in document  # what an older driftloop wrote
    old = load_profile(tmp_path)
    assert old.prediction is None

    window = logged_window(BINARY, rng, shifted_predictions=True)
    assert window_predictions(old, window) is None
    verdict = check_drift(old, window, predictions=window["probability"])  # given anyway: nothing to test against
    assert verdict.prediction is None
    assert verdict.prediction_drift is None
    assert verdict.status == "no drift"
    assert verdict.summary().endswith("; prediction drift: not available")
    assert "| Predictions | not available" in verdict.markdown()
    assert json.loads(json.dumps(verdict.as_dict(), allow_nan=False))["prediction"] is None


def test_the_verdict_shows_the_prediction_test() -> None:
    profile = trained_profile(REGRESSION, 2)
    window = logged_window(REGRESSION, np.random.default_rng(9), shifted_predictions=True)
    verdict = check_drift(profile, window, predictions=window_predictions(profile, window))
    assert verdict.prediction is not None
    assert verdict.summary().startswith("no drift: 0 of 3 columns drifted (share 0.00 < drift_share 0.50)")
    assert "; prediction: drift (Wasserstein distance (normed) " in verdict.summary()
    assert "| Predictions | drift (Wasserstein distance (normed) " in verdict.markdown()
    assert "not counted in the share" in verdict.markdown()
    document = json.loads(json.dumps(verdict.as_dict(), allow_nan=False))
    assert document["prediction"]["column"] == "prediction"
    assert document["prediction"]["drifted"] is True
    assert document["prediction"]["score"] == pytest.approx(verdict.prediction.score)


def test_too_few_rows_test_no_prediction_either() -> None:
    profile = trained_profile(BINARY, 1)
    window = logged_window(BINARY, np.random.default_rng(2), shifted_predictions=True)
    verdict = check_drift(profile, window, min_rows=5000, predictions=window_predictions(profile, window))
    assert (verdict.status, verdict.prediction) == ("insufficient data", None)
    assert "Predictions" not in verdict.markdown()


def test_a_prediction_reference_needs_values() -> None:
    with pytest.raises(DatasetError, match="'prediction' has no value"):
        build_profile(features(100, np.random.default_rng(0)), NUMERIC, CATEGORICAL, predictions=np.full(50, np.nan))
