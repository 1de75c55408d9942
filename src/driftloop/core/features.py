"""The one mapping from raw feature values to what the model sees, shared by training and serving.

onnxruntime turns any object in a string tensor into ``str(obj)`` (None → 'None', NaN → 'nan'), which would
silently become an unknown category. So missing strings become ``""`` here, before ``fit`` and before every
ONNX call, and the pipeline imputes ``""`` the same way in both. Numbers go in as float32 with NaN for missing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from driftloop.core.schema import MISSING_CATEGORY, DatasetSchema, Feature, FeatureKind

__all__ = [
    "MISSING_CATEGORY",
    "as_numbers",
    "encode_target",
    "onnx_feed",
    "to_model_frame",
    "with_canonical_target",
    "with_default_index",
]


def _category_text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_CATEGORY
    return str(value)


# The words pandas' CSV reader takes for booleans (its default true_values and false_values). A snapshot read with
# it turns a column of them into True/False, so a CSV read as text (batch scoring) must read them as 1/0 too.
CSV_TRUE_WORDS = ("True", "TRUE", "true")
CSV_FALSE_WORDS = ("False", "FALSE", "false")


def only_booleans(values: pd.Series) -> bool:
    """Every present value is a boolean, or one of pandas' words for them: ``as_numbers`` reads them as 1 and 0.

    Booleans with blanks are objects (a CSV column read by pandas, Parquet booleans with nulls), not a bool dtype.
    """
    kind = infer_dtype(values, skipna=True)
    if kind == "boolean":
        return True
    present = values.dropna()
    return kind == "string" and len(present) > 0 and bool(present.isin((*CSV_TRUE_WORDS, *CSV_FALSE_WORDS)).all())


# What infer_dtype calls a column that holds no boolean: such a column is not searched for one.
_NO_BOOLEANS = frozenset({"string", "floating", "integer", "mixed-integer-float", "decimal", "empty"})


def as_numbers(values: pd.Series, booleans: bool = True) -> pd.Series:
    """The column as float64; a value that does not parse as a number becomes NaN.

    Booleans, and pandas' words for them (``CSV_TRUE_WORDS``, ``CSV_FALSE_WORDS``), are 1 and 0; with ``booleans``
    False they are not numbers either (``feature_numbers``).
    """
    if not booleans and pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index, dtype="float64")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    objects = values.astype(object)
    numbers = pd.to_numeric(objects, errors="coerce").astype("float64")  # True is 1.0 here
    if not booleans and infer_dtype(objects, skipna=True) not in _NO_BOOLEANS:
        flags = np.fromiter((isinstance(v, bool | np.bool_) for v in objects), dtype=bool, count=len(objects))
        numbers[flags] = np.nan
    unparsed = (numbers.isna() & objects.notna()).to_numpy()
    if unparsed.any():
        texts = objects[unparsed].astype(str)
        words = (
            np.where(texts.isin(CSV_TRUE_WORDS), 1.0, np.where(texts.isin(CSV_FALSE_WORDS), 0.0, np.nan))
            if booleans
            else np.full(len(texts), np.nan)
        )
        numbers[unparsed] = np.where(np.isnan(words), [_beyond_float64(text) for text in texts], words)
    return numbers


def feature_numbers(values: pd.Series, feature: Feature) -> pd.Series:
    """A numeric or binary feature's column as numbers (``as_numbers``).

    True/False are a binary feature's 1/0, as for the server, which refuses ``true`` for a numeric feature: a
    boolean column where a quantity was declared is most likely a wrong column (trial 20).
    """
    return as_numbers(values, booleans=feature.kind is FeatureKind.BINARY)


def _beyond_float64(text: str) -> float:
    """±inf for a number too large for float64 (``1e400``), which pandas leaves unparsed; NaN for anything else.

    So such a number is refused as infinite wherever it comes from (a typed column holds it as inf), not as text.
    """
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isinf(value) else math.nan


def to_model_frame(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """The schema's features, in schema order, typed as the model takes them (str / float32).

    A categorical value outside its feature's list goes to the other bucket where the feature's rules say so
    (``Feature.bucketed``).
    """
    columns: dict[str, pd.Series | np.ndarray] = {}
    for feature in schema.features:
        values = frame[feature.name]
        if feature.is_categorical:
            # _category_text on every value, in one pass of pandas' C loop: str(value), "" where missing.
            texts = values.astype(object).astype(str).to_numpy(dtype=object, copy=True)
            texts[values.isna().to_numpy()] = MISSING_CATEGORY
            if feature.has_other_bucket:  # only then can a value differ from its text; most features skip the pass
                listed = frozenset(feature.categories or ())
                texts = np.array([feature.bucketed(text, listed) for text in texts], dtype=object)
            columns[feature.name] = texts
        else:
            numbers = values if pd.api.types.is_numeric_dtype(values.dtype) else as_numbers(values)
            columns[feature.name] = numbers.to_numpy(dtype=np.float32, na_value=np.nan)
    return pd.DataFrame(columns, index=frame.index)


def onnx_feed(model_frame: pd.DataFrame, schema: DatasetSchema) -> dict[str, np.ndarray]:
    """One ``(n, 1)`` input per feature, from a frame made by ``to_model_frame``."""
    feed: dict[str, np.ndarray] = {}
    for feature in schema.features:
        column = model_frame[feature.name].to_numpy()
        dtype = object if feature.is_categorical else np.float32
        feed[feature.name] = column.astype(dtype, copy=False).reshape(-1, 1)
    return feed


def with_canonical_target(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """``frame`` with its target as the task reads it: class names as text, a regressor's values as float64.

    A base snapshot read with 0/1 integer classes and labelled rows from the prediction log (text) then join into
    one column of one type. For a validated snapshot (no missing labels).
    """
    values = frame[schema.target.name]
    canonical = values.astype(str) if schema.task.is_classifier else pd.to_numeric(values).astype("float64")
    # A shallow copy: the other columns stay shared with ``frame`` (``assign`` copied them all: a second
    # snapshot in memory while training loads), and setting the target replaces it in the copy only.
    out = frame.copy(deep=False)
    out[schema.target.name] = canonical
    return out


def with_default_index(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` indexed 0 to n-1, its columns shared (``reset_index`` copied them all)."""
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1:
        return frame
    out = frame.copy(deep=False)
    out.index = pd.RangeIndex(len(out))
    return out


def encode_target(labels: pd.Series, schema: DatasetSchema) -> np.ndarray:
    """The model's targets: class indices for classifiers (binary: 1 for the positive class), numbers for regressors."""
    return schema.task.encode(labels)
