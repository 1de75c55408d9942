"""build_pipeline / describe_pipeline on the bundled churn data and the synthetic loans data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from driftloop import settings
from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.pipeline import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    MODEL_STEP,
    PREPROCESS_STEP,
    build_pipeline,
    describe_pipeline,
    make_estimator,
    preprocessed_columns,
)
from driftloop.core.schema import DatasetSchema
from driftloop.errors import ConfigError
from tests.support.loans import LOANS_SCHEMA_YAML, make_loans


@pytest.fixture(scope="module")
def churn() -> tuple[DatasetSchema, pd.DataFrame, np.ndarray]:
    schema = DatasetSchema.model_validate(yaml.safe_load(settings.BUNDLED_SCHEMA.read_text(encoding="utf-8")))
    raw = pd.read_csv(settings.BUNDLED_DATA)
    y = encode_target(raw[schema.target.name], schema)
    sample, _, y_sample, _ = train_test_split(raw, y, train_size=600, stratify=y, random_state=0)
    return schema, to_model_frame(sample, schema), y_sample


@pytest.fixture(scope="module")
def loans() -> tuple[DatasetSchema, pd.DataFrame, np.ndarray]:
    schema = DatasetSchema.model_validate(yaml.safe_load(LOANS_SCHEMA_YAML))
    raw = make_loans(rows=600, seed=3)
    return schema, to_model_frame(raw, schema), encode_target(raw[schema.target.name], schema)


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("dataset", ["churn", "loans"])
def test_every_estimator_fits_and_ranks_better_than_chance(
    name: str, dataset: str, request: pytest.FixtureRequest
) -> None:
    schema, frame, y = request.getfixturevalue(dataset)
    pipeline = build_pipeline(schema, name, seed=1)
    pipeline.fit(frame, y)

    proba = pipeline.predict_proba(frame)
    assert proba.shape == (len(frame), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    positives, negatives = proba[y == 1, 1], proba[y == 0, 1]
    # Training-set rank check: any working model puts positives above negatives most of the time.
    assert (positives[:, None] > negatives[None, :]).mean() > 0.7


def test_default_estimator_is_logistic_regression(churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]) -> None:
    schema, _, _ = churn
    assert DEFAULT_ESTIMATOR == "logistic_regression"
    assert type(build_pipeline(schema)[MODEL_STEP]).__name__ == "LogisticRegression"


@pytest.mark.parametrize(
    ("estimator", "params", "message"),
    [
        ("hist_gradient_boosting", {"max_iter": "abc"}, "'max_iter' parameter"),
        ("random_forest", {"n_estimators": -3}, "'n_estimators' parameter"),
        ("logistic_regression", {"C": "strong"}, "'C' parameter"),
    ],
)
def test_bad_parameter_values_fail_before_training(estimator: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_estimator(estimator, params)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_only_the_linear_model_scales_numerics(
    name: str, churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]
) -> None:
    schema, _, _ = churn
    numeric = build_pipeline(schema, name)[PREPROCESS_STEP].transformers[0][1]
    has_scaler = any(isinstance(step, StandardScaler) for _, step in numeric.steps)
    assert has_scaler is (name == "logistic_regression")


def test_one_hot_columns_come_from_the_schema_not_the_sample(
    churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray],
) -> None:
    schema, frame, y = churn
    # No row has "Two year", yet the encoder keeps a column for it: the model's inputs follow the schema.
    keep = frame["contract"] != "Two year"
    pipeline = build_pipeline(schema, "logistic_regression").fit(frame[keep], y[keep])

    width = pipeline[PREPROCESS_STEP].transform(frame.head(3)).shape[1]
    declared = sum(len(schema.feature(c).categories or ()) for c in schema.categorical)
    assert width == len(schema.numeric) + declared


def test_missing_and_unknown_categories_are_scored(churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]) -> None:
    schema, frame, y = churn
    pipeline = build_pipeline(schema, "random_forest", params={"n_estimators": 10}).fit(frame, y)
    odd = frame.head(3).copy()
    odd.loc[odd.index[0], "contract"] = ""
    odd.loc[odd.index[1], "contract"] = "Satellite"
    odd.loc[odd.index[2], "total_charges"] = np.nan
    assert np.isfinite(pipeline.predict_proba(odd)).all()


def test_seed_and_params_reach_the_estimator(churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]) -> None:
    schema, _, _ = churn
    model = build_pipeline(schema, "random_forest", params={"n_estimators": 7}, seed=11)[MODEL_STEP]
    assert model.n_estimators == 7
    assert model.random_state == 11
    assert model.min_samples_leaf == ESTIMATORS["random_forest"].defaults["min_samples_leaf"]
    # A params entry wins over the seed.
    explicit = build_pipeline(schema, "random_forest", params={"random_state": 3}, seed=11)[MODEL_STEP]
    assert explicit.random_state == 3


def test_same_seed_gives_the_same_model(churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]) -> None:
    schema, frame, y = churn
    first = build_pipeline(schema, "random_forest", params={"n_estimators": 5}, seed=4).fit(frame, y)
    second = build_pipeline(schema, "random_forest", params={"n_estimators": 5}, seed=4).fit(frame, y)
    np.testing.assert_array_equal(first.predict_proba(frame), second.predict_proba(frame))


def test_unknown_estimator_lists_the_choices(churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]) -> None:
    schema, _, _ = churn
    with pytest.raises(ConfigError, match="unknown estimator 'svm'") as caught:
        build_pipeline(schema, "svm")
    for name in ESTIMATORS:
        assert name in str(caught.value)


def test_unknown_parameter_lists_the_valid_ones(churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]) -> None:
    schema, _, _ = churn
    with pytest.raises(ConfigError, match="does not take parameter\\(s\\) 'n_estimators'") as caught:
        build_pipeline(schema, "hist_gradient_boosting", params={"n_estimators": 10, "max_iter": 5})
    assert "learning_rate" in str(caught.value)
    assert "max_iter" in str(caught.value)


def test_describe_pipeline_is_flat_and_textual(churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray]) -> None:
    schema, _, _ = churn
    described = describe_pipeline(build_pipeline(schema, "gradient_boosting", params={"learning_rate": 0.05}))
    assert described["estimator"] == "gradient_boosting"
    assert described["learning_rate"] == "0.05"
    assert described["random_state"] == "42"
    assert described["init"] == "None"
    assert all(isinstance(value, str) for value in described.values())


@pytest.mark.parametrize("name", ["logistic_regression", "hist_gradient_boosting"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffling_a_raw_feature_shuffles_exactly_its_preprocessed_columns(
    churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray], name: str, seed: int
) -> None:
    """The premise of importance on the preprocessed matrix: preprocessing then shuffling is shuffling then
    preprocessing, for every feature, numeric (scaled or not) and categorical (one-hot, missing values included)."""
    schema, frame, y = churn
    frame = frame.copy()
    frame.iloc[::7, frame.columns.get_loc(schema.categorical[0])] = ""  # missing: imputed before the one-hot
    frame.iloc[::5, frame.columns.get_loc(schema.numeric[0])] = np.nan
    pipeline = build_pipeline(schema, name, seed=seed).fit(frame, y)
    features = list(frame.columns)
    columns = preprocessed_columns(pipeline, features)
    assert columns is not None
    preprocess = pipeline.named_steps[PREPROCESS_STEP]
    matrix = preprocess.transform(frame)
    assert sorted(c for where in columns for c in where) == list(range(matrix.shape[1]))  # each column once
    order = np.random.default_rng(seed).permutation(len(frame))
    for feature, where in zip(features, columns, strict=True):
        shuffled = frame.copy()
        shuffled[feature] = frame[feature].to_numpy()[order]
        expected = matrix.copy()
        expected[:, where] = matrix[order][:, where]
        np.testing.assert_array_equal(preprocess.transform(shuffled), expected)


def test_a_users_own_pipeline_has_no_preprocessed_columns(
    churn: tuple[DatasetSchema, pd.DataFrame, np.ndarray],
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    schema, frame, y = churn
    own = Pipeline(
        [
            ("mine", ColumnTransformer([("scaled", StandardScaler(), schema.numeric),
                                        ("codes", OneHotEncoder(handle_unknown="ignore"), schema.categorical)])),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, y)  # fmt: skip
    assert preprocessed_columns(own, list(frame.columns)) is None
