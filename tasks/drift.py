"""Drift tasks: read the window, load the reference, record the check, handle the episode, emit the event."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from driftloop.core import lineage
from driftloop.core.check_record import CheckRecord
from driftloop.core.drift import DriftVerdict, ReferenceProfile
from driftloop.core.drift_rule import DriftRule
from driftloop.core.episodes import NO_RETRAIN, Episode, drift_action
from driftloop.core.label_check import LabelCheck
from driftloop.core.performance_estimate import PerformanceEstimate
from driftloop.core.task import Task
from driftloop.events import DRIFT_DETECTED
from driftloop.io import tracking
from driftloop.io.check_store import open_check_store
from driftloop.io.episode_store import EpisodeStore
from driftloop.io.prediction_store import open_prediction_log
from driftloop.io.prefect_events import emit
from driftloop.io.prefect_runs import flow_run_state, retrain_deployments
from driftloop.io.reference import download_profile
from driftloop.io.registry import ModelRegistry
from driftloop.io.window_spill import LoggedWindow, check_logged_window
from tasks.policies import mlflow_task
from tasks.registry import Champion
from tasks.tracking import closed_here, opened_here

MONITORING_EXPERIMENT = "driftloop-monitoring"
REPORT_SKIPPED = (
    "The Evidently HTML report was skipped: it needs the report extra (pip install 'driftloop[report]'). "
    "The verdict does not: driftloop's tests reproduce Evidently's."
)
REPORT_LEFT_OUT = "not built (DRIFTLOOP_DRIFT_REPORT=false)"  # where a drifting check's report would be


@task(name="read-prediction-window", cache_policy=NO_CACHE, timeout_seconds=600)
def read_window(predictions_url: str, model_name: str, version: str, rows: int) -> pd.DataFrame:
    """The last ``rows`` predictions the champion version served (with true classes where known)."""
    store = open_prediction_log(predictions_url)
    try:
        return store.read_window(model_name, model_version=version, last=rows)
    finally:
        store.close()


@task(name="check-window-in-chunks", cache_policy=NO_CACHE, timeout_seconds=3600)
def check_window_in_chunks(
    predictions_url: str,
    model_name: str,
    version: str,
    rows: int,
    chunk_rows: int,
    profile: ReferenceProfile,
    drift_share: float,
    min_rows: int,
    rule: DriftRule,
) -> LoggedWindow:
    """A window too big to read at once: streamed from the log, its columns spilled to disk and tested one by one."""
    store = open_prediction_log(predictions_url)
    try:
        with tempfile.TemporaryDirectory(prefix="driftloop-window-") as tmp:
            return check_logged_window(store, model_name, version, rows, chunk_rows, profile, Path(tmp),
                                       drift_share=drift_share, min_rows=min_rows, rule=rule)  # fmt: skip
    finally:
        store.close()


@mlflow_task("load-reference-profile", timeout_seconds=600)
def load_reference(tracking_uri: str, reference_uri: str) -> ReferenceProfile:
    return download_profile(tracking_uri, reference_uri)


@mlflow_task("read-champion-task", timeout_seconds=600)
def champion_task(model_name: str, tracking_uri: str, version: str, tags: Mapping[str, str]) -> Task:
    """The champion's task (kind and classes), as ``ModelRegistry.task_of`` reads it."""
    return ModelRegistry(model_name, tracking_uri).task_of(version, tags)


@mlflow_task("record-drift-check", timeout_seconds=900)
def record_check(
    tracking_uri: str,
    artifact_root: Path | None,
    mlflow_ui: str,
    model_name: str,
    version: str,
    verdict: DriftVerdict,
    labels: LabelCheck,
    estimate: PerformanceEstimate,
    profile: ReferenceProfile,
    window: pd.DataFrame,
    with_report: bool,
    reports_dir: Path | None = None,
    report_left_out: bool = False,
) -> CheckRecorded:
    """An MLflow run per check (verdict metrics, the summaries, the Evidently HTML report).

    The report is also written under ``reports_dir`` (when given), to open in a browser: MLflow serves every
    artifact as a download, and its preview cannot run the report's scripts. A check that would have built one
    but for the setting (``report_left_out``) says so in its summaries.
    """
    client = tracking.use_tracking_uri(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, MONITORING_EXPERIMENT, artifact_root)
    tags = {"driftloop.model": model_name, "driftloop.model_version": version, "driftloop.verdict": verdict.status}
    run_id = tracking.start_run(client, experiment_id, f"drift-{model_name}-v{version}", tags)
    opened_here(run_id, tracking_uri)
    try:
        metrics = {"drift_share": verdict.share, "window_rows": float(verdict.rows)}
        if verdict.weighted_share is not None:
            metrics["weighted_drift_share"] = verdict.weighted_share
        tracking.log_metrics(client, run_id, metrics)
        if verdict.prediction is not None and math.isfinite(verdict.prediction.score):
            tracking.log_metrics(client, run_id, {"prediction_drift_score": verdict.prediction.score})
        if labels.value is not None:
            tracking.log_metrics(client, run_id, {f"labelled_{labels.metric}": labels.value})
        if labels.mae is not None:
            tracking.log_metrics(client, run_id, {"labelled_mae": labels.mae})
        tracking.log_metrics(client, run_id, _estimate_metrics(estimate))
        summaries = f"{verdict.markdown()}\n\n{labels.summary()}\n\n{estimate.summary()}\n"
        report_path = None
        if report_left_out:
            summaries += f"\n**Report**: {REPORT_LEFT_OUT}\n"
        elif with_report and find_spec("evidently") is None:
            summaries += f"\n{REPORT_SKIPPED}\n"
        elif with_report:
            # Evidently takes seconds of CPU to import: only a drifting check, which builds its report, pays that.
            from driftloop.io.drift_report import build_report

            with tempfile.TemporaryDirectory() as tmp:
                report = build_report(profile, window[list(profile.columns)], Path(tmp) / "drift_report.html")
                tracking.log_files(client, run_id, [report], artifact_path="report")
                if reports_dir is not None:
                    report_path = reports_dir / model_name / f"drift-v{version}-{run_id[:12]}.html"
                    report_path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(report, report_path)
        tracking.log_text(client, run_id, summaries, "verdict.md")
    except BaseException:
        tracking.end_run(client, run_id, succeeded=False)
        closed_here(run_id)
        raise
    tracking.end_run(client, run_id, succeeded=True)
    closed_here(run_id)
    return CheckRecorded(tracking.run_url(mlflow_ui, experiment_id, run_id), report_path)


@dataclass(frozen=True)
class CheckRecorded:
    run_url: str  # the check's MLflow run
    report_path: Path | None  # the HTML report as a local file, when one was built and kept


@dataclass(frozen=True)
class EpisodeOutcome:
    action: str
    episode: str | None
    event_id: str | None
    note: str


@dataclass(frozen=True)
class EpisodePolicy:
    """When an episode asks for another retrain attempt (from settings)."""

    cooldown_seconds: float
    min_new_labels: int
    retrain_timeout_seconds: float


@mlflow_task("handle-drift-episode")
def handle_episode(
    model_name: str,
    tracking_uri: str,
    predictions_url: str,
    champion: Champion,
    drifted: bool,
    insufficient: bool,
    payload: Mapping[str, Any],
    policy: EpisodePolicy,
) -> EpisodeOutcome:
    """Open an episode and emit the event; ask again only when the last attempt failed or new labels arrived."""
    store = EpisodeStore(model_name, tracking_uri)
    now = datetime.now(UTC)
    current = store.open_episode(champion.version)
    if current is not None and current.retrain == "running" and current.flow_run_id:
        current = current.running_ended(flow_run_state(current.flow_run_id), now, policy.retrain_timeout_seconds)
    found = retrain_deployments(model_name) if drifted else None  # None: not asked, or the server did not say
    deployed = found != []
    decision = drift_action(
        drifted,
        insufficient,
        current,
        now=now,
        cooldown_seconds=policy.cooldown_seconds,
        new_labels=_new_labels(predictions_url, model_name, champion.tags) if current is not None else 0,
        min_new_labels=policy.min_new_labels,
        claim_timeout_seconds=policy.retrain_timeout_seconds,
        last_retrain_at=store.last_retrain_at()
        if drifted and (current is None or current.retrain == "pending")
        else None,
        retrain_deployed=deployed,
        retrain_deployed_at=min((d.created for d in found or [] if d.created is not None), default=None),
    )
    if decision.action == "emit":
        episode = Episode.start(model_name, champion.version, now)
    elif decision.action == "re_emit" and current is not None:
        episode = current.asked_again(now)
    else:
        if decision.action == "close":
            store.close(champion.version)
        return EpisodeOutcome(decision.action, current.key if current else None, None, decision.note)
    store.save(champion.version, episode)
    event_id = emit(DRIFT_DETECTED, model_name, {**payload, "episode": episode.key, "attempt": episode.attempt})
    note = f"{decision.note} (episode {episode.key})"
    if not deployed:
        note += f"; {NO_RETRAIN}"
    return EpisodeOutcome(decision.action, episode.key, event_id, note)


def _new_labels(predictions_url: str, model_name: str, tags: Mapping[str, str]) -> int:
    """Labelled predictions newer than the newest label the champion was trained on."""
    through = tags.get(lineage.LABELS_THROUGH)
    store = open_prediction_log(predictions_url)
    try:
        return store.count_labelled(model_name, datetime.fromisoformat(through) if through else None)
    finally:
        store.close()


@task(name="keep-drift-check", cache_policy=NO_CACHE, timeout_seconds=120)
def keep_check(predictions_url: str, record: CheckRecord) -> None:
    """Add the check's figures to the monitoring store (``driftloop monitor``, the server's metrics)."""
    store = open_check_store(predictions_url)
    try:
        store.write(record)
    finally:
        store.close()


@task(name="publish-drift-verdict", cache_policy=NO_CACHE)
def publish_verdict(markdown: str, verdict: str, run_url: str) -> None:
    create_markdown_artifact(key="drift-verdict", markdown=markdown, description=f"drift check: {verdict}")
    create_link_artifact(key="drift-report", link=run_url, link_text="MLflow drift-check run (report)")


def _estimate_metrics(estimate: PerformanceEstimate) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if estimate.accuracy is not None and estimate.accuracy_interval is not None:
        metrics["estimated_accuracy"] = estimate.accuracy
        metrics["estimated_accuracy_low"], metrics["estimated_accuracy_high"] = estimate.accuracy_interval
    if estimate.roc_auc is not None:
        metrics["estimated_roc_auc"] = estimate.roc_auc
    return metrics


def truth_baseline(tags: Mapping[str, str], task: Task, metric: str | None = None) -> tuple[float, int | None]:
    """What live traffic is held to: (``metric``'s value, default the label check's; the rows it was measured on).

    A retrain that learnt a changed truth, or is watched against its recent rows after a shift of the features
    (``core.drift_reference``), recorded its value on its recent holdout rows (``lineage.TRUTH_BASELINE``): its
    whole holdout mixes in the older rows, which would hold live traffic to another bar. Its label-free estimate is
    calibrated on the same rows. Any other version: its whole holdout. Value: NaN if not recorded; rows: None.
    """
    prefix = lineage.TRUTH_BASELINE if f"{lineage.TRUTH_BASELINE}rows" in tags else lineage.METRIC
    value = float(tags.get(f"{prefix}{metric or task.label_check_metric}", "nan"))
    rows = float(tags.get(f"{prefix}rows", "nan"))
    return value, int(rows) if math.isfinite(rows) and rows > 0 else None
