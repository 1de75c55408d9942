"""Retrain tasks: the dedupe/cooldown decision and the retraining snapshot (reference + labelled recent data)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from driftloop.core import lineage
from driftloop.core.episodes import RetrainDecision, decide_retrain
from driftloop.core.schema import DatasetSchema
from driftloop.io.datasets import read_snapshot
from driftloop.io.registry import EpisodeTags, ModelRegistry, locate_model_file
from driftloop.serving.prediction_log import open_prediction_log

MLFLOW_RETRIES = {"retries": 2, "retry_delay_seconds": 3}


@task(name="decide-retrain", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def claim_retrain(model_name: str, tracking_uri: str, version: str, episode: str, cooldown: float) -> RetrainDecision:
    """Decide, and when the answer is yes, claim the episode at once so a duplicate event finds it taken."""
    episodes = EpisodeTags(ModelRegistry(model_name, tracking_uri))
    now = datetime.now(UTC)
    decision = decide_retrain(episode, episodes.retrained_episode(version), episodes.last_retrain_at(), now, cooldown)
    if decision.run:
        episodes.mark_retrain(version, episode, now)
    return decision


@task(name="record-retrain-decision", cache_policy=NO_CACHE)
def record_retrain(markdown: str, verdict: str) -> None:
    create_markdown_artifact(key="retrain-decision", markdown=markdown, description=f"retrain: {verdict}")


@task(name="build-retrain-snapshot", cache_policy=NO_CACHE, timeout_seconds=900, **MLFLOW_RETRIES)
def build_snapshot(
    model_name: str, tracking_uri: str, version: str, predictions_url: str, out_dir: Path
) -> tuple[Path, Path, int, str]:
    """The champion's training data plus every labelled prediction, as a new snapshot and its schema file.

    Returns:
        (snapshot path, schema path, number of labelled rows added, the champion's estimator)
    """
    registry = ModelRegistry(model_name, tracking_uri)
    tags = registry.get_version(version).tags
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = registry.download_model_dir(version, out_dir / f"v{version}-model")
    schema = DatasetSchema.model_validate_json(locate_model_file(model_dir, lineage.SCHEMA_FILE).read_text())
    reference = read_snapshot(Path(tags[lineage.DATA_PATH]))[[*schema.feature_names, schema.target.name]]
    store = open_prediction_log(predictions_url)
    try:
        labelled = store.read_window(model_name, labelled=True)
    finally:
        store.close()
    recent = labelled[schema.feature_names].assign(**{schema.target.name: labelled["actual"].to_numpy()})
    for feature in schema.features:
        if not feature.is_categorical:
            recent[feature.name] = pd.to_numeric(recent[feature.name])
    combined = pd.concat([reference, recent], ignore_index=True)
    snapshot = out_dir / f"retrain-{model_name}-v{version}-{stamp}.parquet"
    combined.to_parquet(snapshot, index=False)
    schema_path = out_dir / f"retrain-{model_name}-v{version}-{stamp}.schema.json"
    schema_path.write_text(schema.model_dump_json(indent=2))
    return snapshot, schema_path, len(recent), tags[lineage.ESTIMATOR]
