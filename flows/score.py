"""score_table: a table's rows → the model version's ONNX graph on Dask → Parquet, bad rows aside, a sample logged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow

from driftloop.settings import get_settings
from tasks.score import load_model_for_scoring, publish_scoring, score_on_dask

if TYPE_CHECKING:
    from driftloop.io.batch_scoring import BatchScored


@dataclass(frozen=True)
class ScoreOutcome:
    """What one scoring run did: which version, the directory its Parquet files are in, and its counts."""

    model_name: str
    version: str
    out: str
    counts: BatchScored


@flow(name="score-table")
def score_table(
    data: str,
    out: str,
    query: str | None = None,
    keys: list[str] | None = None,
    version: str | None = None,
    model_name: str | None = None,
    dask_scheduler: str | None = None,
    workers: int = 2,
    log_fraction: float | None = None,
    batch_rows: int = 50_000,
) -> ScoreOutcome:
    """Score every row of a file, directory of Parquet or database query with a version's ONNX graph.

    Each run writes into its own directory under ``out`` (``out/20261204T020000Z``), so a schedule never
    overwrites the last night's answers.

    Args:
        data: CSV, Parquet, a directory of Parquet, or a database URL (without its password: the
            DRIFTLOOP_SQL_PASSWORD setting holds it) with ``query``.
        out: The directory under which each run's Parquet files go; rows the model cannot score under ``_rejected/``.
        query: The SQL selecting the rows, when ``data`` is a database URL.
        keys: Input columns kept beside each prediction.
        version: A model version; default: the champion when the run starts.
        model_name: Registered model; default: settings.
        dask_scheduler: A Dask scheduler to run on; default: DRIFTLOOP_DASK_SCHEDULER, else a local cluster.
        workers: Worker processes of the local cluster.
        log_fraction: Share of scored rows logged for the drift check; default: DRIFTLOOP_SCORE_LOG_FRACTION.
        batch_rows: Rows read and scored at a time.
    """
    settings = get_settings()
    name = model_name or settings.model_name
    model = load_model_for_scoring(name, settings.tracking_uri, version)
    destination = Path(out) / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    done = score_on_dask(
        model,
        data,
        query,
        destination,
        list(keys or []),
        log_url=settings.predictions_url if settings.prediction_log else None,
        log_fraction=settings.score_log_fraction if log_fraction is None else log_fraction,
        scheduler=dask_scheduler or settings.dask_scheduler,
        workers=workers,
        batch_rows=batch_rows,
    )
    publish_scoring(name, model.version, destination, done)
    done.require_scored(destination)  # after the record: a run that scored nothing fails, saying why
    return ScoreOutcome(name, model.version, str(destination), done)
