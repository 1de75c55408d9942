"""A window checked in chunks gives the in-memory verdict exactly, column by column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.drift import build_profile, check_drift
from driftloop.errors import DatasetError
from driftloop.io.window_spill import SpilledWindow, check_drift_in_chunks

NUMERIC = ["small", "wide", "counts", "flag"]
CATEGORICAL = ["city", "plan"]


def _frame(rng: np.random.Generator, rows: int, shift: float) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "small": rng.normal(shift, 1, rows),
            "wide": rng.normal(0, 10, rows),
            "counts": rng.poisson(3 + shift, rows).astype(float),
            "flag": rng.integers(0, 2, rows).astype(float),
            "city": rng.choice(["a", "b", "c", "d"], rows, p=[0.4, 0.3, 0.2, 0.1] if shift else [0.25] * 4),
            "plan": rng.choice(["x", "y"], rows),
            "probability": rng.beta(2 + shift, 2, rows),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "wide"] = np.nan
    frame["city"] = frame["city"].astype(object).where(rng.random(rows) >= 0.05, None)
    return frame


@pytest.mark.parametrize(("seed", "shift", "reference_rows"), [(1, 0.0, 5000), (2, 0.4, 5000), (3, 0.4, 800)])
def test_chunks_give_the_in_memory_verdict(tmp_path: Path, seed: int, shift: float, reference_rows: int) -> None:
    rng = np.random.default_rng(seed)
    reference = _frame(rng, reference_rows, 0.0)
    profile = build_profile(reference, NUMERIC, CATEGORICAL, predictions=reference["probability"].to_numpy(),
                            importances=dict.fromkeys(NUMERIC + CATEGORICAL, 1.0))  # fmt: skip
    window = _frame(rng, 6000, shift)
    whole = check_drift(profile, window, predictions=window["probability"], rule="either")
    chunks = (window.iloc[start : start + 1000] for start in range(0, len(window), 1000))
    chunked = check_drift_in_chunks(profile, chunks, tmp_path, prediction_column="probability", rule="either")
    assert chunked == whole
    assert (whole.status == "drift") == (shift > 0)


def test_an_empty_or_short_window_is_insufficient_and_a_bad_chunk_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    profile = build_profile(_frame(rng, 2000, 0.0), NUMERIC, CATEGORICAL)
    (tmp_path / "empty").mkdir()
    assert check_drift_in_chunks(profile, [], tmp_path / "empty", min_rows=10).status == "insufficient data"
    with SpilledWindow(tmp_path, profile.kinds) as window:
        window.append(_frame(rng, 10, 0.0).drop(columns=["plan"]))
        with pytest.raises(DatasetError, match=r"lacks column\(s\) \['plan'\]"):
            window.require_columns()
        window.append(_frame(rng, 10, 0.0))
        window.require_columns()
        with pytest.raises(DatasetError, match="column 'small' holds values that are not numbers"):
            window.append(_frame(rng, 10, 0.0).assign(small="many"))
        assert window.column("plan").isna().sum() == 10  # the first chunk's rows: missing


def test_categories_that_are_not_text_are_kept_as_their_text(tmp_path: Path) -> None:
    with SpilledWindow(tmp_path, {"plan": "categorical"}) as window:
        window.append(pd.DataFrame({"plan": pd.Series([12, None, "x"], dtype=object)}))
        window.append(pd.DataFrame({"plan": pd.Series(["y", np.nan], dtype=object)}))
    plan = window.column("plan")
    assert plan.dtype == "category"  # read back dictionary-encoded, not as one Python string per row
    assert plan.astype(object).where(plan.notna(), None).tolist() == ["12", None, "x", "y", None]
