"""How far along a scikit-learn fit is, read from the estimator while it fits (for the fit's heartbeat).

Only estimators that keep each finished round on themselves as the fit goes can say it:
- HistGradientBoosting*: the predictors of each finished iteration, appended to ``_predictors`` (private, so read
  defensively: an estimator without it says nothing), out of ``max_iter``;
- GradientBoosting*: the trees of each finished stage, stored in ``estimators_``, out of ``n_estimators``.
Both may stop early when early stopping is on, hence "at most". A forest builds its trees out of sight, a linear
model iterates to convergence, a user's own estimator is unknown: they say nothing, and the heartbeat keeps to the
elapsed time.
"""

from __future__ import annotations

from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.pipeline import Pipeline


def fit_progress(model: object) -> str | None:
    """``37 of at most 100 iterations`` while (or after) ``model`` fits; None when it cannot say or has not begun.

    ``model`` may be a Pipeline: its last step is read.
    """
    if isinstance(model, Pipeline):
        model = model.steps[-1][1]
    if isinstance(model, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        finished = getattr(model, "_predictors", None)
        done = None if finished is None else len(finished)
        return _counted(done, model.max_iter, _hist_stops_early(model), "iterations")
    if isinstance(model, GradientBoostingClassifier | GradientBoostingRegressor):
        stages = getattr(model, "estimators_", None)
        done = None if stages is None else sum(1 for stage in stages if stage[0] is not None)
        return _counted(done, model.n_estimators, model.n_iter_no_change is not None, "stages")
    return None


def _hist_stops_early(model: HistGradientBoostingClassifier | HistGradientBoostingRegressor) -> bool:
    # Set at the start of fit; before that, "auto" means early stopping on more than 10,000 rows.
    decided = getattr(model, "do_early_stopping_", None)
    return bool(decided) if decided is not None else model.early_stopping in (True, "auto")


def _counted(done: int | None, total: int, early: bool, unit: str) -> str | None:
    if not done:
        return None
    return f"{done} of {'at most ' if early else ''}{total} {unit}"
