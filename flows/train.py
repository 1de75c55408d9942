"""train_model: prep → train → evaluate → export ONNX + parity → reference profile → gate → register → promote.

With DRIFTLOOP_DEPLOY=docker a promotion continues in flows/ship.py: build the serving image → roll it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from driftloop.core import lineage
from driftloop.core.evaluation import HIGHER_IS_BETTER
from driftloop.core.gates import GatePolicy, decide_promotion
from driftloop.core.pipeline import DEFAULT_ESTIMATOR, make_estimator
from driftloop.errors import DeployError
from driftloop.io.provenance import flow_run_url, git_commit
from driftloop.io.tracking import model_version_url, run_url
from driftloop.settings import get_settings
from flows.ship import ship_model
from tasks.data import load_snapshot, split_snapshot
from tasks.model import evaluate_candidate, export_candidate, fit_candidate, save_reference, score_champion
from tasks.registry import promote_model, register_model
from tasks.reporting import link_mlflow, record_decision, record_metrics
from tasks.tracking import close_run, open_run


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


@flow(name="train-model")
def train_model(
    data_path: str | None = None,
    schema_path: str | None = None,
    model_name: str | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
    params: dict[str, Any] | None = None,
    min_roc_auc: float = 0.70,
    min_accuracy: float = 0.70,
    tolerance: float = 0.005,
    parity_tolerance: float = 1e-5,
) -> TrainingOutcome:
    """Train a candidate and promote it to champion only if it passes the gate and ONNX parity.

    Args:
        data_path: Snapshot (CSV or Parquet); default: the bundled churn data.
        schema_path: The snapshot's schema file; default: the bundled churn schema.
        model_name: Registered model name; default: settings (``churn``).
        estimator: logistic_regression | random_forest | gradient_boosting | hist_gradient_boosting.
        params: Estimator parameters overriding driftloop's defaults.
        min_roc_auc: Floor on holdout ROC AUC.
        min_accuracy: Floor on holdout accuracy.
        tolerance: How much lower than the champion's ROC AUC the candidate may score and still be promoted.
        parity_tolerance: Largest |Δprobability| allowed between ONNX and scikit-learn on the holdout.
    """
    settings = get_settings()
    name = model_name or settings.model_name
    uri = settings.tracking_uri
    policy = GatePolicy(floors={"roc_auc": min_roc_auc, "accuracy": min_accuracy}, tolerance=tolerance)
    make_estimator(estimator, params, settings.seed)  # a bad estimator or parameter fails before any work

    snapshot = load_snapshot(Path(data_path or settings.data_path), Path(schema_path or settings.schema_path))
    schema = snapshot.schema
    split = split_snapshot(snapshot, fraction=settings.holdout_fraction, seed=settings.seed)
    champion = score_champion(name, uri, split, schema)

    provenance = {
        lineage.DATA_HASH: snapshot.content_hash,
        lineage.DATA_ROWS: str(len(snapshot.frame)),
        lineage.SCHEMA_NAME: schema.name,
        lineage.SCHEMA_FINGERPRINT: schema.fingerprint(),
        lineage.ESTIMATOR: estimator,
        lineage.TRAINED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        lineage.GIT_COMMIT: git_commit(),
        lineage.FLOW_RUN_ID: str(flow_run.id),
        lineage.FLOW_RUN_URL: flow_run_url(settings.prefect_ui, str(flow_run.id)),
    }
    artifact_root = settings.mlflow_artifacts if settings.uses_local_mlflow else None
    run = open_run(uri, settings.experiment_name, artifact_root, f"train-{name}-{flow_run.name}", provenance)
    try:
        candidate = fit_candidate(split, schema, estimator, params, settings.seed)
        metrics = evaluate_candidate(candidate, split, schema, uri, run.run_id, settings.seed)
        export = export_candidate(candidate, split, schema, uri, run.run_id, parity_tolerance)
        reference_uri = save_reference(split, schema, uri, run.run_id, settings.seed)
        decision = decide_promotion(
            candidate=metrics.as_dict(),
            champion=champion.metrics.as_dict() if champion.metrics else None,
            champion_version=champion.version,
            parity_passed=export.parity.passed,
            parity_summary=export.parity.summary(),
            policy=policy,
        )
        record_decision(uri, run.run_id, decision.markdown(), decision.tags(), decision.verdict)
        version = register_model(
            name,
            uri,
            export.onnx_model_uri,
            run.run_id,
            {
                **provenance,
                **decision.tags(),
                **{f"{lineage.PREFIX}metric.{k}": f"{v:.6g}" for k, v in metrics.as_dict().items()},
                lineage.ONNX_SHA256: export.onnx_sha256,
                lineage.PARITY: lineage.PASSED if export.parity.passed else lineage.FAILED,
                lineage.PARITY_MAX_ABS_DIFF: f"{export.parity.max_abs_diff:.3g}",
                lineage.PARITY_DETAIL: export.parity.summary(),
                lineage.SKLEARN_MODEL_URI: export.sklearn_model_uri,
                lineage.REFERENCE_URI: reference_uri,
                lineage.DATA_PATH: str(snapshot.path),
            },
            description=f"{estimator} on {schema.name} ({snapshot.content_hash[:12]}): gate {decision.verdict}",
        )
        if decision.promote:
            promote_model(name, uri, version, reason=_promotion_reason(decision.reasons), actor=_actor())
    except BaseException:
        close_run(uri, run.run_id, succeeded=False)
        raise
    close_run(uri, run.run_id, succeeded=True)

    mlflow_run = run_url(settings.mlflow_ui, run.experiment_id, run.run_id)
    mlflow_version = model_version_url(settings.mlflow_ui, name, version)
    record_metrics(_metric_rows(metrics.as_dict(), champion.metrics.as_dict() if champion.metrics else None))
    link_mlflow(mlflow_run, mlflow_version)
    shipped = _ship(name, version) if decision.promote and settings.deploy == "docker" else None
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
    )


def _ship(model_name: str, version: str) -> str:
    """Image → rollout for the new champion. A failure is reported, not raised: the model itself is registered."""
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


def _promotion_reason(reasons: tuple[str, ...]) -> str:
    return "gate passed: " + "; ".join(reasons) if reasons else "gate passed"


def _metric_rows(candidate: dict[str, float], champion: dict[str, float] | None) -> list[dict[str, str]]:
    rows = []
    for metric in HIGHER_IS_BETTER:
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
