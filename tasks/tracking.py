"""Tracking tasks: open and close the MLflow run that a training flow logs into."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from driftloop.io import tracking

MLFLOW_RETRIES = {"retries": 2, "retry_delay_seconds": 3}


@dataclass(frozen=True)
class RunRef:
    experiment_id: str
    run_id: str


@task(name="open-mlflow-run", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def open_run(
    tracking_uri: str, experiment: str, artifact_root: Path | None, run_name: str, tags: Mapping[str, str]
) -> RunRef:
    client = tracking.use_tracking_uri(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, experiment, artifact_root)
    return RunRef(experiment_id, tracking.start_run(client, experiment_id, run_name, tags))


@task(name="close-mlflow-run", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def close_run(tracking_uri: str, run_id: str, succeeded: bool) -> None:
    tracking.end_run(tracking.use_tracking_uri(tracking_uri), run_id, succeeded)
