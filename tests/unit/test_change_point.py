"""core.change_point: the row from which a model's errors got worse, found when the truth changed and only then."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.change_point import describe, since_change, worse_from
from driftloop.core.schema import DatasetSchema
from driftloop.core.task import Task, TaskKind
from driftloop.io.prediction_store import Feedback, open_prediction_log
from tasks.retrain import collect_new_labels
from tests.support.prediction_log import T0, make_event

MULTICLASS = Task(TaskKind.MULTICLASS, ("bronze", "silver", "gold", "platinum"))
REGRESSION = Task(TaskKind.REGRESSION)
SEEDS = range(10)


def _wrong(rng: np.random.Generator, rates_and_rows: list[tuple[float, int]]) -> np.ndarray:
    return np.concatenate([(rng.random(rows) < rate).astype(float) for rate, rows in rates_and_rows])


@pytest.mark.parametrize(("before", "after"), [(1000, 1000), (300, 150), (150, 2000)])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_changed_truth_is_found_where_it_changed(seed: int, before: int, after: int) -> None:
    """Trial 14: accuracy 0.9 on the old truth, 0.14 after the flip."""
    errors = _wrong(np.random.default_rng(seed), [(0.1, before), (0.86, after)])
    point = worse_from(errors, min_rows=100)
    assert point is not None
    assert abs(point.index - before) <= 10
    assert point.before < 0.2 < 0.7 < point.after


@pytest.mark.parametrize("seed", SEEDS)
def test_a_smaller_change_is_found_on_enough_rows(seed: int) -> None:
    errors = _wrong(np.random.default_rng(seed), [(0.1, 1000), (0.25, 1000)])
    point = worse_from(errors, min_rows=100)
    assert point is not None
    assert abs(point.index - 1000) <= 200


@pytest.mark.parametrize("rows", [200, 600, 3000])
@pytest.mark.parametrize("seed", range(30))
def test_errors_that_did_not_change_keep_every_row(seed: int, rows: int) -> None:
    rng = np.random.default_rng(seed)
    assert worse_from(_wrong(rng, [(0.15, rows)]), min_rows=100) is None
    assert worse_from(rng.normal(0, 2, rows) ** 2, min_rows=100) is None  # a regressor's squared errors


@pytest.mark.parametrize("seed", SEEDS)
def test_rows_all_after_the_change_or_a_model_that_got_better_keep_every_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert worse_from(_wrong(rng, [(0.8, 1500)]), min_rows=100) is None  # changed before the first new label
    assert worse_from(_wrong(rng, [(0.5, 800), (0.1, 800)]), min_rows=100) is None


def test_too_few_rows_on_either_side_and_constant_errors_are_no_change() -> None:
    assert worse_from(np.r_[np.zeros(150), np.ones(40)], min_rows=100) is None
    assert worse_from(np.zeros(500), min_rows=100) is None
    with pytest.raises(ValueError, match="finite"):
        worse_from(np.array([0.0, np.nan]), min_rows=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_labelled_rows_served_before_the_change_are_left_out(seed: int) -> None:
    rng = np.random.default_rng(seed)
    actual = rng.choice(list(MULTICLASS.classes), 1200).astype(object)
    flipped = {"bronze": "platinum", "silver": "gold", "gold": "silver", "platinum": "bronze"}
    predicted = actual.copy()
    predicted[600:] = [flipped[a] for a in actual[600:]]  # the old truth's answers, wrong after the change
    noise = rng.random(1200) < 0.1
    predicted[noise] = rng.choice(list(MULTICLASS.classes), int(noise.sum()))
    kept, point = since_change(MULTICLASS, predicted, actual, min_rows=100)
    assert point is not None
    first = int(np.argmax(kept))
    assert abs(first - 600) <= 10
    assert kept[first:].all()
    assert describe(point, "accuracy").startswith("accuracy 0.")

    unchanged = rng.choice(list(MULTICLASS.classes), 1200).astype(object)
    kept, point = since_change(MULTICLASS, np.where(rng.random(1200) < 0.2, "gold", unchanged), unchanged, 100)
    assert point is None
    assert kept.all()


def test_a_regressor_s_row_logged_without_its_value_goes_with_its_neighbours() -> None:
    rng = np.random.default_rng(4)
    actual = rng.normal(50, 10, 800)
    predicted = (actual + np.r_[rng.normal(0, 1, 400), rng.normal(15, 5, 400)]).astype(object)
    predicted[[100, 500]] = None
    kept, point = since_change(REGRESSION, predicted, actual.astype(object), min_rows=50)
    assert point is not None
    assert abs(int(np.argmax(kept)) - 400) <= 5
    assert not kept[100]
    assert kept[500]
    assert describe(point, "rmse").startswith("RMSE ")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_retrain_after_a_changed_truth_collects_only_the_labels_served_since(tmp_path: Path, seed: int) -> None:
    """Trial 14: the labels since v1 were half old truth, so the retrain learnt the mixture (0.38 where 0.60 was
    reachable), and its weak recent accuracy then held every later label check to it."""
    schema = DatasetSchema.model_validate(
        {
            "name": "accounts",
            "target": {"name": "churn", "classes": ["No", "Yes"], "positive": "Yes"},
            "features": [
                {"name": "tenure", "kind": "numeric"},
                {"name": "contract", "kind": "categorical", "categories": ["Month-to-month", "One year", "Two year"]},
            ],
        }
    )
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    store = open_prediction_log(url)
    rng = np.random.default_rng(seed)
    try:
        events = [make_event(T0 + i, f"r{i}", seed=seed * 1000 + i) for i in range(400)]
        store.write(events)
        flip = {"No": "Yes", "Yes": "No"}
        store.write_feedback(
            "churn",
            [
                Feedback(e.request_id, 0, (flip[str(e.labels[0])] if (i >= 250) != (rng.random() < 0.1) else
                                           str(e.labels[0])))
                for i, e in enumerate(events)
            ],
        )  # fmt: skip
    finally:
        store.close()

    everything = collect_new_labels.fn(url, "churn", schema, None, tmp_path / "all.parquet")
    assert (everything.rows, everything.before_change, everything.change) == (400, 0, None)
    since = collect_new_labels.fn(url, "churn", schema, None, tmp_path / "since.parquet", True, 50)
    assert abs(since.before_change - 250) <= 10
    assert since.rows == 400 - since.before_change
    assert len(pd.read_parquet(tmp_path / "since.parquet")) == since.rows
    assert since.change is not None
    assert since.change.startswith("the champion's errors rose from 2026-09-21T14:1")
    assert since.latest == everything.latest  # the labels before the change are used up too
    # and counted as seen by the episode (trial 15: "1600 new labelled rows since the last retrain" after 800)
    assert since.used_up == everything.used_up == 400
