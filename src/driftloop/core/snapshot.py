"""A snapshot's identity (a content hash) and its deterministic train/holdout split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from driftloop.core.schema import DatasetSchema
from driftloop.errors import DatasetError

# Stands for a missing text value in the hash; no real category or label contains a NUL.
_MISSING_TEXT = "\x00<missing>"


def content_hash(frame: pd.DataFrame, schema: DatasetSchema) -> str:
    """sha256 (hex) of the schema's columns (features, then target), row by row, in schema order.

    The same values give the same hash whatever the file format, the row index, the extra columns, or
    whether whole numbers were read as int or float. Any changed value, reordered row, or added row
    changes it.

    Raises:
        DatasetError: a schema column is missing from the frame.
    """
    columns = [*schema.feature_names, schema.target.name]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"cannot hash the snapshot: missing column(s) {', '.join(map(repr, missing))}")

    digest = hashlib.sha256()
    header = {"rows": len(frame), "columns": columns}
    digest.update(json.dumps(header, separators=(",", ":")).encode())
    kinds = {f.name: f.is_categorical for f in schema.features}
    for name in columns:
        values = frame[name]
        if isinstance(values, pd.DataFrame):
            raise DatasetError(f"cannot hash the snapshot: column {name!r} appears more than once")
        as_text = kinds.get(name, True)
        numbers = None if as_text else _numbers_bytes(values)
        if numbers is not None:
            digest.update(b"N" + numbers)
        else:
            digest.update(b"T" + _text_bytes(values))
    return digest.hexdigest()


def _numbers_bytes(values: pd.Series) -> bytes | None:
    """Canonical float64 bytes, or None when the column holds something that is not a number."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values
    else:
        try:
            numbers = pd.to_numeric(values.astype(object))
        except (ValueError, TypeError):
            return None
    array = pd.Series(numbers).to_numpy(dtype=np.float64, na_value=np.nan)
    # One bit pattern per value: every NaN becomes the same NaN, and -0.0 becomes 0.0 (x + 0.0).
    canonical = np.where(np.isnan(array), np.nan, array + 0.0)
    return canonical.astype("<f8").tobytes()


def _text_bytes(values: pd.Series) -> bytes:
    # The values themselves (length-prefixed, so no separator can be ambiguous) rather than
    # pd.util.hash_pandas_object, whose 64-bit per-row hashes depend on pandas' hashing staying the same.
    objects = values.astype(object)
    text = objects.astype(str).where(objects.notna(), _MISSING_TEXT)
    lengths = text.str.len().to_numpy(dtype="<i8")
    return lengths.tobytes() + "".join(text.tolist()).encode("utf-8", errors="surrogatepass")


@dataclass(frozen=True)
class Split:
    """The rows used to fit and the rows held out to evaluate: raw frames, all columns, original index."""

    train: pd.DataFrame
    holdout: pd.DataFrame


def split_holdout(frame: pd.DataFrame, schema: DatasetSchema, fraction: float, seed: int) -> Split:
    """Hold out ``fraction`` of the rows, stratified on the target.

    The same inputs give the same rows in the same order; both frames keep every column and the original
    row index.

    Raises:
        ValueError: ``fraction`` is not strictly between 0 and 1.
        DatasetError: the target cannot be stratified (a class with a single row, or too few rows).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be between 0 and 1 (exclusive), got {fraction}")
    labels = frame[schema.target.name].astype(str)
    try:
        train, holdout = train_test_split(frame, test_size=fraction, random_state=seed, shuffle=True, stratify=labels)
    except ValueError as exc:
        counts = ", ".join(f"{label!r}: {n}" for label, n in labels.value_counts().items())
        raise DatasetError(
            f"cannot hold out {fraction:.0%} of {len(frame)} rows stratified on {schema.target.name!r} "
            f"(class counts {counts}): {exc}"
        ) from None
    return Split(train=train, holdout=holdout)
