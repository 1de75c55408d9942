"""Batch scoring tasks: a version's ONNX graph from the registry, a table's rows through it on Dask, the record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from driftloop.core.schema import DatasetSchema
from driftloop.core.scoring import REASON_COLUMN
from driftloop.io.batch_scoring import (
    BatchScored,
    dask_client,
    load_scoring_model,
    open_scoring_input,
    require_columns,
    require_worker_room,
    score_with_dask,
    worker_memory_bytes,
)
from driftloop.io.datasets import describe_source, source_from_text
from driftloop.io.partition_scoring import REJECTED_DIR, LogSampling, PartitionScored, ScoringModel
from driftloop.io.registry import ModelRegistry
from driftloop.settings import get_settings, secret_text
from tasks.policies import mlflow_task

PROGRESS_EVERY_SECONDS = 2.0  # the progress artifact is rewritten at most this often (one API call each)


@mlflow_task("load-scoring-model", timeout_seconds=600)
def load_model_for_scoring(model_name: str, tracking_uri: str, version: str | None) -> ScoringModel:
    """The version's (default: the champion's) ONNX graph and schema; a version its gate refused is said so."""
    model = load_scoring_model(ModelRegistry(model_name, tracking_uri), version)
    if note := model.gate_note():
        get_run_logger().warning(note)
    return model


class _Progress:
    """The flow run's progress artifact: tasks done of all (a query's total is known only at the end), rows."""

    def __init__(self, version: str) -> None:
        self._version = version
        # Called from a sync task, Prefect's async-compatible helper returns the id itself, not a coroutine.
        created = create_progress_artifact(0.0, key="scoring-progress", description=self._text(0, None, 0))
        self._id = cast(UUID, created)
        self._tasks = self._rows = 0
        self._written = time.monotonic()

    def _text(self, tasks: int, total: int | None, rows: int) -> str:
        of = f"{tasks:,} of {total:,}" if total is not None else f"{tasks:,}"
        return f"scoring with v{self._version}: {of} tasks, {rows:,} rows"

    def advance(self, result: PartitionScored, total: int | None) -> None:
        self._tasks += 1
        self._rows += result.rows
        now = time.monotonic()
        last = total is not None and self._tasks >= total
        if not last and now - self._written < PROGRESS_EVERY_SECONDS:
            return
        self._written = now
        done = 100.0 * self._tasks / total if total else 0.0
        update_progress_artifact(self._id, done, description=self._text(self._tasks, total, self._rows))

    def finish(self) -> None:
        update_progress_artifact(self._id, 100.0, description=self._text(self._tasks, self._tasks, self._rows))


@task(name="score-on-dask", cache_policy=NO_CACHE)
def score_on_dask(
    model: ScoringModel,
    data: str,
    query: str | None,
    out: Path,
    keys: list[str],
    *,
    log_url: str | None,
    log_fraction: float,
    scheduler: str | None,
    workers: int,
    batch_rows: int,
) -> BatchScored:
    """Every row of the input through the model on a Dask cluster, the run's progress as an artifact.

    ``log_fraction`` of the scored rows go to the prediction log at ``log_url`` (None: none). A database's
    password is read here from the settings (DRIFTLOOP_SQL_PASSWORD), never passed as a parameter.
    """
    sampling = LogSampling(log_url, log_fraction)
    source = source_from_text(data, query)
    memory = None  # a remote cluster's is not known here
    if not scheduler:
        require_worker_room(None, workers, model)
        memory = worker_memory_bytes(None, workers)
    rows = open_scoring_input(source, secret_text(get_settings().sql_password), batch_rows=batch_rows,
                              workers=workers, worker_memory=memory, graph_bytes=len(model.onnx_bytes))  # fmt: skip
    schema = DatasetSchema.model_validate_json(model.schema_json)
    keys = require_columns(rows, describe_source(source), keys or [], schema)
    progress = _Progress(model.version)
    with dask_client(scheduler, workers, worker_wait=get_settings().dask_worker_wait,
                     waiting=get_run_logger().info) as client:  # fmt: skip
        done = score_with_dask(client, rows, model, keys, out, sampling, progress.advance, schema=schema,
                               batch_rows=batch_rows)  # fmt: skip
    progress.finish()
    return done


@task(name="publish-scoring", cache_policy=NO_CACHE)
def publish_scoring(model_name: str, version: str, out: Path, done: BatchScored) -> None:
    """The run's counts and where its files are, as the flow run's markdown artifact."""
    rate = done.rows / done.seconds if done.seconds > 0 else 0.0
    lines = [
        f"# Scored {done.rows:,} rows with {model_name} v{version}",
        "",
        f"- answers: {done.scored:,} rows → `{out}/part-*.parquet`",
        f"- rejected: {done.rejected:,} rows → `{out}/{REJECTED_DIR}/` (column `{REASON_COLUMN}`)",
        f"- logged for the drift check: {done.logged:,} rows",
        f"- {done.partitions:,} tasks in {done.seconds:.1f} s ({rate:,.0f} rows/s)",
    ]
    if done.first_reasons:
        lines.append(f"- first reasons: {'; '.join(done.first_reasons)}")
    create_markdown_artifact("\n".join(lines) + "\n", key="scoring-run", description="batch scoring")
