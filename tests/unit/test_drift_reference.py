"""A retrain is watched against its recent training rows: traffic like them is no drift, traffic like its base is.

A world where the truth is known: six features, three of which move by one standard deviation in the recent
traffic. Five seeds each way, on the drift check's own statistics (``core.drift``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.core.drift import build_profile, check_drift
from driftloop.core.drift_reference import MIN_REFERENCE_ROWS, reference_rows
from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import split_holdout

FEATURES = [f"x{i}" for i in range(6)]
MOVED = FEATURES[:3]
SCHEMA = DatasetSchema.model_validate(
    {
        "name": "world",
        "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
        "features": [{"name": name, "kind": "numeric"} for name in FEATURES],
    }
)
BASE_ROWS = 3000


def _rows(rows: int, seed: int, moved: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(0, 1, (rows, len(FEATURES))), columns=FEATURES)
    if moved:
        frame[MOVED] += 1.0
    frame["y"] = np.where(frame[FEATURES].sum(axis=1) + rng.normal(0, 1, rows) > 0, "yes", "no")
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_retrain_s_recent_rows_are_its_drift_reference(seed: int) -> None:
    snapshot = pd.concat([_rows(BASE_ROWS, seed, moved=False), _rows(1000, seed + 50, moved=True)], ignore_index=True)
    split = split_holdout(snapshot, SCHEMA, 0.2, 42)
    rows = reference_rows(split.train.index, BASE_ROWS)
    assert rows.sum() == (split.train.index >= BASE_ROWS).sum()  # the recent training rows, and only them

    def verdict(train: pd.DataFrame, moved: bool) -> str:
        profile = build_profile(train, FEATURES, [], seed=seed)
        return check_drift(profile, _rows(600, seed + 100, moved), drift_share=0.5).status

    # Watched against the rows it was retrained for: their traffic is no drift, the base's traffic is.
    assert verdict(split.train[rows], moved=True) == "no drift"
    assert verdict(split.train[rows], moved=False) == "drift"
    # The mix of both, as before trial 18: the traffic it was retrained for read as drift.
    assert verdict(split.train, moved=True) == "drift"


def test_a_first_training_or_a_retrain_with_few_recent_rows_is_watched_against_every_training_row() -> None:
    index = pd.Index(range(0, 1000, 2))  # a split's training rows: every other one of 1,000
    assert reference_rows(index, 1000).all()  # no recent row: a first training
    few = 2 * (MIN_REFERENCE_ROWS - 1)  # rows 1000 - few to 999 are recent: MIN_REFERENCE_ROWS - 1 training ones
    assert reference_rows(index, 1000 - few).all()
    enough = reference_rows(index, 1000 - 2 * MIN_REFERENCE_ROWS)
    assert enough.sum() == MIN_REFERENCE_ROWS
    assert enough.tolist() == (index >= 1000 - 2 * MIN_REFERENCE_ROWS).tolist()
