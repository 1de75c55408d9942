"""Drift that matters: the importance-weighted share and the rule that decides, on data where the truth is known.

The world: ``y`` depends on ``x1`` and ``x2`` only; ``x3``, ``x4`` and ``region`` are noise. A real model is
trained, its permutation importances measured on a holdout (as the training flow does), and the profile built from
them. Moving the three noise columns moves 3 of 5 columns (Evidently's share says drift) but nothing the model
uses; moving ``x1`` alone moves 1 of 5 (the share says no drift) but what the model relies on most.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from driftloop.core.drift import (
    ColumnDrift,
    ReferenceProfile,
    build_profile,
    check_drift,
    importance_weights,
    with_threshold,
)
from driftloop.core.drift_rule import DRIFT_RULES, DriftRule, apply_rule, episode_reasons
from driftloop.core.evaluation import feature_importance
from driftloop.errors import ConfigError, DatasetError
from driftloop.io.datasets import load_schema
from driftloop.io.reference import PROFILE_FILE, load_profile, save_profile
from driftloop.settings import Settings

NUMERIC = ["x1", "x2", "x3", "x4"]
CATEGORICAL = ["region"]
SEEDS = [0, 1, 2, 3, 4]


def _world(rows: int, seed: int, moved: tuple[str, ...] = ()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in NUMERIC})
    frame["region"] = rng.choice(["north", "south", "east"], rows, p=[0.6, 0.3, 0.1])
    for name in moved:
        if name == "region":
            frame[name] = rng.choice(["north", "south", "east"], rows, p=[0.1, 0.3, 0.6])
        else:
            frame[name] = frame[name] + 3.0
    signal = 2.0 * frame["x1"] + frame["x2"]
    frame["y"] = (signal + rng.normal(0.0, 0.5, rows) > 0).astype(int)
    return frame


def _trained_profile(seed: int) -> ReferenceProfile:
    train, holdout = _world(4000, seed), _world(2000, seed + 100)
    features = NUMERIC + CATEGORICAL
    model = Pipeline(
        [
            ("prep", ColumnTransformer([("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(), CATEGORICAL)])),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    model.fit(train[features], train["y"])
    importances = feature_importance(model, holdout[features], holdout["y"].to_numpy(), seed)
    return build_profile(train[features], NUMERIC, CATEGORICAL, seed=seed, importances=importances)


@pytest.mark.parametrize("seed", SEEDS)
def test_drift_in_features_the_model_ignores_is_drift_by_share_and_not_by_weight(seed: int) -> None:
    profile = _trained_profile(seed)
    window = _world(3000, seed + 200, moved=("x3", "x4", "region"))
    share = check_drift(profile, window, rule="share")
    weighted = check_drift(profile, window, rule="weighted")
    assert sorted(share.drifted_columns) == ["region", "x3", "x4"]
    assert share.status == "drift"
    assert share.fired == (f"share {share.share:.2f}",)
    assert weighted.weighted_share is not None
    assert weighted.weighted_share < 0.1
    assert weighted.status == "no drift"
    assert weighted.fired == ()
    assert weighted.share == share.share  # the plain share is still computed and reported, exactly


@pytest.mark.parametrize("seed", SEEDS)
def test_drift_in_the_feature_the_model_relies_on_is_drift_by_weight_and_not_by_share(seed: int) -> None:
    profile = _trained_profile(seed)
    window = _world(3000, seed + 300, moved=("x1",))
    share = check_drift(profile, window, rule="share")
    weighted = check_drift(profile, window, rule="weighted")
    either = check_drift(profile, window, rule="either")
    assert share.drifted_columns == ["x1"]
    assert share.status == "no drift"
    assert weighted.weighted_share is not None
    assert weighted.weighted_share > 0.5
    assert weighted.status == "drift"
    assert weighted.fired == (f"weighted share {weighted.weighted_share:.2f}",)
    assert either.status == "drift"
    assert "rule weighted" in weighted.summary()


@pytest.mark.parametrize("seed", SEEDS)
def test_no_drift_anywhere_is_no_drift_under_every_rule(seed: int) -> None:
    profile = _trained_profile(seed)
    window = _world(3000, seed + 400)
    for rule in DRIFT_RULES:
        assert check_drift(profile, window, rule=rule).status == "no drift"


def test_weights_clip_negative_importances_and_sum_to_one() -> None:
    weights = importance_weights({"a": 0.3, "b": -0.1, "c": 0.1}, ["a", "b", "c", "d"])
    assert weights == pytest.approx({"a": 0.75, "b": 0.0, "c": 0.25, "d": 0.0})
    assert importance_weights({"a": -0.2, "b": 0.0}, ["a", "b"]) is None  # nothing the model relies on
    assert importance_weights({"a": float("nan"), "b": 1.0}, ["a", "b"]) == {"a": 0.0, "b": 1.0}


@pytest.mark.parametrize(
    ("rule", "share", "weighted", "status", "fired"),
    [
        ("share", 0.6, 0.1, "drift", ("share 0.60",)),
        ("share", 0.4, 0.9, "no drift", ()),
        ("weighted", 0.6, 0.1, "no drift", ()),
        ("weighted", 0.2, 0.5, "drift", ("weighted share 0.50",)),
        ("either", 0.6, 0.7, "drift", ("share 0.60", "weighted share 0.70")),
        ("either", 0.4, 0.4, "no drift", ()),
    ],
)
def test_the_rule_decides_and_says_what_fired(
    rule: DriftRule, share: float, weighted: float, status: str, fired: tuple[str, ...]
) -> None:
    assert apply_rule(rule, share, weighted, 0.5) == (status, fired, "")


def test_without_weights_a_weighted_rule_falls_back_to_the_share_and_says_so() -> None:
    status, fired, note = apply_rule("weighted", 0.6, None, 0.5)
    assert (status, fired) == ("drift", ("share 0.60",))
    assert "no importance weights" in note
    frame = _world(500, 0)
    profile = build_profile(frame, NUMERIC, CATEGORICAL)  # no importances: an older profile
    verdict = check_drift(profile, _world(500, 1, moved=("x1",)), rule="weighted")
    assert verdict.weighted_share is None
    assert "the plain share decides" in verdict.decided_by()


def test_an_unknown_rule_is_refused() -> None:
    frame = _world(300, 0)
    with pytest.raises(DatasetError, match="drift rule 'heaviest'"):
        check_drift(build_profile(frame, NUMERIC, CATEGORICAL), frame, rule="heaviest")  # type: ignore[arg-type]


def test_the_weights_survive_the_profile_files_and_damaged_ones_are_named(tmp_path: Path) -> None:
    profile = _trained_profile(0)
    save_profile(profile, tmp_path)
    loaded = load_profile(tmp_path)
    assert profile.weights is not None
    assert loaded.weights == pytest.approx(dict(profile.weights))
    document = (tmp_path / PROFILE_FILE).read_text()
    (tmp_path / PROFILE_FILE).write_text(document.replace('"x1":', '"x9":', 1))
    with pytest.raises(DatasetError, match="weights must name each column once"):
        load_profile(tmp_path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_schema_threshold_judges_its_column_both_ways(seed: int, tmp_path: Path) -> None:
    """A column's own threshold replaces the default for that column only, with its test's comparison; kept on disk."""
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"big": rng.normal(0, 1, 5000), "small": rng.normal(0, 1, 5000), "city": "a"})
    current = pd.DataFrame({"big": rng.normal(0.15, 1, 2000), "small": rng.normal(0, 1, 2000), "city": "a"})
    plain = build_profile(reference, ["big", "small"], ["city"])
    default = check_drift(plain, current, min_rows=10)
    big = next(c for c in default.columns if c.column == "big")
    assert big.method == "Wasserstein distance (normed)"
    assert 0.1 < big.score < 0.2  # a 0.15 sd move: drift at the default 0.1
    assert big.drifted
    tolerant = build_profile(reference, ["big", "small"], ["city"], thresholds={"big": 0.25})
    judged = check_drift(tolerant, current, min_rows=10)
    relaxed = next(c for c in judged.columns if c.column == "big")
    assert (relaxed.threshold, relaxed.drifted, relaxed.score) == (0.25, False, big.score)
    assert [c for c in judged.columns if c.column != "big"] == [c for c in default.columns if c.column != "big"]
    strict = check_drift(build_profile(reference, ["big", "small"], ["city"], thresholds={"big": 0.05}),
                         current.assign(big=rng.normal(0.07, 1, 2000)), min_rows=10)  # fmt: skip
    assert next(c for c in strict.columns if c.column == "big").drifted  # 0.07 sd: no drift at 0.1, drift at 0.05
    save_profile(tolerant, tmp_path)
    assert load_profile(tmp_path).thresholds == {"big": 0.25}


def test_with_threshold_keeps_each_test_s_own_comparison() -> None:
    ks = ColumnDrift("a", "numerical", "K-S p_value", 0.05, 0.01, True)
    assert with_threshold(ks, 0.01).drifted  # K-S: p ≤ threshold
    assert not with_threshold(replace(ks, method="Z-test p_value"), 0.01).drifted  # Z and chi²: p < threshold
    assert with_threshold(replace(ks, method="Wasserstein distance (normed)", score=0.2), 0.2).drifted
    assert with_threshold(replace(ks, score=math.nan), 0.5).drifted  # no value to test stays drift
    assert with_threshold(ks, None) is ks


def test_a_schema_threshold_outside_0_1_is_refused_by_name(tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        "name: t\ntarget: {name: y, classes: [a, b], positive: b}\n"
        "features:\n  - {name: x, kind: numeric, drift_threshold: 2}\n"
        "  - {name: z, kind: numeric, drift_threshold: 0.2}\n"
    )
    with pytest.raises(ConfigError, match=r"features\[0\] \('x'\).drift_threshold: Input should be less than 1"):
        load_schema(schema)
    schema.write_text(schema.read_text().replace("drift_threshold: 2}", "drift_threshold: 0.01}"))
    assert [f.drift_threshold for f in load_schema(schema).features] == [0.01, 0.2]


def test_the_episode_policy_names_what_fired_among_its_triggers() -> None:
    everything = ("features", "labels", "estimate")
    assert episode_reasons(everything, features=False, estimate=True, labels=False) == ("estimate",)
    assert episode_reasons(("labels",), features=True, estimate=True, labels=False) == ()
    assert episode_reasons(("estimate", "features"), features=True, estimate=True, labels=True) == (
        "features",
        "estimate",
    )
    assert episode_reasons(everything, features=False, estimate=False, labels=False) == ()


def test_the_episode_policy_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_DRIFT_OPENS_EPISODE", "labels, features")
    assert Settings().drift_opens_episode == ("labels", "features")
    monkeypatch.setenv("DRIFTLOOP_DRIFT_OPENS_EPISODE", "labels,gut-feeling")
    with pytest.raises(ValidationError, match="drift_opens_episode"):
        Settings()
