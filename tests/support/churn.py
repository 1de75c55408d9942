"""Rows of the bundled churn snapshot as a client sends them."""

from __future__ import annotations

from driftloop.io.datasets import read_snapshot
from driftloop.settings import BUNDLED_DATA


def sample_rows(n: int, start: int = 0) -> list[dict[str, object]]:
    """``n`` rows from ``start``, without the label, as JSON records (None where a value is missing)."""
    frame = read_snapshot(BUNDLED_DATA).drop(columns=["churn"]).iloc[start : start + n]
    frame = frame.astype(object).where(frame.notna(), None)
    return [dict(r) for r in frame.to_dict(orient="records")]
