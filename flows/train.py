"""train_model: prep → train → evaluate → export ONNX + parity → reference profile → gate → register → promote.

The gate compares the candidate with the champion on the same holdout rows, per segment, with paired bootstrap
intervals. Promotion is a compare-and-swap on the champion the gate compared with: if another run or a person
moved the champion meanwhile, the candidate is scored against the new one and gated again.
With DRIFTLOOP_DEPLOY=docker a promotion continues in flows/ship.py: build the serving image → roll it out; with
DRIFTLOOP_DEPLOY=ship-deployment the same flow runs as its own deployment (its own container on a Docker pool).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow
from prefect.runtime import flow_run

from driftloop.core import lineage
from driftloop.core.gates import GatePolicy, PromotionDecision, decide_promotion
from driftloop.core.pipeline import default_estimator
from driftloop.core.recipe import RetrainInput, SplitSpec, TrainingRecipe
from driftloop.core.snapshot import Split
from driftloop.core.task import TaskKind
from driftloop.errors import DeployError
from driftloop.settings import Settings, get_settings
from flows.ship import ship_model
from tasks.data import (
    Snapshot,
    describe_source,
    load_snapshot,
    read_schema,
    record_source,
    source_from_text,
    split_snapshot,
    store_training_snapshot,
)
from tasks.deploy import ship_by_deployment
from tasks.model import (
    Candidate,
    ChampionScore,
    Evaluation,
    Export,
    champion_split_features,
    check_estimator,
    choose_training_rows,
    compare_with_champion,
    drift_reference_rows,
    evaluate_candidate,
    evaluate_on_recent_rows,
    export_candidate,
    fit_candidate,
    recent_metrics,
    save_reference,
    score_champion,
    trial_export,
)
from tasks.registry import promote_model, register_model
from tasks.reporting import link_mlflow, record_decision, record_metrics, update_decision
from tasks.tracking import close_run, code_and_run, open_run, version_url

# How many times a candidate is gated again when the champion moves under it before giving up.
MAX_REGATES = 3


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training run did, for the CLI summary and for callers such as the retrain flow."""

    model_name: str
    version: str
    promoted: bool
    verdict: str
    reasons: list[str]
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    parity: str
    data_hash: str
    mlflow_run_url: str
    mlflow_version_url: str
    flow_run_url: str
    shipped: str | None = None  # deploy=docker: what the image build and rollout did; None: the alias is enough
    rule: str = ""  # the gate's rule that decided
    ignored_columns: tuple[str, ...] = ()  # the snapshot's columns the schema does not name (not trained on)


@flow(name="train-model")
def train_model(
    data_path: str | None = None,
    schema_path: str | None = None,
    query: str | None = None,
    model_name: str | None = None,
    estimator: str | None = None,
    params: dict[str, Any] | None = None,
    min_roc_auc: float = 0.70,
    min_accuracy: float = 0.70,
    tolerance: float = 0.005,
    parity_tolerance: float = 1e-5,
    floors: dict[str, float] | None = None,
    confidence: float = 0.95,
    min_segment_rows: int = 50,
    holdout_fraction: float | None = None,
    split_seed: int | None = None,
    retrain: RetrainInput | None = None,
) -> TrainingOutcome:
    """Train a candidate and promote it to champion only if it passes the gate and ONNX parity.

    Args:
        data_path: Snapshot: a CSV or Parquet file, a directory of Parquet files, or a SQLAlchemy database URL
            (with ``query``); default: the bundled churn data.
        schema_path: The snapshot's schema file; default: the bundled churn schema.
        query: The SQL that selects the snapshot's rows, when ``data_path`` is a database URL.
        model_name: Registered model name; default: settings (``churn``).
        estimator: A built-in name for the schema's task (classifiers: logistic_regression, random_forest,
            gradient_boosting, hist_gradient_boosting; regressors: ridge and the three tree models), or a factory
            reference (``package.module:factory``, ``path/to/file.py:factory``); default: the task's linear model.
        params: Estimator parameters overriding driftloop's defaults.
        min_roc_auc: Floor on holdout ROC AUC (binary targets, when ``floors`` is not given).
        min_accuracy: Floor on holdout accuracy (binary targets, when ``floors`` is not given).
        tolerance: How much worse than the champion's primary metric (whole holdout) the candidate may score and
            still be promoted (an ordinary run; a retrain must instead be significantly better where it should help).
        parity_tolerance: Largest |Δprobability| allowed between ONNX and scikit-learn on the holdout (regressors:
            |Δvalue| ≤ parity_tolerance × max(1, |value|)).
        floors: Minimum (maximum, for log_loss, rmse, mae) per metric of the task; default: the task's floors.
        confidence: Coverage of the gate's intervals (DeLong's for ROC AUC, a paired bootstrap for other metrics).
        min_segment_rows: Holdout rows a segment needs to be tested.
        holdout_fraction: Share of rows held out; default: settings.
        split_seed: Seed of the split and of the model; default: settings.
        retrain: Set by the retrain flow: the recent labelled rows, the segment to improve on, the source.
    """
    settings = get_settings()
    name = model_name or settings.model_name
    uri = settings.tracking_uri
    seed = settings.seed if split_seed is None else split_seed
    split_spec = SplitSpec(holdout_fraction or settings.holdout_fraction, seed)
    schema_file = Path(schema_path or settings.schema_path)
    declared = read_schema(schema_file)
    task = declared.task
    if floors is None and task.kind is TaskKind.BINARY:
        floors = {"roc_auc": min_roc_auc, "accuracy": min_accuracy}
    policy = GatePolicy(
        floors=floors,
        tolerance=tolerance,
        confidence=confidence,
        min_segment_rows=min_segment_rows,
        improve_on=retrain.improve_on if retrain else None,
        min_effect=retrain.min_effect if retrain else 0.0,
        kind=task.kind,
        truth_changed=retrain.truth_changed if retrain else False,
    )
    estimator = estimator or default_estimator(task)
    check_estimator(estimator, params, seed, declared)  # a bad or unexportable model fails first

    data = source_from_text(data_path or str(settings.data_path), query)
    recent = Path(retrain.recent_data_path) if retrain and retrain.recent_data_path else None
    snapshot = load_snapshot(data, schema_file, recent, settings.sql_password)
    schema = snapshot.schema
    # A snapshot that adds features is split on the champion's, so its training rows stay on the training side.
    split_spec = replace(split_spec, features=champion_split_features(name, uri, schema))
    split = split_snapshot(snapshot, fraction=split_spec.fraction, seed=split_spec.seed, features=split_spec.features)
    trial_export(split, schema, estimator, params, seed)  # a user's model that cannot export fails before its fit
    champion = score_champion(name, uri, split, schema, _ordinary(snapshot, policy))

    provenance = {
        lineage.DATA_HASH: snapshot.content_hash,
        lineage.DATA_ROWS: str(len(snapshot.frame)),
        lineage.SCHEMA_NAME: schema.name,
        lineage.SCHEMA_FINGERPRINT: schema.fingerprint(),
        lineage.SCHEMA_CONTRACT: schema.contract(),
        lineage.TASK: schema.task.record(),
        lineage.ESTIMATOR: estimator,
        lineage.TRAINED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        **code_and_run(settings.prefect_ui, str(flow_run.id)),
    }
    if retrain is not None:
        provenance[lineage.RETRAIN_OF] = retrain.drifted_version
    artifact_root = settings.mlflow_artifacts if settings.uses_local_mlflow else None
    run = open_run(uri, settings.experiment_name, artifact_root, f"train-{name}-{flow_run.name}", provenance)
    try:
        source = retrain.source if retrain and retrain.source else record_source(snapshot.source)
        # A submitted task runs on a thread beside the next one (the fit leaves part of a core idle; the profile's
        # sorts release the GIL), and is waited for even when that one fails, so the run is closed after it.
        stored = store_training_snapshot.submit(uri, artifact_root, run.run_id, snapshot, source)
        try:
            # Once the truth changed, the old rows' labels may teach the old truth: fit on the recent ones alone
            # when that is significantly better on recent rows both fits left out.
            fitting, window = (
                choose_training_rows(split, schema, estimator, params, seed, snapshot.base_rows, policy)
                if policy.truth_changed
                else (split, None)
            )
            candidate = fit_candidate(fitting, schema, estimator, params, seed)
        finally:
            stored.wait()
        snapshot_uri = stored.result()
        evaluation = evaluate_candidate(candidate, split, schema, uri, run.run_id, seed)
        # Drift is judged against the traffic the model will serve: a retrain's recent rows, when there are enough
        # (core.drift_reference), and its answers on them; once the truth changed, the old truth's answers would
        # also mute the label-free estimate and the drift weights.
        watched = drift_reference_rows(fitting, snapshot.base_rows)
        monitored = (
            evaluate_on_recent_rows(
                candidate, evaluation, split, schema, snapshot.base_rows, seed, policy.truth_changed
            )
            if policy.truth_changed or len(watched.train) < len(fitting.train)
            else evaluation
        )
        reference = save_reference.submit(watched, schema, uri, run.run_id, seed, monitored)
        try:
            export = export_candidate(
                candidate, split, schema, uri, run.run_id, parity_tolerance, evaluation, settings.log_sklearn_model
            )
        finally:
            reference.wait()
        reference_uri = reference.result()
        decision = _gate(evaluation, candidate, export, champion, split, snapshot, policy, seed)
        if window is not None:
            decision = decision.noted(window.reason, last=True)  # how it was fitted, after why it was judged so
        record_decision(uri, run.run_id, decision.markdown(), decision.tags(), decision.verdict)
        recipe = TrainingRecipe(
            estimator=estimator,
            params=params or {},
            gate=policy,
            split=split_spec,
            snapshot_uri=snapshot_uri,
            data_hash=snapshot.content_hash,
            source=source,
            source_hash=(retrain.source_hash if retrain else None) or snapshot.content_hash,
            labels_through=retrain.labels_through if retrain else None,
            base_rows=snapshot.base_rows if snapshot.base_rows < len(snapshot.frame) else None,
        )
        version = register_model(
            name,
            uri,
            export.onnx_model_uri,
            run.run_id,
            {
                **provenance,
                **recipe.to_tags(),
                **decision.tags(),
                **{f"{lineage.METRIC}{k}": f"{v:.6g}" for k, v in evaluation.metrics.as_dict().items()},
                **_truth_baseline(evaluation, monitored, split, snapshot, policy),
                **(window.tags() if window else {}),
                lineage.ONNX_SHA256: export.onnx_sha256,
                lineage.PARITY: lineage.PASSED if export.parity.passed else lineage.FAILED,
                lineage.PARITY_MAX_ABS_DIFF: f"{export.parity.max_abs_diff:.3g}",
                lineage.PARITY_DETAIL: export.parity.summary(),
                **({lineage.SKLEARN_MODEL_URI: export.sklearn_model_uri} if export.sklearn_model_uri else {}),
                lineage.REFERENCE_URI: reference_uri,
                lineage.DATA_PATH: describe_source(snapshot.source),
            },
            description=f"{estimator} on {schema.name} ({snapshot.content_hash[:12]}): gate {decision.verdict}",
        )
        if decision.promote:
            decision, champion = _promote(name, uri, version, decision, champion, evaluation, candidate, export, split,
                                          snapshot, policy, seed, run.run_id)  # fmt: skip
    except BaseException:
        close_run(uri, run.run_id, succeeded=False)
        raise
    close_run(uri, run.run_id, succeeded=True)

    metrics = evaluation.metrics
    mlflow_run = run.url(settings.mlflow_ui)
    mlflow_version = version_url(settings.mlflow_ui, name, version)
    record_metrics(
        _metric_rows(
            task.metric_directions, metrics.as_dict(), champion.metrics.as_dict() if champion.metrics else None
        )
    )
    link_mlflow(mlflow_run, mlflow_version)
    shipped = _ship(settings, name, version) if decision.promote and settings.serves_from_containers else None
    return TrainingOutcome(
        model_name=name,
        version=version,
        promoted=decision.promote,
        verdict=decision.verdict,
        reasons=list(decision.reasons),
        metrics=metrics.as_dict(),
        champion_version=champion.version,
        champion_metrics=champion.metrics.as_dict() if champion.metrics else None,
        parity=export.parity.summary(),
        data_hash=snapshot.content_hash,
        mlflow_run_url=mlflow_run,
        mlflow_version_url=mlflow_version,
        flow_run_url=provenance[lineage.FLOW_RUN_URL],
        shipped=shipped,
        rule=decision.rule,
        ignored_columns=decision.ignored_columns,
    )


def _gate(
    evaluation: Evaluation, candidate: Candidate, export: Export, champion: ChampionScore, split: Split,
    snapshot: Snapshot, policy: GatePolicy, seed: int,
) -> PromotionDecision:  # fmt: skip
    """The gate's decision against ``champion``: floors, parity, pin, and the per-segment comparison."""
    segments = compare_with_champion(evaluation, champion, split, snapshot.schema, snapshot.base_rows, policy, seed,
                                     candidate.pipeline)  # fmt: skip
    decision = decide_promotion(
        candidate=evaluation.metrics.as_dict(),
        champion=champion.metrics.as_dict() if champion.metrics else None,
        champion_version=champion.version,
        parity_passed=export.parity.passed,
        parity_summary=export.parity.summary(),
        policy=policy,
        segments=segments,
        pinned_by=champion.pinned_by,
        # Once the truth changed, the floors judge the recent rows (the old rows' labels are stale), both models'.
        floor_metrics=_on_floor_rows(evaluation.scores, split, snapshot, policy),
        champion_floor_metrics=_on_floor_rows(champion.scores, split, snapshot, policy),
    )
    if champion.own_rows_note:  # the champion's rows this snapshot lacks could not be compared: say so
        decision = decision.noted(champion.own_rows_note)
    return decision.with_ignored_columns(snapshot.ignored_columns)


def _on_floor_rows(
    scores: np.ndarray | None, split: Split, snapshot: Snapshot, policy: GatePolicy
) -> dict[str, float] | None:
    """A model's metrics on the rows ``policy.floors_on`` names (None when it names none, or with no scores)."""
    if policy.floors_on is None or scores is None:
        return None
    return recent_metrics(scores, split, snapshot.schema, snapshot.base_rows)


def _truth_baseline(
    evaluation: Evaluation, monitored: Evaluation, split: Split, snapshot: Snapshot, policy: GatePolicy
) -> dict[str, str]:
    """What a retrain's live labels and label-free estimate are held to, where not its whole holdout's metrics.

    After a changed truth: its metrics where its floors were judged (the new truth's rows). Watched against its
    recent rows after a shift of the features (``monitored``, from ``evaluate_on_recent_rows``): its metrics on
    the recent holdout rows its calibration was fitted on; the whole holdout, mostly the old traffic, would hold the
    new traffic to another bar.
    """
    measured = _on_floor_rows(evaluation.scores, split, snapshot, policy)
    if measured is None and monitored is not evaluation:
        measured = monitored.metrics.as_dict()
    return {} if measured is None else {f"{lineage.TRUTH_BASELINE}{k}": f"{v:.6g}" for k, v in measured.items()}


def _ordinary(snapshot: Snapshot, policy: GatePolicy) -> Snapshot | None:
    """An ordinary run's snapshot: the champion is also scored on its own holdout rows the snapshot lacks.

    A retrain is judged by its own rules instead: better on the recent rows (or on all of a changed source), not
    worse beyond its tolerance elsewhere.
    """
    return snapshot if policy.improve_on is None else None


def _promote(
    name: str, uri: str, version: str, decision: PromotionDecision, champion: ChampionScore, evaluation: Evaluation,
    candidate: Candidate, export: Export, split: Split, snapshot: Snapshot, policy: GatePolicy, seed: int,
    run_id: str,
) -> tuple[PromotionDecision, ChampionScore]:  # fmt: skip
    """Compare-and-swap: move the alias only if the champion is still the one the gate compared with.

    If it moved (another run, a person), the candidate is scored against the new champion and gated again; if
    the champion got pinned meanwhile, the promotion is refused. Returns the final decision and champion.
    """
    for _ in range(MAX_REGATES + 1):
        attempt = promote_model(name, uri, version, reason=_promotion_reason(decision), actor=_actor(),
                                expected_champion=champion.version, automatic=True)  # fmt: skip
        if attempt.pinned is not None:
            refused = decision.refused(f"champion pinned by {attempt.pinned} after the gate passed: not promoted")
            update_decision(uri, run_id, name, version, refused.markdown(), refused.tags(), refused.verdict)
            return refused, champion
        if not attempt.champion_moved:  # promoted (or someone else already made it champion)
            return decision, champion
        champion = score_champion(name, uri, split, snapshot.schema, _ordinary(snapshot, policy))
        decision = _gate(evaluation, candidate, export, champion, split, snapshot, policy, seed)
        now = f"v{champion.version}" if champion.version else "no champion"
        note = f"the champion changed to {now} while this run was gated: gated again against it"
        decision = decision.noted(note)
        update_decision(uri, run_id, name, version, decision.markdown(), decision.tags(), decision.verdict)
        if not decision.promote:
            return decision, champion
    refused = decision.refused(f"the champion kept moving: gated {MAX_REGATES + 1} times, not promoted")
    update_decision(uri, run_id, name, version, refused.markdown(), refused.tags(), refused.verdict)
    return refused, champion


def _ship(settings: Settings, model_name: str, version: str) -> str:
    """Image → rollout for the new champion. A failure is reported, not raised: the model itself is registered."""
    if settings.deploy == "ship-deployment":
        return ship_by_deployment(settings.model_copy(update={"model_name": model_name}), version, _actor())
    try:
        shipped = ship_model(version=version, model_name=model_name)
    except DeployError as error:
        return f"not shipped: {error}"
    except Exception as error:  # the ship flow already gave the alias back; the training result still stands
        return f"not shipped: {type(error).__name__}: {error}"
    rollout = shipped.rollout
    return f"v{version} serving from {shipped.image.image.tag} ({rollout.strategy}, slot {rollout.slot})"


def _actor() -> str:
    return f"prefect flow run {flow_run.flow_name}/{flow_run.name} ({flow_run.id})"


def _promotion_reason(decision: PromotionDecision) -> str:
    return f"gate passed ({decision.rule}): " + "; ".join(decision.reasons)


def _metric_rows(
    metrics: Iterable[str], candidate: dict[str, float], champion: dict[str, float] | None
) -> list[dict[str, str]]:
    rows = []
    for metric in metrics:
        value = candidate[metric]
        base = champion.get(metric) if champion else None
        rows.append(
            {
                "metric": metric,
                "candidate": f"{value:.4f}",
                "champion": "—" if base is None else f"{base:.4f}",
                "delta": "—" if base is None else f"{value - base:+.4f}",
            }
        )
    return rows


if __name__ == "__main__":
    train_model()
