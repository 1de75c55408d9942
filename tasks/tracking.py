"""Tracking tasks: open and close the MLflow run that a training flow logs into."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.core import lineage
from driftloop.io import tracking
from driftloop.io.prefect_runs import flow_run_state
from driftloop.io.provenance import flow_run_url, git_commit
from tasks.policies import mlflow_task

if TYPE_CHECKING:
    from mlflow import MlflowClient


_STILL_GOING = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")
# Runs this process opened and has not closed (run id -> tracking URI): closed by close_runs_opened_here when the
# process must end without its flow (driftloop.cli: the Prefect API gone).
_OPEN_HERE: dict[str, str] = {}


@dataclass(frozen=True)
class RunRef:
    experiment_id: str
    run_id: str

    def url(self, mlflow_ui: str) -> str:
        """The run's page in the MLflow UI."""
        return tracking.run_url(mlflow_ui, self.experiment_id, self.run_id)


def code_and_run(prefect_ui: str, flow_run_id: str) -> dict[str, str]:
    """The lineage of the code and the orchestration: git commit, the Prefect flow run and its page."""
    return {
        lineage.GIT_COMMIT: git_commit(),
        lineage.FLOW_RUN_ID: flow_run_id,
        lineage.FLOW_RUN_URL: flow_run_url(prefect_ui, flow_run_id),
    }


def version_url(mlflow_ui: str, model_name: str, version: str) -> str:
    """A model version's page in the MLflow UI."""
    return tracking.model_version_url(mlflow_ui, model_name, version)


@mlflow_task("open-mlflow-run")
def open_run(
    tracking_uri: str, experiment: str, artifact_root: Path | None, run_name: str, tags: Mapping[str, str]
) -> RunRef:
    client = tracking.use_tracking_uri(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, experiment, artifact_root)
    _close_runs_left_open(client, experiment_id)
    run_id = tracking.start_run(client, experiment_id, run_name, tags)
    opened_here(run_id, tracking_uri)
    return RunRef(experiment_id, run_id)


def opened_here(run_id: str, tracking_uri: str) -> None:
    """This process opened ``run_id``: closed by ``close_runs_opened_here`` unless ``closed_here`` says otherwise."""
    _OPEN_HERE[run_id] = tracking_uri


def closed_here(run_id: str) -> None:
    _OPEN_HERE.pop(run_id, None)


def _close_runs_left_open(client: MlflowClient, experiment_id: str) -> None:
    """Runs still RUNNING whose flow run has ended (or is gone): closed FAILED, saying why.

    A run is closed by its own flow when anything fails; only a failure of that close itself (a full disk, the
    database gone) leaves one open, and the next training run closes it here.
    """
    for run_id, flow_run_id in tracking.running_runs(client, experiment_id):
        state = flow_run_state(flow_run_id) if flow_run_id else None
        if state in _STILL_GOING:
            continue
        ended = f"its flow run {flow_run_id} ended {state}" if state else "its flow run is unknown to Prefect"
        tracking.set_run_tags(client, run_id, {lineage.CLOSED_LATE: f"left RUNNING; closed by the next run: {ended}"})
        tracking.end_run(client, run_id, succeeded=False)


@mlflow_task("close-mlflow-run")
def close_run(tracking_uri: str, run_id: str, succeeded: bool) -> None:
    tracking.end_run(tracking.use_tracking_uri(tracking_uri), run_id, succeeded)
    closed_here(run_id)


def close_runs_opened_here(reason: str, closed: list[str] | None = None) -> None:
    """Close FAILED, saying why, every MLflow run this process opened and did not close (not a task: no Prefect).

    The ids closed are appended to ``closed`` as they are (it runs in a thread that may be abandoned).
    """
    for run_id, tracking_uri in list(_OPEN_HERE.items()):
        client = tracking.use_tracking_uri(tracking_uri)
        tracking.set_run_tags(client, run_id, {lineage.CLOSED_LATE: f"closed as its process ended: {reason}"})
        tracking.end_run(client, run_id, succeeded=False)
        closed_here(run_id)
        if closed is not None:
            closed.append(run_id)
