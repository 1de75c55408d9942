"""Drift tasks: read the window, load the reference, record the check, handle the episode, emit the event."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from driftloop.core import lineage
from driftloop.core.drift import DriftVerdict, ReferenceProfile
from driftloop.core.episodes import Episode, drift_action
from driftloop.core.label_check import LabelCheck
from driftloop.events import DRIFT_DETECTED
from driftloop.io import tracking
from driftloop.io.drift_report import build_report
from driftloop.io.prefect_events import emit
from driftloop.io.reference import load_profile
from driftloop.io.registry import EpisodeTags, ModelRegistry
from driftloop.serving.prediction_log import open_prediction_log

MLFLOW_RETRIES = {"retries": 2, "retry_delay_seconds": 3}
MONITORING_EXPERIMENT = "driftloop-monitoring"


@dataclass(frozen=True)
class Champion:
    version: str
    tags: dict[str, str]


@task(name="find-champion", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def find_champion(model_name: str, tracking_uri: str) -> Champion | None:
    champion = ModelRegistry(model_name, tracking_uri).champion()
    return None if champion is None else Champion(str(champion.version), dict(champion.tags))


@task(name="read-prediction-window", cache_policy=NO_CACHE, timeout_seconds=600)
def read_window(predictions_url: str, model_name: str, version: str, rows: int) -> pd.DataFrame:
    """The last ``rows`` predictions the champion version served (with true classes where known)."""
    store = open_prediction_log(predictions_url)
    try:
        return store.read_window(model_name, model_version=version, last=rows)
    finally:
        store.close()


@task(name="load-reference-profile", cache_policy=NO_CACHE, timeout_seconds=600, **MLFLOW_RETRIES)
def load_reference(tracking_uri: str, reference_uri: str) -> ReferenceProfile:
    with tempfile.TemporaryDirectory(prefix="driftloop-reference-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=reference_uri, dst_path=tmp, tracking_uri=tracking_uri)
        return load_profile(Path(local))


@task(name="record-drift-check", cache_policy=NO_CACHE, timeout_seconds=900, **MLFLOW_RETRIES)
def record_check(
    tracking_uri: str,
    artifact_root: Path | None,
    mlflow_ui: str,
    model_name: str,
    version: str,
    verdict: DriftVerdict,
    labels: LabelCheck,
    profile: ReferenceProfile,
    window: pd.DataFrame,
    with_report: bool,
) -> str:
    """An MLflow run per check (verdict metrics, JSON, the Evidently HTML report); returns the run's URL."""
    client = tracking.use_tracking_uri(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, MONITORING_EXPERIMENT, artifact_root)
    tags = {"driftloop.model": model_name, "driftloop.model_version": version, "driftloop.verdict": verdict.status}
    run_id = tracking.start_run(client, experiment_id, f"drift-{model_name}-v{version}", tags)
    try:
        tracking.log_metrics(client, run_id, {"drift_share": verdict.share, "window_rows": float(verdict.rows)})
        if labels.accuracy is not None:
            tracking.log_metrics(client, run_id, {"labelled_accuracy": labels.accuracy})
        tracking.log_text(client, run_id, verdict.markdown() + "\n\n" + labels.summary() + "\n", "verdict.md")
        if with_report:
            with tempfile.TemporaryDirectory() as tmp:
                report = build_report(profile, window[list(profile.columns)], Path(tmp) / "drift_report.html")
                tracking.log_files(client, run_id, [report], artifact_path="report")
    except BaseException:
        tracking.end_run(client, run_id, succeeded=False)
        raise
    tracking.end_run(client, run_id, succeeded=True)
    return tracking.run_url(mlflow_ui, experiment_id, run_id)


@dataclass(frozen=True)
class EpisodeOutcome:
    action: str
    episode: str | None
    event_id: str | None
    note: str


@task(name="handle-drift-episode", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def handle_episode(
    model_name: str, tracking_uri: str, version: str, drifted: bool, insufficient: bool, payload: Mapping[str, Any]
) -> EpisodeOutcome:
    """Open an episode and emit the event once; later checks of the same episode only record it."""
    episodes = EpisodeTags(ModelRegistry(model_name, tracking_uri))
    current = episodes.open_episode(version)
    action = drift_action(drifted, insufficient, current)
    if action == "emit":
        episode = Episode.start(model_name, version, datetime.now(UTC))
        episodes.start_episode(version, episode)
        event_id = emit(DRIFT_DETECTED, model_name, {**payload, "episode": episode.key})
        return EpisodeOutcome(action, episode.key, event_id, f"drift episode {episode.key} opened; event emitted")
    if action == "already_open" and current is not None:
        note = f"drift persists in episode {current.key} (since {current.started_at:%H:%M:%S}); no new event"
        return EpisodeOutcome(action, current.key, None, note)
    if action == "close" and current is not None:
        episodes.close_episode(version)
        return EpisodeOutcome(action, current.key, None, f"no drift: episode {current.key} closed")
    return EpisodeOutcome(action, None, None, "no episode open" if not insufficient else "not judged: too few rows")


@task(name="publish-drift-verdict", cache_policy=NO_CACHE)
def publish_verdict(markdown: str, verdict: str, run_url: str) -> None:
    create_markdown_artifact(key="drift-verdict", markdown=markdown, description=f"drift check: {verdict}")
    create_link_artifact(key="drift-report", link=run_url, link_text="MLflow drift-check run (report)")


def baseline_accuracy(tags: Mapping[str, str]) -> float:
    return float(tags.get(f"{lineage.PREFIX}metric.accuracy", "nan"))
