"""Target drift: the labels that come back against the training target, by Evidently's rules, on known data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.drift import build_profile, check_target_drift
from driftloop.core.task import Task, TaskKind
from driftloop.io.reference import load_profile, save_profile

BINARY = Task(TaskKind.BINARY, ("no", "yes"))
REGRESSION = Task(TaskKind.REGRESSION, ())
SEEDS = [0, 1, 2]


def _features(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(rows, dtype=float)})


def _classes(rows: int, seed: int, share_yes: float) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(np.where(rng.random(rows) < share_yes, "yes", "no"), name="churn")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_classifiers_labels_drift_when_the_class_balance_moves_and_not_otherwise(seed: int) -> None:
    profile = build_profile(_features(2000), ["x"], [], target=_classes(2000, seed, 0.3))
    same = check_target_drift(profile, BINARY, _classes(400, seed + 1, 0.3), min_rows=100)
    moved = check_target_drift(profile, BINARY, _classes(400, seed + 2, 0.7), min_rows=100)
    assert same is not None
    assert moved is not None
    assert not same.drifted
    assert moved.drifted
    assert moved.column == "churn"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_regressors_labels_drift_when_their_distribution_moves_and_not_otherwise(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = pd.Series(rng.normal(100.0, 10.0, 2000), name="price")
    profile = build_profile(_features(2000), ["x"], [], target=target, target_kind="numerical")
    same = pd.Series(rng.normal(100.0, 10.0, 400).astype(str))  # feedback stores labels as text
    moved = pd.Series(rng.normal(130.0, 10.0, 400).astype(str))
    same_check = check_target_drift(profile, REGRESSION, same, min_rows=100)
    moved_check = check_target_drift(profile, REGRESSION, moved, min_rows=100)
    assert same_check is not None
    assert moved_check is not None
    assert not same_check.drifted
    assert moved_check.drifted


def test_only_usable_labels_count_and_too_few_are_not_tested() -> None:
    profile = build_profile(_features(500), ["x"], [], target=_classes(500, 0, 0.5))
    unusable = pd.Series(["maybe"] * 300 + ["yes"] * 50 + [None] * 10, dtype=object)
    assert check_target_drift(profile, BINARY, unusable, min_rows=100) is None  # 50 usable labels
    assert check_target_drift(build_profile(_features(500), ["x"], []), BINARY, _classes(300, 1, 0.5), 100) is None


def test_the_target_reference_survives_the_profile_files(tmp_path: Path) -> None:
    profile = build_profile(_features(500), ["x"], [], target=_classes(500, 0, 0.3))
    save_profile(profile, tmp_path)
    loaded = load_profile(tmp_path)
    labels = _classes(400, 5, 0.7)
    original, reread = check_target_drift(profile, BINARY, labels, 100), check_target_drift(loaded, BINARY, labels, 100)
    assert original is not None
    assert reread == original
