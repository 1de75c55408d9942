"""compute_metrics on hand-computed cases; permutation importance on a frame with one informative feature."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from driftloop.core import evaluation
from driftloop.core.evaluation import (
    BINARY,
    HIGHER_IS_BETTER,
    compute_metrics,
    feature_importance,
    importance_sample,
    predicted_labels,
)
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema


def test_metrics_match_a_hand_computed_case() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    # Labels at 0.5: [0, 0, 0, 1] -> TP 1, FP 0, FN 1, TN 2.
    # AUC: of the 4 (positive, negative) pairs only (0.35, 0.4) is out of order -> 3/4.
    metrics = compute_metrics(y, p)

    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(2 / 3)
    expected_log_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)
    assert metrics["rows"] == 4
    assert metrics["positive_rate"] == pytest.approx(0.5)


def test_a_probability_of_exactly_one_half_is_the_negative_class() -> None:
    # Same rule as sklearn's predict and the ONNX label: argmax(p0, p1) picks class 0 on a tie.
    assert predicted_labels(np.array([0.5, 0.5000001, 0.4999999])).tolist() == [0, 1, 0]
    metrics = compute_metrics(np.array([1, 0]), np.array([0.5, 0.2]))
    assert metrics["recall"] == 0.0
    assert metrics["precision"] == 0.0  # no positive predictions: zero_division=0, not a warning or NaN


def test_perfect_ranking() -> None:
    metrics = compute_metrics(np.array([0, 1, 0, 1]), np.array([0.0, 1.0, 0.2, 0.9]))
    assert metrics["roc_auc"] == 1.0
    assert metrics["accuracy"] == 1.0
    assert metrics["f1"] == 1.0


def test_a_single_class_leaves_roc_auc_undefined() -> None:
    metrics = compute_metrics(np.array([0, 0, 0]), np.array([0.2, 0.6, 0.1]))
    assert math.isnan(metrics["roc_auc"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["positive_rate"] == 0.0


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.5], "equal, non-zero"),
        ([], [], "equal, non-zero"),
        ([0, 2], [0.1, 0.9], "class indices 0..1"),
        ([0, 1], [0.1, float("nan")], "not be NaN"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
    ],
)
def test_bad_inputs_are_refused(y: list[float], p: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(np.array(y), np.array(p))


def test_as_dict_has_every_field_and_directions_cover_the_quality_metrics() -> None:
    metrics = compute_metrics(np.array([0, 1, 1]), np.array([0.3, 0.7, 0.4]))
    as_dict = metrics.as_dict()
    assert list(as_dict) == [*BINARY.metric_directions, "rows", "positive_rate"]
    assert as_dict["rows"] == 3
    assert set(BINARY.metric_directions) == set(as_dict) - {"rows", "positive_rate"}
    assert HIGHER_IS_BETTER["log_loss"] is False
    assert all(HIGHER_IS_BETTER[name] for name in ("roc_auc", "f1", "accuracy", "precision", "recall"))


def _toy() -> tuple[DatasetSchema, pd.DataFrame, np.ndarray]:
    schema = DatasetSchema.model_validate(
        {
            "name": "toy",
            "min_rows": 2,
            "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
            "features": [
                {"name": "noise", "kind": "numeric"},
                {"name": "signal", "kind": "numeric"},
                {"name": "colour", "kind": "categorical", "categories": ["red", "blue"]},
            ],
        }
    )
    rng = np.random.default_rng(0)
    n = 400
    signal = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "noise": rng.normal(size=n).astype(np.float32),
            "signal": signal.astype(np.float32),
            "colour": rng.choice(["red", "blue"], size=n).astype(object),
        }
    )
    y = (signal + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return schema, frame, y


def test_feature_importance_ranks_the_informative_raw_feature_first() -> None:
    schema, frame, y = _toy()
    pipeline = build_pipeline(schema, "logistic_regression").fit(frame, y)

    importance = feature_importance(pipeline, frame, y, seed=0)

    assert list(importance)[0] == "signal"
    assert set(importance) == {"noise", "signal", "colour"}
    assert importance["signal"] > 0.3
    assert abs(importance["noise"]) < 0.05
    values = list(importance.values())
    assert values == sorted(values, reverse=True)
    assert feature_importance(pipeline, frame, y, seed=0) == importance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feature_importance_on_a_sample_of_a_big_holdout_keeps_the_ranking(seed: int) -> None:
    schema, frame, y = _toy()
    pipeline = build_pipeline(schema, "logistic_regression").fit(frame, y)
    whole = feature_importance(pipeline, frame, y, seed=seed)
    sampled = feature_importance(pipeline, frame, y, seed=seed, max_rows=200)
    assert sampled != whole  # computed on other rows
    assert list(sampled)[0] == "signal"
    assert sampled["signal"] > 0.3
    assert abs(sampled["noise"]) < 0.05
    assert len(importance_sample(y, seed, limit=200)) == 200  # both classes are common: the plain sample
    assert len(importance_sample(y[:150], seed, limit=200)) == 150


def _rare_class_world(kind: str, seed: int) -> tuple[DatasetSchema, pd.DataFrame, np.ndarray]:
    """30,000 rows where a class has 6 rows: a plain sample of 5,000 misses it about a third of the time."""
    rng = np.random.default_rng(seed)
    n = 30_000
    frame = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n)})
    y = (frame["signal"] > 0).to_numpy(dtype=np.int64) if kind == "multiclass" else np.zeros(n, dtype=np.int64)
    y[rng.choice(n, 6, replace=False)] = 2 if kind == "multiclass" else 1
    target: dict[str, object] = {"name": "y", "kind": kind, "classes": ["a", "b", "c"]}
    if kind == "binary":
        target = {"name": "y", "classes": ["a", "b"], "positive": "b"}
    features = [{"name": "signal", "kind": "numeric"}, {"name": "noise", "kind": "numeric"}]
    return DatasetSchema.model_validate({"name": "rare", "target": target, "features": features}), frame, y


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_importance_sample_keeps_a_rare_class_and_the_plain_sample(kind: str, seed: int) -> None:
    schema, frame, y = _rare_class_world(kind, seed)
    rare = np.flatnonzero(y == y.max())
    picked = importance_sample(y, seed, schema.task)
    assert set(rare) <= set(picked)  # each of its 6 rows, under the floor of 50
    plain = evaluation.sample_positions(len(y), evaluation.IMPORTANCE_ROWS, seed)
    assert set(plain) <= set(picked)
    assert len(picked) <= evaluation.IMPORTANCE_ROWS + 6
    assert np.all(np.diff(picked) > 0)
    pipeline = build_pipeline(schema, "logistic_regression").fit(frame, y)
    importance = feature_importance(pipeline, frame, y, seed=seed, task=schema.task)
    assert all(math.isfinite(value) for value in importance.values())  # one-vs-rest refused a missing class
    if kind == "multiclass":
        assert list(importance)[0] == "signal"


def test_importance_sample_of_a_regressor_is_the_plain_sample() -> None:
    values = np.random.default_rng(0).normal(size=8000)
    regression = DatasetSchema.model_validate(
        {"name": "r", "target": {"name": "y", "kind": "regression"}, "features": [{"name": "x", "kind": "numeric"}]}
    )
    np.testing.assert_array_equal(
        importance_sample(values, 3, regression.task), evaluation.sample_positions(8000, evaluation.IMPORTANCE_ROWS, 3)
    )


def _toy_of_kind(kind: str) -> tuple[DatasetSchema, pd.DataFrame, np.ndarray]:
    """600 rows where only ``signal`` carries the target, for a binary, multiclass or regression task."""
    rng = np.random.default_rng(4)
    n = 600
    frame = pd.DataFrame(
        {
            "noise": rng.normal(size=n),
            "signal": rng.normal(size=n),
            "colour": rng.choice(["red", "blue", "green"], size=n).astype(object),
        }
    )
    signal = frame["signal"].to_numpy() + 0.2 * rng.normal(size=n)
    targets = {
        "binary": ({"classes": ["no", "yes"], "positive": "yes"}, (signal > 0).astype(np.int64)),
        "multiclass": ({"classes": ["low", "mid", "high"]}, np.digitize(signal, [-0.5, 0.5]).astype(np.int64)),
        "regression": ({}, 3.0 * signal),
    }
    target, y = targets[kind]
    schema = DatasetSchema.model_validate(
        {
            "name": "toy",
            "min_rows": 2,
            "target": {"name": "y", "kind": kind, **target},
            "features": [
                {"name": "noise", "kind": "numeric"},
                {"name": "signal", "kind": "numeric"},
                {"name": "colour", "kind": "categorical", "categories": ["red", "blue", "green"]},
            ],
        }
    )
    return schema, frame, y


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "random_forest"])
def test_importance_predicts_shuffles_together_with_the_answer_of_one_call_per_shuffle(
    kind: str, estimator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema, frame, y = _toy_of_kind(kind)
    pipeline = build_pipeline(schema, estimator, seed=0).fit(frame, y)
    together = feature_importance(pipeline, frame, y, seed=1, task=schema.task)
    monkeypatch.setattr(evaluation, "_SHUFFLES_BYTES", 1)  # every shuffle predicted on its own
    one_by_one = feature_importance(pipeline, frame, y, seed=1, task=schema.task)
    matrix_bytes = np.asarray(pipeline.steps[0][1].transform(frame)).nbytes
    monkeypatch.setattr(evaluation, "_SHUFFLES_BYTES", 2 * matrix_bytes)  # two at a time, the last batch one
    in_pairs = feature_importance(pipeline, frame, y, seed=1, task=schema.task)

    assert together == one_by_one == in_pairs
    assert list(together)[0] == "signal"
    assert together["signal"] > 0.2
    assert abs(together["noise"]) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_is_scikit_learns_with_ties_and_nan_for_one_class(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 3000)
    scores = np.round(rng.normal(size=3000) + 0.7 * y, seed + 1)  # rounded: many tied scores across classes
    assert evaluation.roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
    assert evaluation.roc_auc(np.array([0, 1, 1]), np.array([0.2, 0.2, 0.9])) == 0.75  # the tie counts half
    assert math.isnan(evaluation.roc_auc(np.ones(10), rng.random(10)))
