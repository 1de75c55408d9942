"""A drift window larger than memory: written chunk by chunk to one Parquet file, read back a column at a time.

The drift tests need each column whole (a K-S statistic, a Wasserstein distance), not the whole window at once:
``core.drift.check_drift_columns`` asks for one column per test. So a window read in chunks (from the prediction
log, a file, a query) costs one chunk while it is written and ``workers`` columns while it is tested, and the
verdict is the in-memory one. Numerical columns are stored as float64 and categorical ones as text, as the
prediction log gives them back; a categorical column is read back dictionary-encoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.core.drift import ColumnKind, DriftVerdict, ReferenceProfile, check_drift_columns
from driftloop.core.drift_rule import DriftRule
from driftloop.core.label_check import labelled_rows
from driftloop.errors import DatasetError
from driftloop.io.prediction_store import PredictionStore

WINDOW_FILE = "window.parquet"


class SpilledWindow:
    """A window's columns in ``directory/window.parquet``, one row group per appended chunk."""

    def __init__(self, directory: Path, kinds: Mapping[str, ColumnKind]) -> None:
        self.path = Path(directory) / WINDOW_FILE
        self._kinds = dict(kinds)
        self._schema = pa.schema(
            [(name, pa.float64() if kind == "numerical" else pa.string()) for name, kind in kinds.items()]
        )
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.path, self._schema)
        self._seen: set[str] = set()
        self.rows = 0

    def append(self, chunk: pd.DataFrame) -> None:
        """Add a chunk's rows (its other columns are ignored; one it lacks is missing in its rows).

        Raises:
            DatasetError: A numerical column holds text.
        """
        if self._writer is None:
            raise RuntimeError("the window was closed for writing")
        self._seen.update(name for name in self._kinds if name in chunk.columns)
        arrays = []
        for name, kind in self._kinds.items():
            values = chunk[name] if name in chunk.columns else pd.Series([None] * len(chunk), dtype=object)
            if kind == "numerical":
                try:
                    arrays.append(pa.array(pd.to_numeric(values).to_numpy(dtype="float64", na_value=float("nan"))))
                except (TypeError, ValueError) as error:
                    raise DatasetError(f"column {name!r} holds values that are not numbers: {error}") from None
            else:
                arrays.append(_text_array(values))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self.rows += len(chunk)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def require_columns(self) -> None:
        """Every column was in at least one chunk, as the in-memory check requires of its window.

        Raises:
            DatasetError: A column was in no chunk.
        """
        missing = [name for name in self._kinds if name not in self._seen]
        if missing and self.rows:
            raise DatasetError(f"the current data lacks column(s) {missing}")

    def column(self, name: str) -> pd.Series:
        """One column, whole: float64 with NaN, or a pandas Categorical of the text values with NaN for missing.

        Categorical, not Python strings: the drift tests only count a categorical column's values, and 10M rows
        of ``str`` objects would cost more memory than every other column together.
        """
        self.finish()
        if self._kinds[name] == "numerical":
            values = pq.read_table(self.path, columns=[name]).column(0)
            return pd.Series(values.to_numpy(zero_copy_only=False), name=name, dtype="float64")
        encoded = pq.read_table(self.path, columns=[name], read_dictionary=[name]).column(0)
        return pd.Series(encoded.to_pandas(), name=name)

    def __enter__(self) -> SpilledWindow:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.finish()


def _text_array(values: pd.Series) -> pa.Array:
    """A categorical column as Arrow text, missing values null; values that are not text are written as text."""
    try:
        return pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        present = values.notna().to_numpy()
        return pa.array([str(v) if ok else None for v, ok in zip(values.tolist(), present, strict=True)], pa.string())


def check_drift_in_chunks(
    profile: ReferenceProfile,
    chunks: Iterable[pd.DataFrame],
    directory: Path,
    drift_share: float = 0.5,
    min_rows: int = 100,
    *,
    workers: int = 2,
    prediction_column: str | None = None,
    rule: DriftRule = "share",
) -> DriftVerdict:
    """The drift verdict of a window given as chunks, holding one chunk, then ``workers`` columns, at a time.

    ``prediction_column`` names the chunks' column of the model's output (``PredictionReference.source``), when
    the profile has a prediction reference to test it against. ``directory`` holds the spilled window (the
    caller removes it).
    """
    kinds: dict[str, ColumnKind] = dict(profile.kinds)
    tested = profile.prediction is not None and prediction_column is not None
    if tested and profile.prediction is not None and prediction_column is not None:
        kinds[prediction_column] = profile.prediction.kind
    with SpilledWindow(directory, kinds) as window:
        for chunk in chunks:
            window.append(chunk)
    if window.rows >= min_rows:
        window.require_columns()
    source = (lambda: window.column(prediction_column)) if tested and prediction_column is not None else None
    return check_drift_columns(
        profile,
        window.column,
        window.rows,
        drift_share,
        min_rows,
        workers=workers,
        prediction_source=source,
        rule=rule,
    )


@dataclass(frozen=True)
class LoggedWindow:
    """A big window of the prediction log, checked in chunks.

    Attributes:
        verdict: The features' (and the model output's) verdict on every row, exactly as in memory.
        sample: A seeded uniform sample of about ``chunk_rows`` rows, every column: for the figures computed
            in memory (the estimate, segments, the report).
        labelled: Every row whose label came back (``label``, ``probability``, ``actual``): the label check's.
        first_ts: The window's oldest and newest prediction (None when empty).
    """

    verdict: DriftVerdict
    sample: pd.DataFrame
    labelled: pd.DataFrame
    first_ts: datetime | None
    last_ts: datetime | None


def check_logged_window(
    store: PredictionStore,
    model_name: str,
    model_version: str,
    last: int,
    chunk_rows: int,
    profile: ReferenceProfile,
    directory: Path,
    *,
    drift_share: float,
    min_rows: int,
    rule: DriftRule,
    seed: int = 0,
) -> LoggedWindow:
    """The last ``last`` predictions of a version, streamed from the log ``chunk_rows`` at a time."""
    rng = np.random.default_rng(seed)
    keep = min(1.0, chunk_rows / last)
    samples: list[pd.DataFrame] = []
    labelled: list[pd.DataFrame] = []
    bounds: list[datetime] = []

    def chunks() -> Iterator[pd.DataFrame]:
        for chunk in store.read_window_chunks(model_name, model_version=model_version, last=last,
                                              chunk_rows=chunk_rows):  # fmt: skip
            if len(chunk):
                bounds.extend([chunk["ts"].iloc[0].to_pydatetime(), chunk["ts"].iloc[-1].to_pydatetime()])
            samples.append(chunk[rng.random(len(chunk)) < keep])
            labelled.append(labelled_rows(chunk))
            yield chunk

    source = profile.prediction.source if profile.prediction is not None else None
    verdict = check_drift_in_chunks(profile, chunks(), directory, drift_share, min_rows, prediction_column=source,
                                    rule=rule)  # fmt: skip
    return LoggedWindow(
        verdict,
        pd.concat(samples, ignore_index=True),
        pd.concat(labelled, ignore_index=True),
        min(bounds) if bounds else None,
        max(bounds) if bounds else None,
    )
