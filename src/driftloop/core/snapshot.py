"""A snapshot's identity (a content hash) and its deterministic train/holdout split."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from driftloop.core.features import as_numbers
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
    kinds = _text_columns(schema)
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


def _text_columns(schema: DatasetSchema) -> dict[str, bool]:
    """Which schema columns are hashed as text: categoricals and a classifier's target; numbers otherwise."""
    kinds = {f.name: f.is_categorical for f in schema.features}
    kinds[schema.target.name] = schema.task.is_classifier  # a regressor's target is a number, like a feature
    return kinds


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


def _texts(values: pd.Series) -> np.ndarray:
    """The column as text: an object array of ``str``, ``_MISSING_TEXT`` for a missing value."""
    objects = values.to_numpy(dtype=object)
    if infer_dtype(objects, skipna=False) == "string":  # text already, none missing: converting copied every value
        return objects
    text: np.ndarray = values.astype(object).where(values.notna(), _MISSING_TEXT).astype(str).to_numpy()
    return text


def _text_bytes(values: pd.Series) -> bytes:
    # The values themselves (length-prefixed, so no separator can be ambiguous) rather than
    # pd.util.hash_pandas_object, whose 64-bit per-row hashes depend on pandas' hashing staying the same.
    strings = _texts(values).tolist()
    lengths = np.fromiter(map(len, strings), dtype="<i8", count=len(strings))  # 10x faster than .str.len()
    return lengths.tobytes() + "".join(strings).encode("utf-8", errors="surrogatepass")


@dataclass(frozen=True)
class Split:
    """The rows used to fit and the rows held out to evaluate: raw frames, all columns, original index."""

    train: pd.DataFrame
    holdout: pd.DataFrame


def after_base(index: pd.Index, base_rows: int) -> np.ndarray:
    """Which rows of a retrain's snapshot (by original ``index``) are its recent ones: those after the base's rows."""
    return np.asarray(index >= base_rows)


_SHOWN_CLASSES = 10  # a split's refusal lists this many class counts at most


def split_holdout(
    frame: pd.DataFrame, schema: DatasetSchema, fraction: float, seed: int, features: Sequence[str] | None = None
) -> Split:
    """Hold out about ``fraction`` of each class (of the rows, for a regressor), row by row, from a seeded hash.

    A row's side depends only on its own values and the seed, never on the other rows. So when a snapshot
    grows (a retrain adds recent labelled rows to the champion's data), every row the champion trained on stays
    in train, and the champion is never scored on rows it has seen; identical rows always fall on the same side.
    The hash reads ``features`` (default: all the schema's) and the target: a snapshot that adds a feature is split
    on the champion's features, so the new column does not move the champion's rows (``SplitSpec.features``).
    The split is stratified in expectation (each class is cut at the same hash threshold), so holdout size and
    class shares match ``fraction`` and the data up to sampling noise (about ±1% on the bundled data). Both
    frames keep every column and the original row index and order.

    Raises:
        ValueError: ``fraction`` is not strictly between 0 and 1.
        DatasetError: a class would end up with no row on one side (too few rows to hold any out).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be between 0 and 1 (exclusive), got {fraction}")
    in_holdout = _row_hash_fraction(frame, schema, seed, features) < fraction
    if not schema.task.is_classifier:
        held = int(np.count_nonzero(in_holdout))
        if held == 0 or held == len(frame):
            side = "holdout" if held == 0 else "training"
            raise DatasetError(f"cannot hold out {fraction:.0%} of {len(frame)} rows: no {side} row would be left")
        return Split(train=frame[~in_holdout], holdout=frame[in_holdout])
    labels = frame[schema.target.name].astype(str)
    for label in labels.unique():
        of_class = (labels == label).to_numpy()
        held = int(np.count_nonzero(in_holdout & of_class))
        if held == 0 or held == int(of_class.sum()):
            tally = labels.value_counts().sort_values(kind="stable")  # the smallest classes, where the problem is
            shown = _SHOWN_CLASSES
            counts = ", ".join(f"{name!r}: {n}" for name, n in tally.head(shown).items())
            if len(tally) > shown:
                counts += f" and {len(tally) - shown:,} more classes"
            raise DatasetError(
                f"cannot hold out {fraction:.0%} of {len(frame)} rows with every class on both sides of the split "
                f"(class counts, smallest first: {counts}): class {label!r} would have no "
                f"{'holdout' if held == 0 else 'training'} row"
            )
    return Split(train=frame[~in_holdout], holdout=frame[in_holdout])


def _row_hash_fraction(
    frame: pd.DataFrame, schema: DatasetSchema, seed: int, features: Sequence[str] | None
) -> np.ndarray:
    """A uniform number in [0, 1) per row, from the row's values of ``features`` and the target, and the seed only."""
    return (row_keys(frame, schema, seed, features) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def row_keys(
    frame: pd.DataFrame, schema: DatasetSchema, seed: int = 0, features: Sequence[str] | None = None
) -> np.ndarray:
    """A 64-bit hash per row of its schema values (features, then target): equal rows, equal keys, in any frame.

    ``features`` narrows the features read to those (in the schema's order); default: all of them.

    A number is hashed as one whether it is stored as int, float, bool or objects (True/False with blanks, which
    pandas stores as objects: one blank in a retrain's recent rows must not move the champion's rows to the other
    side of the split); text is hashed as text whatever its dtype.
    """
    wanted = None if features is None else set(features)
    chosen = schema.feature_names if wanted is None else [f for f in schema.feature_names if f in wanted]
    columns = [*chosen, schema.target.name]
    kinds = _text_columns(schema)
    canonical: dict[str, np.ndarray] = {}
    for name in columns:
        values = frame[name]
        numbers = None if kinds.get(name, True) else _as_numbers_if_all(values)
        canonical[name] = _texts(values) if numbers is None else numbers
    key = hashlib.sha256(f"driftloop-split-{seed}".encode()).hexdigest()[:16]
    # copy=False: the hash reads column by column, so stacking the numbers into one block first only copied them.
    table = pd.DataFrame(canonical, copy=False)
    keys: np.ndarray = pd.util.hash_pandas_object(table, index=False, hash_key=key).to_numpy()
    return keys


def _as_numbers_if_all(values: pd.Series) -> np.ndarray | None:
    """The column as float64 (-0.0 as 0.0) when every present value is a number or a boolean; else None."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # int, float and bool alike
    numbers = as_numbers(values)
    if bool((numbers.isna() & values.notna()).any()):
        return None
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0
