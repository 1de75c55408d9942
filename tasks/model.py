"""Model tasks: fit, evaluate, export to ONNX with its parity gate, and score the current champion."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from driftloop.core import lineage
from driftloop.core.drift import ColumnKind, build_profile, prediction_values
from driftloop.core.drift_reference import reference_rows
from driftloop.core.evaluation import Metrics, compute_metrics, feature_importance, importance_metric, importance_sample
from driftloop.core.features import encode_target, to_model_frame, with_canonical_target
from driftloop.core.fit_progress import fit_progress
from driftloop.core.float32_splits import snap_fitted_pipeline
from driftloop.core.gates import (
    ALL,
    CHAMPION_DATA,
    RECENT,
    REFERENCE,
    GatePolicy,
    SegmentComparison,
    compare_segments,
)
from driftloop.core.parity import ParityReport, compare_predictions, parity_rows
from driftloop.core.performance_estimate import MIN_CALIBRATION_ROWS, Calibration, fit_calibration
from driftloop.core.pipeline import (
    check_columns,
    describe_pipeline,
    is_driftloop_pipeline,
    scaler_before_trees,
    sklearn_answers,
)
from driftloop.core.recipe import SplitSpec, TrainingRecipe
from driftloop.core.schema import DatasetSchema
from driftloop.core.scoring import row_problems
from driftloop.core.snapshot import Split, after_base, row_keys, split_holdout
from driftloop.core.task import Task, TaskKind
from driftloop.core.training_window import (
    VALIDATION,
    WindowChoice,
    choose_window,
    lacking,
    learnt_a_changed_truth,
    missing_classes,
    recent_training_rows,
    rows_of_its_truth,
    too_few_rows,
    validation_split,
)
from driftloop.errors import DatasetError, ExportError, RegistryError
from driftloop.io import plots, tracking
from driftloop.io.onnx_export import export_onnx, onnx_sha256, proven_grouped_onnx
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.reference import save_profile
from driftloop.io.registry import ModelRegistry
from driftloop.io.snapshots import fetch_snapshot
from driftloop.io.user_model import (
    candidate_pipeline,
    check_export_on_sample,
    is_factory_reference,
    resolve_estimator,
)
from tasks.data import Snapshot
from tasks.policies import mlflow_task
from tasks.progress import progress, timed_step

SELFCHECK_ROWS = 16
REFERENCE_ARTIFACTS = "reference"


@dataclass(frozen=True)
class Candidate:
    """A fitted pipeline and the estimator it was built from."""

    pipeline: Pipeline
    estimator: str
    params: dict[str, str]


@dataclass(frozen=True)
class Export:
    """The ONNX model, its parity with scikit-learn, and where it was logged."""

    onnx_sha256: str
    parity: ParityReport
    onnx_model_uri: str
    sklearn_model_uri: str | None  # None: not logged (DRIFTLOOP_LOG_SKLEARN_MODEL=false)


@dataclass(frozen=True)
class Evaluation:
    """The candidate's holdout metrics and its score (``core.task.Task.scores``) for each holdout row.

    ``outputs`` are the fitted pipeline's own answers for each holdout row (``_sklearn_outputs``): export's parity
    check compares the ONNX graph with them instead of predicting the holdout again.
    """

    metrics: Metrics
    scores: np.ndarray
    importances: Mapping[str, float] = field(default_factory=dict)  # raw feature → permutation importance
    calibration: Calibration | None = None  # a classifier's, fitted on the same holdout (fit_calibration)
    outputs: np.ndarray | None = None


@dataclass(frozen=True)
class ChampionRows:
    """The champion's own holdout rows that this run's snapshot lacks, their labels, and the champion's scores.

    An ordinary run on other data than the champion's (an older file, after a retrain added recent labelled rows)
    is compared with the champion there too: on its own holdout alone, a candidate that never saw the rows the
    champion was retrained for is judged only where it is strong.
    """

    frame: pd.DataFrame  # the rows as the champion's stored snapshot holds them
    y: np.ndarray  # encoded as this run's schema encodes its target
    scores: np.ndarray  # the champion's (``core.task.Task.scores``)


@dataclass(frozen=True)
class ChampionScore:
    """The champion on this run's holdout (all None when there is no champion), and its pin if any.

    Attributes:
        version: The champion version the candidate is compared with.
        metrics: Its holdout metrics.
        scores: Its score (``core.task.Task.scores``) for each holdout row, in holdout order.
        own_rows: Its own holdout rows this run's snapshot lacks (``ChampionRows``), when it was trained on other
            data and its stored snapshot could be read; ``own_rows_note`` says why there are none otherwise.
    """

    version: str | None
    metrics: Metrics | None
    scores: np.ndarray | None = None
    pinned_by: str | None = None  # who pinned the champion, at which version and why (automatic promotions refused)
    own_rows: ChampionRows | None = None
    own_rows_note: str = ""


def check_estimator(estimator: str, params: dict[str, Any] | None, seed: int, schema: DatasetSchema) -> None:
    """Fail before any work if the estimator is unknown for the task, cannot be imported, or cannot be exported.

    A user's Pipeline must also select only the schema's features.
    """
    check_columns(estimator, resolve_estimator(estimator, params, seed, schema.task), schema)


@task(name="trial-export", cache_policy=NO_CACHE, timeout_seconds=600)
def trial_export(split: Split, schema: DatasetSchema, estimator: str, params: dict[str, Any] | None, seed: int) -> None:
    """A user's model (``--model``) fitted on a sample of the training rows and exported, before the full fit.

    The built-in estimators skip it: their export is tested.
    """
    if not is_factory_reference(estimator):
        return
    with timed_step("trial export: %s fitted on a sample of the training rows, then exported", estimator):
        used = check_export_on_sample(split.train, schema, estimator, params, seed)
    if used is None:
        get_run_logger().info("trial export skipped: %s could not be fitted on so few rows", estimator)


@task(name="fit-candidate", cache_policy=NO_CACHE, timeout_seconds=3600)
def fit_candidate(
    split: Split, schema: DatasetSchema, estimator: str, params: dict[str, Any] | None, seed: int
) -> Candidate:
    """Fit the pipeline on the training part. Never cached: a run always trains."""
    pipeline = _fitted(split.train, schema, estimator, params, seed)
    return Candidate(pipeline=pipeline, estimator=estimator, params=describe_pipeline(pipeline))


def _fitted(
    rows: pd.DataFrame, schema: DatasetSchema, estimator: str, params: dict[str, Any] | None, seed: int, what: str = ""
) -> Pipeline:
    pipeline = candidate_pipeline(schema, estimator, params, seed)
    features = to_model_frame(rows, schema)
    target = encode_target(rows[schema.target.name], schema)
    with timed_step("fitting %s on %s rows × %s features%s", estimator, f"{len(rows):,}", len(schema.features), what,
                    done_so_far=partial(fit_progress, pipeline)):  # fmt: skip
        pipeline.fit(features, target)
    snap_fitted_pipeline(pipeline)  # before anything scores it: sklearn and the ONNX export then split alike
    return pipeline


@task(name="choose-training-rows", cache_policy=NO_CACHE, timeout_seconds=7200)
def choose_training_rows(
    split: Split, schema: DatasetSchema, estimator: str, params: dict[str, Any] | None, seed: int, base_rows: int,
    policy: GatePolicy,
) -> tuple[Split, WindowChoice]:  # fmt: skip
    """After a changed truth: the split to fit the candidate on, all training rows or the recent ones alone, and why.

    Both fits leave out a part of the recent training rows and are compared there (``core.training_window``).
    """
    recent = recent_training_rows(split.train, base_rows)
    if absent := missing_classes(recent, schema):
        return split, lacking(absent)
    inner = validation_split(recent, schema, seed)
    if inner is None:
        return split, too_few_rows(len(recent))
    everything = _fitted(split.train.drop(index=inner.holdout.index), schema, estimator, params, seed,
                         " (to choose the rows: all of them)")  # fmt: skip
    alone = _fitted(inner.train, schema, estimator, params, seed, " (to choose the rows: the recent ones alone)")
    features = to_model_frame(inner.holdout, schema)
    y_true = encode_target(inner.holdout[schema.target.name], schema)
    alone_scores, everything_scores = (
        schema.task.scores(_sklearn_outputs(p, features, schema.task)) for p in (alone, everything)
    )
    validation = {VALIDATION: np.ones(len(y_true), dtype=bool)}
    (comparison,) = compare_segments(y_true, alone_scores, everything_scores, validation, policy, seed)
    choice = choose_window(comparison)
    progress("%s", choice.reason)
    return (Split(train=recent, holdout=split.holdout) if choice.recent_only else split), choice


@mlflow_task("evaluate-candidate", timeout_seconds=1800)
def evaluate_candidate(
    candidate: Candidate, split: Split, schema: DatasetSchema, tracking_uri: str, run_id: str, seed: int
) -> Evaluation:
    """Holdout metrics and plots, logged to the MLflow run."""
    client = tracking.use_tracking_uri(tracking_uri)
    holdout = to_model_frame(split.holdout, schema)
    y_true = encode_target(split.holdout[schema.target.name], schema)
    task = schema.task
    outputs = _sklearn_outputs(candidate.pipeline, holdout, task)
    scores = task.scores(outputs)
    metrics = compute_metrics(y_true, scores, task)
    tracking.log_params(client, run_id, candidate.params)
    tracking.log_metrics(client, run_id, metrics.as_dict(), prefix="holdout_")
    used = len(importance_sample(y_true, seed, task))
    progress("evaluating on %s holdout rows (importance on %s)", f"{len(holdout):,}", f"{used:,}")
    importances = feature_importance(candidate.pipeline, holdout, y_true, seed, task=task)
    tracking.log_metrics(client, run_id, {"importance_rows": used})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        pngs = [plots.feature_importance_png(importances, out / "feature_importance.png", importance_metric(task))]
        if task.is_classifier:
            predicted = task.predicted(scores)
            pngs.append(plots.confusion_matrix_png(y_true, predicted, list(task.classes), out / "confusion_matrix.png"))
        if task.kind is TaskKind.BINARY:
            pngs.append(plots.roc_curve_png(y_true, scores, out / "roc_curve.png"))
        if task.kind is TaskKind.REGRESSION:
            pngs.append(plots.predicted_vs_actual_png(y_true, scores, out / "predicted_vs_actual.png"))
        tracking.log_files(client, run_id, pngs, artifact_path="plots")
    return Evaluation(metrics, scores, importances, fit_calibration(task, scores, y_true), outputs)


@task(name="evaluate-on-recent-rows", cache_policy=NO_CACHE, timeout_seconds=1800)
def evaluate_on_recent_rows(
    candidate: Candidate, evaluation: Evaluation, split: Split, schema: DatasetSchema, base_rows: int, seed: int,
    truth_changed: bool = True,
) -> Evaluation:  # fmt: skip
    """A retrain watched against its recent rows: the candidate on its recent holdout rows alone.

    Its monitoring reference is built from these: the calibration behind the label-free estimate, the importances
    that weigh drift, the predictions of prediction drift. After a changed truth, from the whole holdout, which
    mixes in the old truth, the estimate of a model that learnt the new one sat near chance, and its importances at
    zero or below; after a shift of the features, its predictions on the old traffic set the prediction reference.
    Too few recent rows: no calibration after a changed truth, the whole holdout's figures otherwise.
    """
    recent = _recent_rows(split, base_rows)
    task = schema.task
    y_true = encode_target(split.holdout[schema.target.name], schema)[recent]
    if y_true.size < MIN_CALIBRATION_ROWS or (task.is_classifier and np.unique(y_true).size < 2):
        # Too few to calibrate or to rank features on: no estimate rather than one calibrated on the old truth.
        progress("%s recent holdout rows: too few for a monitoring reference of their own", f"{y_true.size:,}")
        return replace(evaluation, calibration=None) if truth_changed else evaluation
    holdout = to_model_frame(split.holdout[recent], schema)
    scores = evaluation.scores[recent]
    progress("monitoring reference on the %s recent holdout rows%s", f"{len(holdout):,}",
             " (the new truth's)" if truth_changed else "")  # fmt: skip
    return Evaluation(
        compute_metrics(y_true, scores, task),
        scores,
        feature_importance(candidate.pipeline, holdout, y_true, seed, task=task),
        fit_calibration(task, scores, y_true),
        None if evaluation.outputs is None else evaluation.outputs[recent],
    )


def _sklearn_outputs(pipeline: Pipeline, frame: pd.DataFrame, task: Task) -> np.ndarray:
    """The fitted pipeline's probabilities (classifiers) or predicted values (regressors)."""
    return np.asarray(pipeline.predict_proba(frame) if task.is_classifier else pipeline.predict(frame))


@mlflow_task("export-onnx", timeout_seconds=1800)
def export_candidate(
    candidate: Candidate,
    split: Split,
    schema: DatasetSchema,
    tracking_uri: str,
    run_id: str,
    parity_tolerance: float,
    evaluation: Evaluation | None = None,
    log_sklearn: bool = True,
) -> Export:
    """Convert to ONNX, check parity on the holdout (at most ``PARITY_ROWS`` of it), log the models to the run.

    Given the candidate's ``evaluation``, its holdout outputs stand for the pipeline's answers in the comparison.
    The ONNX model is always logged; the scikit-learn pipeline too when ``log_sklearn``.
    """
    tracking.use_tracking_uri(tracking_uri)
    rows = parity_rows(len(split.holdout))
    holdout = to_model_frame(split.holdout.iloc[rows], schema)
    with timed_step("ONNX export; parity on %s of %s holdout rows", f"{len(holdout):,}", f"{len(split.holdout):,}"):
        onnx_bytes = export_onnx(candidate.pipeline, schema)
        onnx_first, onnx_proba = OnnxModel.from_bytes(onnx_bytes, schema).predict(holdout)
        task = schema.task
        known = None if evaluation is None or evaluation.outputs is None else evaluation.outputs[rows]
        expected = sklearn_answers(candidate.pipeline, holdout, task, known)
        parity = compare_predictions(task, expected, (onnx_first, onnx_proba), tolerance=parity_tolerance)
        if not parity.passed and (scaler := scaler_before_trees(candidate.pipeline)):
            parity = replace(parity, reason=f"{parity.reason}; the likely cause: {scaler} before a tree model (ONNX "
                             "scales in float32, moving values on a split threshold to its other side; trees need no "
                             "scaling: drop it)")  # fmt: skip
        serving_bytes = _grouped_graph(onnx_bytes, candidate.pipeline, schema, holdout, (onnx_first, onnx_proba))
        sample = holdout.head(SELFCHECK_ROWS)
        selfcheck = tracking.build_selfcheck(
            sample,
            onnx_first[:SELFCHECK_ROWS],
            None if onnx_proba is None else onnx_proba[:SELFCHECK_ROWS],
            parity_tolerance,
            value_buckets=None if task.is_classifier else _deciles(onnx_first),
        )
        sklearn_uri = tracking.log_sklearn_model(run_id, candidate.pipeline, holdout) if log_sklearn else None
        onnx_uri = tracking.log_onnx_model(run_id, onnx_bytes, schema, holdout, selfcheck, serving_bytes)
    return Export(
        onnx_sha256=onnx_sha256(onnx_bytes),
        parity=parity,
        onnx_model_uri=onnx_uri,
        sklearn_model_uri=sklearn_uri,
    )


def _deciles(values: np.ndarray) -> list[float]:
    """Bucket edges for a regressor's predictions in ``/metrics``: the 5th to 95th percentiles of its holdout."""
    edges = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0.05, 0.95, 10))
    return sorted({float(f"{edge:.4g}") for edge in edges})


def _grouped_graph(
    onnx_bytes: bytes,
    pipeline: Pipeline,
    schema: DatasetSchema,
    holdout: pd.DataFrame,
    onnx_answers: tuple[np.ndarray, np.ndarray | None],
) -> bytes | None:
    """The grouped serving graph, proven on the holdout against ``onnx_answers``, model.onnx's outputs on it.

    None and a warning if it cannot be: the server then runs model.onnx, the same model, slower. A user's whole
    Pipeline has none (the grouped graph replaces driftloop's own preprocessing inputs).
    """
    if not is_driftloop_pipeline(pipeline):
        get_run_logger().info(
            "no %s: a Pipeline with its own preprocessing is served as %s", lineage.SERVING_ONNX_FILE, lineage.ONNX_FILE
        )
        return None
    try:
        return proven_grouped_onnx(onnx_bytes, schema, holdout, onnx_answers)
    except ExportError as error:
        get_run_logger().warning("no %s: %s", lineage.SERVING_ONNX_FILE, error)
        return None


def drift_reference_rows(fitting: Split, base_rows: int) -> Split:
    """The split whose training rows the drift reference is built from (``core.drift_reference.reference_rows``)."""
    rows = reference_rows(fitting.train.index, base_rows)
    if rows.all():
        return fitting
    progress("drift reference: the %s recent training rows alone, like the traffic served since", f"{rows.sum():,}")
    return Split(train=fitting.train[rows], holdout=fitting.holdout)


# No timeout: the flow runs it on a thread beside export, where Prefect could not interrupt it (it warns so).
@mlflow_task("save-reference-profile")
def save_reference(
    split: Split,
    schema: DatasetSchema,
    tracking_uri: str,
    run_id: str,
    seed: int,
    evaluation: Evaluation | None = None,
) -> str:
    """The drift reference as run artifacts; returns its URI.

    It holds the training features' statistics and a sample and, given the candidate's ``evaluation``, its
    holdout output (the reference of prediction drift), its features' importances (the drift weights) and a
    classifier's calibration on the holdout (performance estimated without labels).
    """
    client = tracking.use_tracking_uri(tracking_uri)
    predictions: np.ndarray | None = None
    kind: ColumnKind = "numerical"
    importances = calibration = None
    if evaluation is not None:
        predictions, kind = prediction_values(schema.task, evaluation.scores)
        importances = evaluation.importances or None
        calibration = evaluation.calibration
    profile = build_profile(
        split.train,  # its schema columns are read: selecting them first copied every training row
        schema.numeric,
        schema.categorical,
        seed=seed,
        predictions=predictions,
        prediction_kind=kind,
        importances=importances,
        calibration=calibration,
        target=_training_target(split, schema),
        target_kind="categorical" if schema.task.is_classifier else "numerical",
        thresholds={f.name: f.drift_threshold for f in schema.features if f.drift_threshold is not None},
        segments=schema.segments,
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = save_profile(profile, Path(tmp))
        tracking.log_files(client, run_id, paths, artifact_path=REFERENCE_ARTIFACTS)
    return f"runs:/{run_id}/{REFERENCE_ARTIFACTS}"


def _training_target(split: Split, schema: DatasetSchema) -> pd.Series:
    """The train rows' target as feedback will bring it back: class names (classifiers) or values (regressors)."""
    column = split.train[schema.target.name]
    if not schema.task.is_classifier:
        return column
    names = np.asarray(schema.task.classes, dtype=object)[encode_target(column, schema)]
    return pd.Series(names, name=schema.target.name)


@mlflow_task("champion-split-features")
def champion_split_features(model_name: str, tracking_uri: str, schema: DatasetSchema) -> tuple[str, ...] | None:
    """The features this run's split hashes, so the champion's training rows stay in train; None: all of them.

    A champion that recorded them (it added features, or inherited them) passes them on; one whose contract this
    snapshot extends passes its own features, which a new column would otherwise reshuffle; one with this
    snapshot's contract, or no champion, None.
    """
    registry = ModelRegistry(model_name, tracking_uri)
    champion = registry.champion()
    if champion is None:
        return None
    # A snapshot the champion cannot be compared with fails here, before its rows are split by features it lacks.
    own = registry.comparison_schema(champion, schema)
    recorded = TrainingRecipe.from_tags(champion.tags, SplitSpec(0.5, 0)).split.features
    if recorded is not None:
        return recorded
    return None if own is schema else tuple(own.feature_names)


@mlflow_task("score-champion", timeout_seconds=900)
def score_champion(
    model_name: str, tracking_uri: str, split: Split, schema: DatasetSchema, snapshot: Snapshot | None = None
) -> ChampionScore:
    """The current champion's metrics on this run's holdout, from its ONNX model (no pickle is loaded).

    A snapshot that adds features to the champion's is scored by the champion from the features it was trained on.
    Given this run's ``snapshot`` (an ordinary run), the champion is also scored on its own holdout rows the
    snapshot lacks (``ChampionScore.own_rows``).
    """
    registry = ModelRegistry(model_name, tracking_uri)
    champion = registry.champion()
    pin = registry.pinned()
    pinned_by = pin.by() if pin is not None else None
    if champion is None:
        return ChampionScore(version=None, metrics=None, pinned_by=pinned_by)
    version = str(champion.version)
    own = registry.comparison_schema(champion, schema)
    model = OnnxModel.from_bytes(registry.onnx_bytes(version), own)
    first, proba = model.predict(to_model_frame(split.holdout, own))
    y_true = encode_target(split.holdout[schema.target.name], schema)
    scores = schema.task.scores(first if proba is None else proba)
    metrics = compute_metrics(y_true, scores, schema.task)
    if snapshot is None:
        return ChampionScore(version, metrics, scores, pinned_by)
    try:
        own_rows = _rows_lacking(registry, champion.tags, model, own, snapshot)
    except (DatasetError, RegistryError, ValueError, OSError) as error:  # OSError: a corrupt or partial download
        note = f"not compared on {CHAMPION_DATA} (v{version}'s holdout rows this snapshot lacks): {error}"
        get_run_logger().warning(note)
        return ChampionScore(version, metrics, scores, pinned_by, None, note)
    return ChampionScore(version, metrics, scores, pinned_by, own_rows)


def _rows_lacking(
    registry: ModelRegistry, tags: Mapping[str, str], model: OnnxModel, own: DatasetSchema, snapshot: Snapshot
) -> ChampionRows | None:
    """The champion's holdout rows (its stored snapshot, split as it was) that ``snapshot`` lacks and can score.

    Of a champion that learnt a changed truth (a retrain with a training window), its recent rows alone: the rows
    of that truth. None when it was trained on the same data, or none of its holdout rows is lacking.

    Raises:
        DatasetError: its version records no stored training snapshot or split (registered before they were),
            its data lacks a feature of this run's, or it cannot be read back as recorded.
    """
    schema = snapshot.schema
    recipe = TrainingRecipe.from_tags(tags, SplitSpec(0.5, 0))
    if recipe.data_hash == snapshot.content_hash:
        return None
    if recipe.data_hash is None or not recipe.snapshot_uri or lineage.SPLIT not in tags:
        raise DatasetError("its version records no stored training snapshot and split")
    lacking_columns = [c for c in schema.feature_names if c not in own.feature_names]
    if lacking_columns:
        added = ", ".join(repr(c) for c in lacking_columns)
        raise DatasetError(f"they have no {added}, the feature(s) this run adds, so this run's model cannot score them")
    with tempfile.TemporaryDirectory() as tmp:
        stored = fetch_snapshot(registry.tracking_uri, recipe.snapshot_uri, Path(tmp), own, recipe.data_hash)
        theirs = with_canonical_target(pd.read_parquet(stored), own)
    held = split_holdout(theirs, own, recipe.split.fraction, recipe.split.seed, recipe.split.features).holdout
    held = held[rows_of_its_truth(held.index, recipe.base_rows, learnt_a_changed_truth(tags))]
    held = held[~np.isin(row_keys(held, schema), row_keys(snapshot.frame, schema))]
    held = held[
        (row_problems(held, schema) == "").to_numpy()
        & schema.task.usable_labels(np.asarray(held[schema.target.name], dtype=object))
    ]
    if held.empty:
        return None
    first, proba = model.predict(to_model_frame(held, own))
    y = encode_target(held[schema.target.name], schema)
    return ChampionRows(held, y, schema.task.scores(first if proba is None else proba))


def _recent_rows(split: Split, base_rows: int) -> np.ndarray:
    """Which holdout rows are a retrain's recent ones: the snapshot's rows after its ``base_rows``."""
    return after_base(split.holdout.index, base_rows)


def recent_metrics(scores: np.ndarray, split: Split, schema: DatasetSchema, base_rows: int) -> dict[str, float]:
    """A model's metrics on the recent holdout rows alone, from its ``scores`` on the holdout; {} when none."""
    recent = _recent_rows(split, base_rows)
    if not recent.any():
        return {}
    y_true = encode_target(split.holdout[schema.target.name], schema)
    return compute_metrics(y_true[recent], scores[recent], schema.task).as_dict()


@task(name="compare-with-champion", cache_policy=NO_CACHE, timeout_seconds=900)
def compare_with_champion(
    candidate: Evaluation, champion: ChampionScore, split: Split, schema: DatasetSchema, base_rows: int,
    policy: GatePolicy, seed: int, pipeline: Pipeline | None = None,
) -> tuple[SegmentComparison, ...]:  # fmt: skip
    """Both models on the same holdout rows, per segment: the base data's rows, the recent rows, all of them.

    Given the candidate's ``pipeline``, also on the champion's own holdout rows this run's snapshot lacks
    (``CHAMPION_DATA``), when the champion has them (``ChampionScore.own_rows``).
    """
    if champion.scores is None:
        return ()
    recent = _recent_rows(split, base_rows)
    segments = {REFERENCE: ~recent, RECENT: recent, ALL: np.ones(recent.size, dtype=bool)}
    if not recent.any():  # an ordinary run: one data set, one segment
        segments = {ALL: segments[ALL]}
    y_true = encode_target(split.holdout[schema.target.name], schema)
    compared = compare_segments(y_true, candidate.scores, champion.scores, segments, policy, seed)
    rows = champion.own_rows
    if rows is None or pipeline is None:
        return compared
    theirs = schema.task.scores(_sklearn_outputs(pipeline, to_model_frame(rows.frame, schema), schema.task))
    everywhere = {CHAMPION_DATA: np.ones(len(rows.y), dtype=bool)}
    return compared + compare_segments(rows.y, theirs, rows.scores, everywhere, policy, seed + len(segments))
