"""Comparing what the feature parser builds: rows as JSON decodes them, and feed columns array by array."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from driftloop.core.schema import DatasetSchema


def records_of(frame: pd.DataFrame, schema: DatasetSchema) -> list[dict[str, Any]]:
    """Rows as JSON would decode them: Python int/float/str, None for NaN."""
    records = frame[schema.feature_names].to_dict(orient="records")
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in records]


def assert_columns_equal(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Same names in the same order, and per column the same shape, dtype and values (NaN equal to NaN)."""
    assert list(actual) == list(expected)
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, name
        assert got.dtype == want.dtype, name
        if got.dtype == object:
            assert got.tolist() == want.tolist(), name
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)  # NaN == NaN here
