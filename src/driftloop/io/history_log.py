"""The champion history log in MLflow: one run per entry in the ``driftloop-history`` experiment.

Runs, not registered-model tags, so the registry's own page stays readable and the MLflow UI shows the log as a
table to filter (``tags.`driftloop.history.model` = 'churn'``). No artifacts are logged. The entries' meaning,
chain and checks live in ``core.history``; this module only stores and finds them.
"""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_USER

from driftloop.core import lineage
from driftloop.core.history import LogEntry, StoredEntry, entry_tags, entry_title
from driftloop.errors import RegistryError

_EXISTS = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)
_DELETED = "deleted"
_PAGE = 1_000
_MAX_NAME = 250  # MLflow's limit on run names and user ids
_DESCRIPTION = (
    "driftloop's champion history: one run per move, pin or unpin of a registered model's champion alias, "
    "hash-chained (driftloop.history.prev / .hash). Written by driftloop; `driftloop history` reads and checks it. "
    "Editing or deleting a run here is reported as tampering."
)


def artifact_location(tracking_uri: str) -> str | None:
    """Where the experiment's (never used) artifacts would go: beside a SQLite store, never the CWD.

    MLflow's default for a store without a server is ``./mlruns`` of whichever process creates the experiment.
    A tracking server (or any other store) decides for itself, as for driftloop's other experiments.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return (Path(database).resolve().parent / "mlartifacts" / lineage.HISTORY_EXPERIMENT).as_uri()


class HistoryLog:
    """Append and read the entries of one MLflow store's history experiment."""

    def __init__(self, client: MlflowClient, tracking_uri: str) -> None:
        self._client = client
        self._tracking_uri = tracking_uri
        self._experiment_id: str | None = None

    def _experiment(self, create: bool) -> str | None:
        if self._experiment_id is not None:
            return self._experiment_id
        experiment = self._client.get_experiment_by_name(lineage.HISTORY_EXPERIMENT)
        if experiment is None and create:
            try:
                self._client.create_experiment(
                    lineage.HISTORY_EXPERIMENT,
                    artifact_location=artifact_location(self._tracking_uri),
                    tags={"mlflow.note.content": _DESCRIPTION},
                )
            except MlflowException as exc:
                if str(exc.error_code) != _EXISTS:  # another process created it a moment ago
                    raise
            experiment = self._client.get_experiment_by_name(lineage.HISTORY_EXPERIMENT)
        if experiment is None:
            return None
        if experiment.lifecycle_stage != _DELETED:
            self._experiment_id = str(experiment.experiment_id)
        elif create:
            raise RegistryError(
                f"the MLflow experiment {lineage.HISTORY_EXPERIMENT!r} (id {experiment.experiment_id}) holding the "
                "champion history is deleted, so no move can be recorded: restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`)"
            )
        return str(experiment.experiment_id)

    def entries(self, model_name: str) -> list[StoredEntry]:
        """Every entry stored for ``model_name``, unverified, in no particular order."""
        experiment_id = self._experiment(create=False)
        if experiment_id is None:
            return []
        found: list[StoredEntry] = []
        token: str | None = None
        while True:
            page = self._client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{lineage.HISTORY_MODEL}` = '{model_name}'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=_PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            found.extend(
                StoredEntry(
                    ref=f"run {run.info.run_id}",
                    tags={k: v for k, v in run.data.tags.items() if k.startswith(lineage.HISTORY_PREFIX)},
                    written_ms=int(run.info.start_time or 0),
                )
                for run in page
            )
            token = page.token
            if not token:
                return found

    def append(self, model_name: str, entry: LogEntry) -> str:
        """Store ``entry`` as one finished run (its tags in the same call, so it appears whole); its run id."""
        experiment_id = self._experiment(create=True)
        if experiment_id is None:
            raise RegistryError(f"MLflow did not create the experiment {lineage.HISTORY_EXPERIMENT!r}")
        at_ms = int(entry.move.at.timestamp() * 1000)
        tags = {**entry_tags(model_name, entry), MLFLOW_USER: entry.move.actor[:_MAX_NAME]}
        run = self._client.create_run(
            experiment_id, start_time=at_ms, tags=tags, run_name=entry_title(model_name, entry.move)[:_MAX_NAME]
        )
        self._client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED), end_time=at_ms)
        return str(run.info.run_id)
