"""Build the scikit-learn Pipeline (preprocessing included, so the ONNX export carries it to serving)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler

from driftloop.core.features import MISSING_CATEGORY
from driftloop.core.schema import DatasetSchema
from driftloop.core.task import Task, TaskKind
from driftloop.errors import ConfigError

DEFAULT_ESTIMATOR = "logistic_regression"
DEFAULT_REGRESSOR = "ridge"
PREPROCESS_STEP = "preprocess"
MODEL_STEP = "model"


# The optional extra that installs LightGBM, XGBoost and their ONNX converters (pyproject.toml).
BOOSTING_EXTRA = "driftloop[boosting]"


@dataclass(frozen=True)
class EstimatorSpec:
    """How to make one estimator: its class, driftloop's defaults, and whether it needs scaled inputs.

    ``cls`` is a class, or ``"module:Class"`` for an estimator of an optional extra, imported when first made.
    """

    cls: type[BaseEstimator] | str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    linear: bool = False

    def resolve(self) -> type[BaseEstimator]:
        """The class; ConfigError naming the extra to install when its package is missing."""
        if not isinstance(self.cls, str):
            return self.cls
        module, _, name = self.cls.partition(":")
        try:
            found: type[BaseEstimator] = getattr(importlib.import_module(module), name)
        except ImportError as error:
            raise ConfigError(
                f"{name} needs the {module} package, which is not installed ({error}): pip install '{BOOSTING_EXTRA}'"
            ) from None
        return found

    def matches(self, model: object) -> bool:
        """Whether ``model`` is an instance of exactly this spec's class (without importing an optional one)."""
        if isinstance(self.cls, str):
            module, _, name = self.cls.partition(":")
            kind = type(model)
            return kind.__name__ == name and kind.__module__.split(".")[0] == module
        return type(model) is self.cls

    def valid_params(self) -> list[str]:
        return sorted(self.resolve()().get_params(deep=False))

    def make(self, params: Mapping[str, Any] | None = None, seed: int = 42) -> BaseEstimator:
        """The estimator with defaults, then ``random_state=seed`` if it takes one, then ``params``."""
        merged: dict[str, Any] = dict(self.defaults)
        if "random_state" in self.valid_params():
            merged["random_state"] = seed
        merged.update(params or {})
        return self.resolve()(**merged)


# Classifiers (binary and multiclass alike).
ESTIMATORS: dict[str, EstimatorSpec] = {
    "logistic_regression": EstimatorSpec(LogisticRegression, {"max_iter": 1000}, linear=True),
    # min_samples_leaf=5: a quarter of the ONNX size of fully grown trees (2.4 vs 8.7 MB on churn) and no
    # leaf-average probabilities of exactly 0.5, which are label ties between sklearn and ONNX.
    "random_forest": EstimatorSpec(RandomForestClassifier, {"n_estimators": 100, "min_samples_leaf": 5}),
    "gradient_boosting": EstimatorSpec(GradientBoostingClassifier, {"n_estimators": 100}),
    "hist_gradient_boosting": EstimatorSpec(HistGradientBoostingClassifier, {"max_iter": 100}),
    # The boosting extra (converters registered by io.onnx_converters); verbose=-1: LightGBM prints per fit.
    "lightgbm": EstimatorSpec("lightgbm:LGBMClassifier", {"n_estimators": 100, "verbose": -1}),
    "xgboost": EstimatorSpec("xgboost:XGBClassifier", {"n_estimators": 100}),
}
REGRESSORS: dict[str, EstimatorSpec] = {
    "ridge": EstimatorSpec(Ridge, linear=True),
    "random_forest": EstimatorSpec(RandomForestRegressor, {"n_estimators": 100, "min_samples_leaf": 5}),
    "gradient_boosting": EstimatorSpec(GradientBoostingRegressor, {"n_estimators": 100}),
    "hist_gradient_boosting": EstimatorSpec(HistGradientBoostingRegressor, {"max_iter": 100}),
    "lightgbm": EstimatorSpec("lightgbm:LGBMRegressor", {"n_estimators": 100, "verbose": -1}),
    "xgboost": EstimatorSpec("xgboost:XGBRegressor", {"n_estimators": 100}),
}


def estimators_for(task: Task | None) -> dict[str, EstimatorSpec]:
    """The built-in estimators of ``task`` (classifiers when None)."""
    return REGRESSORS if task is not None and task.kind is TaskKind.REGRESSION else ESTIMATORS


def default_estimator(task: Task | None) -> str:
    """The estimator a run uses when none is named: logistic regression, or ridge for a regressor."""
    return DEFAULT_REGRESSOR if task is not None and task.kind is TaskKind.REGRESSION else DEFAULT_ESTIMATOR


def estimator_spec(name: str, task: Task | None = None) -> EstimatorSpec:
    """The spec registered under ``name`` for ``task``; raises ConfigError listing the valid names."""
    registry = estimators_for(task)
    try:
        return registry[name]
    except KeyError:
        kind = f" for a {task.kind} model" if task is not None else ""
        raise ConfigError(f"unknown estimator {name!r}{kind}; choose one of: {', '.join(registry)}") from None


def make_estimator(
    estimator: str, params: Mapping[str, Any] | None = None, seed: int = 42, task: Task | None = None
) -> BaseEstimator:
    """The configured estimator, its parameter names and values checked before anything is trained.

    Raises:
        ConfigError: ``estimator`` is not in ESTIMATORS, ``params`` names a parameter it does not take, or a
            value is of the wrong type or out of range.
    """
    spec = estimator_spec(estimator, task)
    _check_param_names(estimator, params, spec.valid_params())
    return _validated(estimator, spec.make(params, seed))


def configure_estimator(
    what: str, model: BaseEstimator, params: Mapping[str, Any] | None = None, seed: int = 42, task: Task | None = None
) -> BaseEstimator:
    """A user's own unfitted ``model`` (``what`` names it in errors) with ``params`` set on it.

    ``model`` may be a whole ``Pipeline`` with the user's own preprocessing: it then takes the frame
    ``core.features.to_model_frame`` makes (the schema's features by name, float32 numbers with NaN for missing,
    text categories with "" for missing) and replaces driftloop's preprocessing. Its ``random_state``, if it has
    one the user left unset, becomes ``seed``, as for the built-in estimators (a Pipeline's final step's).

    Raises:
        ConfigError: it is not an estimator of the task (a classifier with ``predict_proba``, a regressor with
            ``predict`` and no ``predict_proba``), or ``params`` names a parameter it does not take (a Pipeline's
            as ``step__parameter``) or a bad value.
    """
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    regression = task is not None and task.kind is TaskKind.REGRESSION
    if not (hasattr(model, "fit") and hasattr(model, "predict") and hasattr(model, "get_params")):
        raise ConfigError(
            f"--model {what} returned {type(model).__name__}, not a scikit-learn estimator "
            "(it needs fit, predict and get_params)"
        )
    if regression and hasattr(final, "predict_proba"):
        raise ConfigError(f"--model {what} returned the classifier {type(final).__name__}; the target is a regression")
    if not regression and not hasattr(final, "predict_proba"):
        raise ConfigError(
            f"--model {what} returned {type(final).__name__}, which has no predict_proba; a classifier needs it "
            "(for a regression target, set target.kind: regression in the schema)"
        )
    valid = sorted(model.get_params(deep=isinstance(model, Pipeline)))
    _check_param_names(what, params, valid)
    updates: dict[str, Any] = {}
    seeded = "random_state" if final is model else f"{model.steps[-1][0]}__random_state"
    if seeded in valid and model.get_params(deep=True)[seeded] is None:
        updates[seeded] = seed
    updates.update(params or {})
    try:
        model.set_params(**updates)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{what}: {error}") from None
    return _validated(what, model)


def _check_param_names(what: str, params: Mapping[str, Any] | None, valid: list[str]) -> None:
    unknown = sorted(set(params or {}) - set(valid))
    if unknown:
        raise ConfigError(
            f"estimator {what!r} does not take parameter(s) {', '.join(map(repr, unknown))}; "
            f"valid parameters: {', '.join(valid) or '(none)'}"
        )


def _validated(what: str, model: BaseEstimator) -> BaseEstimator:
    validate = getattr(model, "_validate_params", None)
    if validate is None or not hasattr(model, "_parameter_constraints"):
        return model  # an estimator that declares no constraints checks its parameters in its own fit()
    try:
        # sklearn checks parameter values only inside fit(); its own validator lets a bad value fail here,
        # before a snapshot is read or an MLflow run is opened.
        validate()
    except (ValueError, TypeError) as error:
        raise ConfigError(f"estimator {what!r}: {error}") from None
    return model


# Trees split on thresholds and need no scaling; a scaler in front of them also breaks ONNX parity (see below).
_TREE_MODULES = ("sklearn.ensemble", "sklearn.tree", "lightgbm", "xgboost", "catboost")


def needs_scaling(model: BaseEstimator) -> bool:
    """Whether numeric inputs are standardised before ``model``: yes for everything but tree models."""
    built_in = [*ESTIMATORS.values(), *REGRESSORS.values()]
    if any(spec.matches(model) for spec in built_in):
        return any(spec.matches(model) and spec.linear for spec in built_in)
    return not type(model).__module__.startswith(_TREE_MODULES)


_SCALERS = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)


def scaler_before_trees(pipeline: Pipeline) -> str | None:
    """The class of a scaler that a user's ``pipeline`` applies before its tree model; None when there is none.

    The likely cause when such a pipeline fails the ONNX parity check: ONNX scales in float32, which moves values
    that sit on a split threshold to its other side (see ``build_pipeline``).
    """
    if needs_scaling(pipeline.steps[-1][1]):
        return None
    for _, step in pipeline.steps[:-1]:
        if found := _scaler_in(step):
            return found
    return None


def _scaler_in(step: object) -> str | None:
    if isinstance(step, _SCALERS):
        return type(step).__name__
    if isinstance(step, Pipeline):
        inner = [s for _, s in step.steps]
    elif isinstance(step, ColumnTransformer):
        inner = [s for _, s, _ in step.transformers]
    else:
        return None
    return next((found for s in inner if (found := _scaler_in(s))), None)


def build_pipeline(
    schema: DatasetSchema,
    estimator: str | BaseEstimator | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 42,
) -> Pipeline:
    """An unfitted Pipeline taking a frame made by ``core.features.to_model_frame``.

    ``estimator`` is a built-in name of the schema's task (configured with ``params`` and ``seed``; None: the
    task's default) or an estimator already configured (``configure_estimator``), which becomes the final step
    as it is.

    Raises:
        ConfigError: see ``make_estimator``.
        ValueError: a ``categories: learn`` feature has no list yet (``core.categories.learn_categories`` first).
    """
    unlearned = [f.name for f in schema.features if f.is_categorical and f.categories is None]
    if unlearned:
        raise ValueError(f"feature(s) {unlearned} must have their categories learned from a snapshot first")
    if estimator is None or isinstance(estimator, str):
        model = make_estimator(estimator or default_estimator(schema.task), params, seed, schema.task)
    elif isinstance(estimator, Pipeline):
        return estimator  # the user's own preprocessing replaces driftloop's
    else:
        model = estimator

    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if needs_scaling(model):
        # Only linear models get a scaler. With float32 inputs, ONNX's Scaler rounds differently from sklearn
        # by 1 ulp, and tree thresholds sit exactly on grid values of the data, so a scaler in front of
        # trees flips branches and breaks ONNX parity (max |Δp| 0.23-0.32 on churn). Trees need no scaling.
        numeric_steps.append(("scale", StandardScaler()))

    categorical = Pipeline(
        [
            # onnx converts SimpleImputer only with a string missing value; to_model_frame maps None/NaN to "".
            ("impute", SimpleImputer(missing_values=MISSING_CATEGORY, strategy="most_frequent")),
            (
                "one_hot",
                OneHotEncoder(
                    # The declared categories, not the ones a sample happens to contain: the model's inputs
                    # are then fixed by the schema, and a value outside it is ignored (all zeros).
                    categories=[list(schema.feature(name).categories or ()) for name in schema.categorical],
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
            ),
        ]
    )
    transformers: list[tuple[str, Any, list[str]]] = []
    if schema.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), schema.numeric))
    if schema.categorical:
        transformers.append(("categorical", categorical, schema.categorical))

    return Pipeline(
        [
            (PREPROCESS_STEP, ColumnTransformer(transformers, remainder="drop")),
            (MODEL_STEP, model),
        ]
    )


def check_columns(what: str, model: BaseEstimator, schema: DatasetSchema) -> None:
    """Raise if a user's Pipeline selects, by name, a column the schema has no feature for.

    Its ColumnTransformers are checked before anything is fitted, so a typo costs seconds, not a training run.

    Raises:
        ConfigError: naming the transformer, the unknown columns and the schema's features.
    """
    features = set(schema.feature_names)
    for name, columns in _named_selections(model):
        unknown = sorted(c for c in columns if c not in features)
        if unknown:
            raise ConfigError(
                f"--model {what}: {name!r} selects column(s) {', '.join(map(repr, unknown))} that schema "
                f"{schema.name!r} has no feature for; its features: {', '.join(schema.feature_names)}"
            )


def _named_selections(model: object) -> list[tuple[str, list[str]]]:
    """(transformer name, column names) for every ColumnTransformer part in ``model`` that selects by name."""
    if isinstance(model, Pipeline):
        return [found for _, step in model.steps for found in _named_selections(step)]
    if not isinstance(model, ColumnTransformer):
        return []
    found: list[tuple[str, list[str]]] = []
    for name, transformer, columns in model.transformers:
        selected = [columns] if isinstance(columns, str) else columns
        if isinstance(selected, list | tuple) and all(isinstance(c, str) for c in selected):
            found.append((name, list(selected)))
        found += _named_selections(transformer)
    return found


def is_driftloop_pipeline(pipeline: Pipeline) -> bool:
    """Whether ``pipeline`` is one ``build_pipeline`` made around an estimator (not a user's whole Pipeline)."""
    names = [name for name, _ in pipeline.steps]
    preprocess = pipeline.steps[0][1]
    return (
        names == [PREPROCESS_STEP, MODEL_STEP]
        and isinstance(preprocess, ColumnTransformer)
        and {name for name, _, _ in preprocess.transformers} <= {"numeric", "categorical"}
    )


def preprocessed_columns(pipeline: Pipeline, features: list[str]) -> list[list[int]] | None:
    """The columns of a fitted ``build_pipeline`` preprocessing's output that each of ``features`` becomes.

    That preprocessing works feature by feature (impute, scale, one-hot), so each output column comes from one
    feature: a numeric feature is one column, a categorical one its one-hot block. None for a user's own Pipeline,
    whose preprocessing may mix features.
    """
    if not is_driftloop_pipeline(pipeline):
        return None
    preprocess: ColumnTransformer = pipeline.steps[0][1]
    where: dict[str, list[int]] = {}
    for name, transformer, columns in preprocess.transformers_:
        if name not in ("numeric", "categorical"):
            continue  # the dropped remainder
        widths = (
            [len(values) for values in transformer.named_steps["one_hot"].categories_]
            if name == "categorical"
            else [1] * len(columns)
        )
        start = preprocess.output_indices_[name].start
        for column, width in zip(columns, widths, strict=True):
            where[column] = list(range(start, start + width))
            start += width
        if start != preprocess.output_indices_[name].stop:
            return None
    if any(feature not in where for feature in features):
        return None
    return [where[feature] for feature in features]


def estimator_name(pipeline: Pipeline) -> str:
    """The built-in name of the pipeline's final step, or its class name if it is not one of them."""
    model = pipeline.steps[-1][1]
    for registry in (ESTIMATORS, REGRESSORS):
        for name, spec in registry.items():
            if spec.matches(model):
                return name
    return type(model).__name__


def describe_pipeline(pipeline: Pipeline) -> dict[str, str]:
    """Flat, loggable parameters: ``estimator`` plus every scalar parameter of the final step."""
    model = pipeline.steps[-1][1]
    described = {"estimator": estimator_name(pipeline)}
    for key, value in sorted(model.get_params(deep=False).items()):
        if value is None or isinstance(value, bool | int | float | str):
            described[key] = str(value)
    return described


def sklearn_answers(
    pipeline: Pipeline, frame: pd.DataFrame, task: Task, outputs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``pipeline.predict`` and, for a classifier, ``predict_proba``, its preprocessing run once for both.

    ``outputs``, when the caller has them for these rows, are what ``predict_proba`` (a classifier) or
    ``predict`` (a regressor) gave: not computed again. A classifier's labels are still its own ``predict``.
    """
    if outputs is not None and not task.is_classifier:
        return np.asarray(outputs), None
    matrix = pipeline[:-1].transform(frame) if len(pipeline.steps) > 1 else frame
    final = pipeline.steps[-1][1]
    labels = np.asarray(final.predict(matrix))
    if not task.is_classifier:
        return labels, None
    return labels, np.asarray(final.predict_proba(matrix)) if outputs is None else np.asarray(outputs)
