"""A retrain is watched against its recent training rows: traffic like them is no drift, traffic like its base is.

A world where the truth is known: six features, three of which move by one standard deviation in the recent
traffic. Five seeds each way, on the drift check's own statistics (``core.drift``).
"""

from __future__ import annotations

from pathlib import Path

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


def test_a_retrain_watched_against_its_recent_rows_is_held_to_its_figures_on_them(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    """Its labels and label-free estimate are judged against the recent holdout rows its calibration was fitted on.

    The whole holdout, mostly the base file's traffic, would hold the new traffic to another bar.
    """
    from driftloop.core import lineage, scenarios
    from driftloop.core.evaluation import compute_metrics
    from driftloop.core.features import encode_target, to_model_frame, with_canonical_target
    from driftloop.core.gates import GatePolicy
    from driftloop.core.performance_estimate import fit_calibration
    from flows.train import _truth_baseline
    from tasks.data import Snapshot
    from tasks.model import Evaluation, drift_reference_rows, evaluate_on_recent_rows, fit_candidate

    base = churn_frame.sample(2000, random_state=0).reset_index(drop=True)
    task = churn_schema.task
    for recent_count, watched_recent in ((800, True), (100, False)):
        recent = scenarios.new_customers(churn_frame, recent_count, seed=1)
        frame = with_canonical_target(pd.concat([base, recent], ignore_index=True), churn_schema)
        snapshot = Snapshot(Path("snapshot.csv"), frame, churn_schema, "hash", len(base))
        split = split_holdout(frame, churn_schema, 0.2, 42)
        watched = drift_reference_rows(split, len(base))
        assert (len(watched.train) < len(split.train)) is watched_recent
        candidate = fit_candidate.fn(split, churn_schema, "hist_gradient_boosting", None, 42)
        y_true = encode_target(split.holdout["churn"], churn_schema)
        scores = task.scores(candidate.pipeline.predict_proba(to_model_frame(split.holdout, churn_schema)))
        whole = Evaluation(compute_metrics(y_true, scores, task), scores, {}, fit_calibration(task, scores, y_true))
        monitored = (
            evaluate_on_recent_rows.fn(candidate, whole, split, churn_schema, len(base), 42, False)
            if watched_recent
            else whole
        )
        tags = _truth_baseline(whole, monitored, split, snapshot, GatePolicy(improve_on="recent"))
        if watched_recent:
            recent_rows = int((split.holdout.index >= len(base)).sum())
            assert tags[f"{lineage.TRUTH_BASELINE}rows"] == str(recent_rows)
            assert float(tags[f"{lineage.TRUTH_BASELINE}accuracy"]) == pytest.approx(
                monitored.metrics["accuracy"], abs=1e-6
            )
        else:
            assert tags == {}  # too few recent rows: watched against every row, held to the whole holdout
