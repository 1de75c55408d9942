"""How far along a fit is, read from the estimator as it fits: observed at every round of real fits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from driftloop.core.fit_progress import fit_progress


def _data(seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    return x, (x[:, 0] + 0.5 * rng.normal(size=rows) > 0).astype(np.int64)


@pytest.mark.parametrize("cls", [HistGradientBoostingClassifier, HistGradientBoostingRegressor])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hist_gradient_boosting_says_each_finished_iteration_as_it_fits(cls: type, seed: int) -> None:
    x, y = _data(seed)
    seen: list[str | None] = []

    def scorer(estimator: Any, x_part: np.ndarray, y_part: np.ndarray) -> float:
        # Called by the fit itself at every iteration (early stopping's scoring), so mid-fit for certain.
        seen.append(fit_progress(pipeline))
        return 0.0

    model = cls(max_iter=12, early_stopping=True, n_iter_no_change=100, scoring=scorer, random_state=seed)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", model)])
    assert fit_progress(pipeline) is None  # not begun
    pipeline.fit(x, y)

    said = [s for s in seen if s is not None]
    # Scored on the training and the validation rows, so each iteration is seen twice, in order.
    assert list(dict.fromkeys(said)) == [f"{k} of at most 12 iterations" for k in range(1, 13)]
    assert said == sorted(said, key=lambda s: int(s.split()[0]))
    assert seen[: len(seen) - len(said)] == [None] * (len(seen) - len(said))  # the baseline scores, before any
    assert fit_progress(pipeline) == "12 of at most 12 iterations"


def test_hist_gradient_boosting_without_early_stopping_and_stopped_early() -> None:
    x, y = _data(3)
    plain = HistGradientBoostingClassifier(max_iter=7, early_stopping=False).fit(x, y)
    assert fit_progress(plain) == "7 of 7 iterations"
    # Labels that nothing predicts: early stopping ends the fit well before its 200 iterations.
    noise = np.random.default_rng(3).integers(0, 2, len(y))
    stopped = HistGradientBoostingClassifier(max_iter=200, early_stopping=True, n_iter_no_change=3).fit(x, noise)
    assert stopped.n_iter_ < 200
    assert fit_progress(stopped) == f"{stopped.n_iter_} of at most 200 iterations"


@pytest.mark.parametrize("cls", [GradientBoostingClassifier, GradientBoostingRegressor])
def test_gradient_boosting_says_each_finished_stage_as_it_fits(cls: type) -> None:
    x, y = _data(4)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", cls(n_estimators=9, random_state=0))])
    seen: list[str | None] = []

    def monitor(stage: int, estimator: Any, state: dict[str, Any]) -> bool:  # scikit-learn's hook, after each stage
        seen.append(fit_progress(pipeline))
        return False

    pipeline.fit(x, y, model__monitor=monitor)
    assert seen == [f"{k} of 9 stages" for k in range(1, 10)]
    early = cls(n_estimators=50, n_iter_no_change=2, random_state=0)
    assert fit_progress(early) is None
    early.fit(x, np.random.default_rng(5).integers(0, 2, len(y)))
    assert fit_progress(early) == f"{early.n_estimators_} of at most 50 stages"


@pytest.mark.parametrize("model", [RandomForestClassifier(n_estimators=5), LogisticRegression()])
def test_a_model_that_keeps_no_rounds_says_nothing(model: Any) -> None:
    x, y = _data(6)
    assert fit_progress(model.fit(x, y)) is None
    assert fit_progress(Pipeline([("model", model)])) is None
