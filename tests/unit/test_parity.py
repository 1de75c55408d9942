"""compare_outputs: real sklearn/ONNX outputs pass; perturbed ones fail; ties are tolerated; bad shapes fail."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from driftloop import settings
from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.parity import ParityReport, compare_outputs, compare_with_recording, parity_rows
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.io.onnx_export import export_onnx
from driftloop.io.onnx_runtime import OnnxModel

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def outputs() -> Outputs:
    """sklearn (proba, labels) and ONNX (proba, labels) of a small churn model on 500 unseen rows."""
    schema = DatasetSchema.model_validate(yaml.safe_load(settings.BUNDLED_SCHEMA.read_text(encoding="utf-8")))
    raw = pd.read_csv(settings.BUNDLED_DATA)
    frame, y = to_model_frame(raw, schema), encode_target(raw[schema.target.name], schema)
    train, rest, y_train, _ = train_test_split(frame, y, train_size=1000, stratify=y, random_state=0)
    scored = rest.head(500)
    pipeline = build_pipeline(schema, "logistic_regression").fit(train, y_train)
    onnx_labels, onnx_proba = OnnxModel.from_bytes(export_onnx(pipeline, schema), schema).predict(scored)
    return pipeline.predict_proba(scored), pipeline.predict(scored), onnx_proba, onnx_labels


def test_identical_outputs_pass(outputs: Outputs) -> None:
    proba, labels, _, _ = outputs
    report = compare_outputs(proba, proba.copy(), labels, labels.copy())
    assert report.passed
    assert report.max_abs_diff == 0.0
    assert report.label_mismatches == 0
    assert report.rows == 500


def test_real_onnx_outputs_pass(outputs: Outputs) -> None:
    report = compare_outputs(*_reorder(outputs))
    assert report.passed, report.summary()
    assert 0 < report.max_abs_diff < 1e-6  # float32 vs float64: close, not bit-identical
    assert report.reason == "within tolerance"


def _reorder(outputs: Outputs) -> Outputs:
    sk_proba, sk_labels, onnx_proba, onnx_labels = outputs
    return sk_proba, onnx_proba, sk_labels, onnx_labels


def test_perturbed_probabilities_fail(outputs: Outputs) -> None:
    sk_proba, onnx_proba, sk_labels, onnx_labels = _reorder(outputs)
    drifted = onnx_proba.copy()
    drifted[[3, 10, 200], 1] += 1e-3

    report = compare_outputs(sk_proba, drifted, sk_labels, onnx_labels)

    assert not report.passed
    assert report.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
    assert report.label_mismatches == 0
    assert "on 3 row(s)" in report.reason
    assert "tolerance" in report.reason


def test_a_flipped_label_away_from_the_tie_band_fails(outputs: Outputs) -> None:
    sk_proba, onnx_proba, sk_labels, onnx_labels = _reorder(outputs)
    row = int(np.argmax(np.abs(sk_proba[:, 1] - 0.5)))  # the most confident row: far from any tie
    flipped = onnx_labels.copy()
    flipped[row] = 1 - flipped[row]

    report = compare_outputs(sk_proba, onnx_proba, sk_labels, flipped)

    assert not report.passed
    assert report.max_abs_diff < 1e-5
    assert report.label_mismatches == 1
    assert report.label_mismatches_outside_tie_band == 1
    assert "1 label mismatch(es) outside the tie band" in report.reason


def test_a_flipped_label_on_an_exact_tie_passes() -> None:
    # RandomForest gives exactly 0.5; ONNX sums its trees to 0.50000006 and says class 1.
    expected = np.array([[0.5, 0.5], [0.9, 0.1]])
    actual = np.array([[0.49999994, 0.50000006], [0.9, 0.1]], dtype=np.float32)

    report = compare_outputs(expected, actual, np.array([0, 0]), np.array([1, 0]))

    assert report.passed, report.summary()
    assert report.label_mismatches == 1
    assert report.label_mismatches_outside_tie_band == 0
    assert report.ties == 1


def test_a_flip_just_outside_the_tie_band_fails() -> None:
    expected = np.array([[0.4999, 0.5001]])
    report = compare_outputs(expected, expected.copy(), np.array([1]), np.array([0]), tie_band=1e-5)
    assert not report.passed
    assert report.ties == 0


@pytest.mark.parametrize(
    ("expected", "actual", "labels", "reason"),
    [
        (np.zeros((3, 2)), np.zeros((2, 2)), (np.zeros(3), np.zeros(3)), "probability shapes differ"),
        (np.zeros((3, 2)), np.zeros((3, 3)), (np.zeros(3), np.zeros(3)), "probability shapes differ"),
        (np.zeros(3), np.zeros(3), (np.zeros(3), np.zeros(3)), "not (n, k ≥ 2)"),
        (np.zeros((3, 2)), np.zeros((3, 2)), (np.zeros(3), np.zeros(2)), "label shapes"),
        (np.zeros((0, 2)), np.zeros((0, 2)), (np.zeros(0), np.zeros(0)), "no rows"),
        (np.zeros((2, 2)), np.array([[0.0, 0.0], [np.nan, 1.0]]), (np.zeros(2), np.zeros(2)), "1 row(s) have NaN"),
    ],
)
def test_unusable_outputs_fail_with_a_reason(
    expected: np.ndarray, actual: np.ndarray, labels: tuple[np.ndarray, np.ndarray], reason: str
) -> None:
    report = compare_outputs(expected, actual, *labels)
    assert not report.passed
    assert reason in report.reason
    assert math.isnan(report.max_abs_diff)


def test_a_negative_tolerance_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        compare_outputs(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), tolerance=-1.0)


def test_report_renders_as_dict_and_one_line(outputs: Outputs) -> None:
    report = compare_outputs(*_reorder(outputs))
    as_dict = report.as_dict()
    assert set(as_dict) == {f.name for f in dataclasses.fields(ParityReport)}
    assert as_dict["passed"] is True
    summary = report.summary()
    assert "\n" not in summary
    assert summary.startswith("parity passed on 500 rows")
    failed = compare_outputs(np.zeros((1, 2)), np.ones((1, 2)), np.zeros(1), np.zeros(1)).summary()
    assert failed.startswith("parity FAILED")
    assert "max |Δp| 1.00e+00 > tolerance 1e-05" in failed


def test_outputs_are_compared_with_the_recording_by_the_same_rule() -> None:
    recording = {"labels": [0, 1, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], "tolerance": 1e-5}
    same = compare_with_recording(recording, [0, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    assert same.passed  # the third row is a tie: its label may go either way
    drifted = compare_with_recording(recording, [0, 1, 1], [[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    assert not drifted.passed
    assert (
        drifted.mismatch() == "probabilities differ from the recording by up to 0.2 (tolerance 1e-05) on 3 sample rows"
    )
    flipped = compare_with_recording(recording, [1, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    assert flipped.mismatch("those recorded") == "predicted labels differ from those recorded on 1 row(s)"
    garbage = compare_with_recording(recording, None, "not numbers")
    assert not garbage.passed
    assert "not numeric" in garbage.mismatch()
    short = compare_with_recording(recording, [0], [[0.9, 0.1]])
    assert "cannot be compared" in short.mismatch()
    with pytest.raises(ValueError, match="recorded self-check outputs are unreadable"):
        compare_with_recording({"labels": [0]}, [0], [[1.0, 0.0]])


def test_export_parity_compares_every_row_or_a_seeded_sample_of_the_limit() -> None:
    assert parity_rows(5, limit=10).tolist() == [0, 1, 2, 3, 4]
    sample = parity_rows(1000, limit=100, seed=3)
    assert len(sample) == len(set(sample.tolist())) == 100
    assert sample.tolist() == sorted(sample.tolist())  # in holdout order
    assert sample.max() < 1000
    assert parity_rows(1000, limit=100, seed=3).tolist() == sample.tolist()
    assert parity_rows(1000, limit=100, seed=4).tolist() != sample.tolist()
