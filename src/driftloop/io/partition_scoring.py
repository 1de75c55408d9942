"""What a Dask worker runs for batch scoring: a batch of rows validated, scored with ONNX, written as Parquet.

The client side (``batch_scoring``: the registry, the input's tasks, the cluster) submits these functions; a
worker process imports only this module to run them, not MLflow or the registry, so it starts scoring sooner.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from driftloop.core.features import feature_numbers, to_model_frame
from driftloop.core.layout import FeatureLayout
from driftloop.core.schema import DatasetSchema
from driftloop.core.scoring import REASON_COLUMN, answers_frame, id_text, key_columns, row_problems
from driftloop.errors import DatasetError
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.prediction_store import Logged, PredictionEvent, PredictionRow, open_prediction_log

REJECTED_DIR = "_rejected"  # "_": Parquet readers of the output directory skip it
ANSWER_FILES = "part-*.parquet"  # the files of one run, in the output directory and in REJECTED_DIR


class _TaskErrorsGoBack(logging.Filter):
    """Drops a worker's own log of a task's error (a traceback): the error goes back to the command, which names it.

    Every other worker log (memory, restarts) stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Compute Failed")


def dask_setup(worker: object) -> None:
    """Called by Dask in each worker that preloads this module (``batch_scoring.dask_client``'s local cluster)."""
    logging.getLogger("distributed.worker").addFilter(_TaskErrorsGoBack())


def unseen_paths(reads: Sequence[str], writes: Sequence[str]) -> list[str]:
    """Run on each worker: which of the files it must read it cannot, and which directories it must write it cannot.

    A Dask scheduler's workers may be on other machines, where the client's paths need not exist.
    """
    problems = [f"cannot read {path}" for path in reads if not os.access(path, os.R_OK)]
    return problems + [f"cannot write in {path}" for path in writes if not os.access(path, os.W_OK | os.X_OK)]


def answer_file(part: tuple[int, int]) -> str:
    """The name of one batch's file (task, batch), in the output directory or in ``REJECTED_DIR``."""
    return f"part-{part[0]:05d}-{part[1]:04d}.parquet"


@dataclass(frozen=True)
class ScoringModel:
    """What a worker needs to score: the ONNX graph, its schema and version (sent with each task).

    ``refused_by_gate``: the first line of the gate's reasons when its promotion gate refused the version.
    """

    name: str
    version: str
    onnx_bytes: bytes
    schema_json: str
    refused_by_gate: str | None = None

    def gate_note(self) -> str | None:
        """What a person scoring a version its gate refused should know; None for any other version.

        Scoring it is a fair use (a comparison offline, a second opinion), so it is said, not refused.
        """
        if self.refused_by_gate is None:
            return None
        return (
            f"v{self.version} of {self.name!r} was refused by its promotion gate ({self.refused_by_gate}); scoring "
            "it as asked: each answer's model_version column names it"
        )

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.onnx_bytes).hexdigest()


@lru_cache(maxsize=4)
def _session(sha256: str, onnx_bytes: bytes, schema_json: str) -> OnnxModel:
    """One onnxruntime session per model and worker process, single-threaded (Dask runs one task per thread)."""
    return OnnxModel.from_bytes(onnx_bytes, DatasetSchema.model_validate_json(schema_json), intra_op_num_threads=1)


@dataclass(frozen=True)
class PartitionScored:
    rows: int
    scored: int
    rejected: int
    logged: int
    seconds: float
    first_reasons: tuple[str, ...] = ()

    @classmethod
    def combined(cls, parts: Sequence[PartitionScored], reasons: int = 3) -> PartitionScored:
        """The counts of several batches as one; their first ``reasons`` distinct reasons."""
        return cls(
            sum(p.rows for p in parts), sum(p.scored for p in parts), sum(p.rejected for p in parts),
            sum(p.logged for p in parts), sum(p.seconds for p in parts),
            tuple(dict.fromkeys(r for p in parts for r in p.first_reasons))[:reasons],
        )  # fmt: skip


@dataclass(frozen=True)
class LogSampling:
    """Which scored rows go to the prediction log: a seeded fraction, at ``url``; no URL: none.

    ``run``: the scoring run's id, which every request id it logs starts with (``request_prefix``), so that a run
    that fails can take back what it logged.
    """

    url: str | None
    fraction: float
    seed: int = 0
    run: str = ""

    @property
    def request_prefix(self) -> str:
        return f"batch-{self.run}-" if self.run else "batch-"


def score_partition(
    frame: pd.DataFrame,
    part: tuple[int, int],
    model: ScoringModel,
    keys: Sequence[str],
    out: str,
    sampling: LogSampling,
    as_read: pd.DataFrame | None = None,
) -> PartitionScored:
    """Validate, score and write one batch of rows: ``out/part-TTTTT-BBBB.parquet`` (task, batch: ``answer_file``).

    Bad rows go under ``_rejected/`` with their reason (their values as text, missing values kept missing);
    ``as_read``: the same rows before they were typed (a CSV's text), which is what is set aside then.
    """
    started = time.perf_counter()
    schema = DatasetSchema.model_validate_json(model.schema_json)
    reasons = row_problems(frame, schema)
    good = (reasons == "").to_numpy()
    bad = (frame if as_read is None else as_read)[~good]
    if len(bad):
        rejected = bad.assign(**{REASON_COLUMN: reasons[~good].to_numpy()})
        for column in rejected.columns:
            if rejected[column].dtype == object:  # mixed values (30 and "abc"): as text, so Parquet can hold them
                values = rejected[column]
                texts = values.astype(str).to_numpy(dtype=object)
                texts[values.isna().to_numpy()] = None
                rejected[column] = texts
        target = Path(out) / REJECTED_DIR / answer_file(part)
        target.parent.mkdir(parents=True, exist_ok=True)
        rejected.to_parquet(target, index=False)
    rows = frame[good]
    logged = 0
    if len(rows):
        model_frame = to_model_frame(rows, schema)
        labels, probabilities = _session(model.sha256, model.onnx_bytes, model.schema_json).predict(model_frame)
        answers = answers_frame(key_columns(rows, keys), schema.task, labels, probabilities, model.version)
        answers.to_parquet(Path(out) / answer_file(part), index=False)
        # One key: each logged row carries it as its client's request id, so `labels import --id-column KEY` joins.
        ids = rows[keys[0]].to_numpy(dtype=object) if len(keys) == 1 else None
        logged = _log_sample(model, schema, model_frame, labels, probabilities, part, sampling, ids)
    return PartitionScored(
        len(frame), int(good.sum()), int((~good).sum()), logged, time.perf_counter() - started,
        tuple(dict.fromkeys(reasons[~good].tolist()))[:3],
    )  # fmt: skip


def _log_sample(
    model: ScoringModel,
    schema: DatasetSchema,
    model_frame: pd.DataFrame,
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    part: tuple[int, int],
    sampling: LogSampling,
    ids: np.ndarray | None = None,
) -> int:
    """Log a seeded share of the scored rows: one request of them all, or, given their ``ids``, one per row."""
    if sampling.url is None or sampling.fraction <= 0:
        return 0
    picked = np.random.default_rng([sampling.seed, *part]).random(len(model_frame)) < sampling.fraction
    if not picked.any():
        return 0
    chosen = model_frame[picked]
    task = schema.task
    if task.is_classifier and probabilities is not None:
        names = np.asarray(task.classes, dtype=object)[np.asarray(labels)[picked].astype(np.int64)].astype(str)
        outputs = np.asarray(probabilities, dtype=np.float32)[picked]
    else:
        values = np.asarray(labels, dtype=np.float64).reshape(-1)[picked]
        names = np.array([repr(float(v)) for v in values], dtype=object)
        outputs = values.astype(np.float32).reshape(-1, 1)
    request = f"{sampling.request_prefix}{model.sha256[:8]}-{part[0]:05d}-{part[1]:04d}-{time.time_ns()}"
    now = time.time()
    if ids is None:
        features = {
            f.name: chosen[f.name].to_numpy(dtype=object if f.is_categorical else np.float32).reshape(-1, 1)
            for f in schema.features
        }
        events: list[Logged] = [PredictionEvent(now, request, model.name, model.version, features, names, outputs)]
    else:  # one-row requests, logged as the server logs its own (PredictionRow): no per-feature object per row
        layout = FeatureLayout.of(schema)
        numeric = chosen[list(schema.numeric)].to_numpy(dtype=np.float32)
        categorical = chosen[list(schema.categorical)].to_numpy(dtype=object)
        events = [
            PredictionRow(
                now,
                f"{request}-{row}",
                model.name,
                model.version,
                layout,
                numeric[row : row + 1],
                categorical[row : row + 1],
                names[row],
                outputs[row],
                None if pd.isna(key) else id_text(key),
            )  # fmt: skip
            for row, key in enumerate(ids[picked])
        ]
    store = open_prediction_log(sampling.url)
    try:
        return store.write(events)
    finally:
        store.close()


class UnreadablePart(DatasetError):
    """A Parquet file of the input is damaged inside (its footer, read before any worker started, is whole)."""


@dataclass(frozen=True)
class ParquetPiece:
    """One row group of one Parquet file: a task's share of a Parquet input."""

    path: str
    row_group: int


def score_piece(
    piece: ParquetPiece, number: int, model: ScoringModel, keys: list[str], out: str, sampling: LogSampling,
    batch_rows: int,
) -> PartitionScored:  # fmt: skip
    results = []
    for index, frame in enumerate(_read_row_group(piece, batch_rows)):
        results.append(score_partition(frame, (number, index), model, keys, out, sampling))
    return PartitionScored.combined(results)


def _read_row_group(piece: ParquetPiece, batch_rows: int) -> Iterator[pd.DataFrame]:
    """The row group's rows, ``batch_rows`` at a time; a file damaged inside (its footer whole) is named."""
    try:
        batches = pq.ParquetFile(piece.path).iter_batches(batch_size=batch_rows, row_groups=[piece.row_group])
        while (batch := next(batches, None)) is not None:
            yield batch.to_pandas()
    except (OSError, ValueError) as error:  # pyarrow's: a corrupt page ("Corrupt snappy compressed data")
        raise UnreadablePart(
            f"input {piece.path} (row group {piece.row_group}) cannot be read as Parquet: {error}"
        ) from None


def score_csv_block(
    frame: pd.DataFrame, number: int, model: ScoringModel, keys: list[str], out: str, sampling: LogSampling,
    schema: DatasetSchema | None,
) -> PartitionScored:  # fmt: skip
    """One block of a CSV, read as text: typed by ``schema`` to be scored; its bad rows set aside as written."""
    typed = frame if schema is None else _csv_types(frame, schema)
    return score_partition(typed, (number, 0), model, keys, out, sampling, as_read=frame)


def _csv_types(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """A CSV partition read as text: numeric features as numbers where they parse, the rest kept as written.

    Parsed by ``feature_numbers``, so a binary feature's True/False become 1/0 as training's pandas reader makes
    them; what does not parse (a numeric feature's True) is flagged by the rules, not lost.
    """
    out = frame.copy()
    for feature in schema.features:
        if feature.name in out.columns and not feature.is_categorical:
            numbers = feature_numbers(out[feature.name], feature)
            unparsed = out[feature.name].notna() & numbers.isna()
            out[feature.name] = numbers.astype(object).where(~unparsed, out[feature.name])
    return out
