"""Batch scoring on Dask: each partition validated, scored with the version's ONNX graph, written as Parquet.

The worker that reads a partition writes it, so no partition travels back to the client and inputs larger than
memory stream through. Rows the model cannot score go to ``rejected/`` with their reason; a seeded sample of the scored
rows goes to the prediction log, so the drift check sees batch traffic too.

Dask is the ``scale`` extra: imported by the functions that need it, not by this module.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.core.features import to_model_frame
from driftloop.core.schema import DatasetSchema
from driftloop.core.scoring import REASON_COLUMN, answers_frame, key_columns, row_problems
from driftloop.errors import ConfigError, DatasetError
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.prediction_store import PredictionEvent, open_prediction_log

if TYPE_CHECKING:
    from distributed import Client

SCALE_EXTRA = "pip install 'driftloop[scale]'"
REJECTED_DIR = "_rejected"  # "_": Parquet readers of the output directory skip it


@dataclass(frozen=True)
class ScoringModel:
    """What a worker needs to score: the ONNX graph, its schema and version (small: sent with each task)."""

    name: str
    version: str
    onnx_bytes: bytes
    schema_json: str

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


@dataclass(frozen=True)
class LogSampling:
    """Which scored rows go to the prediction log: a seeded fraction, at ``url``; no URL: none."""

    url: str | None
    fraction: float
    seed: int = 0


def score_partition(
    frame: pd.DataFrame,
    index: int,
    model: ScoringModel,
    keys: Sequence[str],
    out: str,
    sampling: LogSampling,
) -> PartitionScored:
    """Validate, score and write one partition (``out/part-NNNNN.parquet``, bad rows under ``rejected/``)."""
    started = time.perf_counter()
    schema = DatasetSchema.model_validate_json(model.schema_json)
    onnx = _session(model.sha256, model.onnx_bytes, model.schema_json)
    reasons = row_problems(frame, schema)
    good = (reasons == "").to_numpy()
    bad = frame[~good]
    if len(bad):
        rejected = bad.assign(**{REASON_COLUMN: reasons[~good].to_numpy()})
        target = Path(out) / REJECTED_DIR / f"part-{index:05d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        rejected.astype({c: str for c in rejected.columns if rejected[c].dtype == object}).to_parquet(
            target, index=False
        )
    rows = frame[good]
    logged = 0
    if len(rows):
        model_frame = to_model_frame(rows, schema)
        labels, probabilities = onnx.predict(model_frame)
        answers = answers_frame(key_columns(rows, keys), schema.task, labels, probabilities, model.version)
        answers.to_parquet(Path(out) / f"part-{index:05d}.parquet", index=False)
        logged = _log_sample(model, schema, model_frame, labels, probabilities, index, sampling)
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
    index: int,
    sampling: LogSampling,
) -> int:
    if sampling.url is None or sampling.fraction <= 0:
        return 0
    picked = np.random.default_rng([sampling.seed, index]).random(len(model_frame)) < sampling.fraction
    if not picked.any():
        return 0
    chosen = model_frame[picked]
    features = {
        f.name: chosen[f.name].to_numpy(dtype=object if f.is_categorical else np.float32).reshape(-1, 1)
        for f in schema.features
    }
    task = schema.task
    if task.is_classifier and probabilities is not None:
        names = np.asarray(task.classes, dtype=object)[np.asarray(labels)[picked].astype(np.int64)].astype(str)
        outputs = np.asarray(probabilities, dtype=np.float32)[picked]
    else:
        values = np.asarray(labels, dtype=np.float64).reshape(-1)[picked]
        names = np.array([repr(float(v)) for v in values], dtype=object)
        outputs = values.astype(np.float32).reshape(-1, 1)
    event = PredictionEvent(
        ts=time.time(),
        request_id=f"batch-{model.sha256[:8]}-{index:05d}-{time.time_ns()}",
        model_name=model.name,
        model_version=model.version,
        features=features,
        labels=names,
        probabilities=outputs,
    )
    store = open_prediction_log(sampling.url)
    try:
        return store.write([event])
    finally:
        store.close()


@dataclass(frozen=True)
class BatchScored:
    partitions: int
    rows: int
    scored: int
    rejected: int
    logged: int
    seconds: float
    first_reasons: tuple[str, ...]


def input_partitions(source: Path, blocksize: str) -> tuple[Any, list[str]]:
    """The input as a Dask DataFrame (CSV, Parquet file or directory of Parquet) and its columns.

    Raises:
        ConfigError: Dask is not installed.
        DatasetError: The input does not exist or is not CSV or Parquet.
    """
    dd = _dask_dataframe()
    if not source.exists():
        raise DatasetError(f"input {source} does not exist")
    parquet = source.is_dir() or source.suffix.lower() in (".parquet", ".pq")
    if not parquet and ".csv" not in [s.lower() for s in source.suffixes]:
        raise DatasetError(f"input {source}: score reads CSV, Parquet or a directory of Parquet files")
    if parquet:
        frame = dd.read_parquet(str(source), blocksize=blocksize)
    else:
        frame = dd.read_csv(str(source), blocksize=blocksize, dtype=object, keep_default_na=True)
    return frame, [str(c) for c in frame.columns]


def score_with_dask(
    client: Client,
    frame: Any,
    model: ScoringModel,
    keys: Sequence[str],
    out: Path,
    sampling: LogSampling,
    progress: Callable[[PartitionScored, int], None] | None = None,
    csv_schema: DatasetSchema | None = None,
) -> BatchScored:
    """Score every partition on the cluster; each result, as it comes, goes to ``progress(result, total)``.

    One task per partition reads, scores and writes it; only its counts come back. The partitions' data is
    released as soon as each is written, so the cluster holds a few partitions at a time, not the input.
    """
    from dask import delayed
    from distributed import as_completed

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    score = delayed(_score_delayed, pure=False)
    tasks = [
        score(part, index, model, list(keys), str(out), sampling, csv_schema)
        for index, part in enumerate(frame.to_delayed())
    ]
    futures = client.compute(tasks)
    results: list[PartitionScored] = []
    for future in as_completed(futures):
        result: PartitionScored = future.result()
        results.append(result)
        if progress is not None:
            progress(result, len(futures))
    reasons = tuple(dict.fromkeys(r for result in results for r in result.first_reasons))[:5]
    return BatchScored(
        len(results),
        sum(r.rows for r in results),
        sum(r.scored for r in results),
        sum(r.rejected for r in results),
        sum(r.logged for r in results),
        time.perf_counter() - started,
        reasons,
    )


def _score_delayed(
    frame: pd.DataFrame,
    index: int,
    model: ScoringModel,
    keys: list[str],
    out: str,
    sampling: LogSampling,
    csv_schema: DatasetSchema | None,
) -> PartitionScored:
    if csv_schema is not None:
        frame = _csv_types(frame, csv_schema)
    return score_partition(frame, index, model, keys, out, sampling)


def _csv_types(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """A CSV partition read as text: numeric features as numbers where they parse (the rest is flagged, not lost)."""
    out = frame.copy()
    for feature in schema.features:
        if feature.name in out.columns and not feature.is_categorical:
            numbers = pd.to_numeric(out[feature.name], errors="coerce")
            unparsed = out[feature.name].notna() & numbers.isna()
            out[feature.name] = numbers.astype(object).where(~unparsed, out[feature.name])
    return out


def _dask_dataframe() -> Any:
    try:
        import dask.dataframe as dd
    except ImportError:
        raise ConfigError(f"driftloop score runs on Dask, which is not installed: {SCALE_EXTRA}") from None
    return dd
