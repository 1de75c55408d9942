"""Which rows a retrain fits on once the truth changed: all of them, or the recent labelled rows alone.

After a changed truth the old rows' labels contradict the new ones, and a fit on both learns the new truth only
partly. A fit on the recent rows alone learns it, but from fewer rows, and loses what the old rows still teach
where the truth did not change. Neither is right for every change, so both are fitted without a quarter of the
recent training rows, and the recent-only fit is kept only when it is significantly better on that quarter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from driftloop.core import lineage
from driftloop.core.features import encode_target
from driftloop.core.gates import SegmentComparison
from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import Split, after_base, split_holdout
from driftloop.errors import DatasetError

VALIDATION_FRACTION = 0.25  # of the recent training rows, held out of both fits to choose between them
VALIDATION = "recent rows held out of both fits"
RECENT_ONLY = "recent"
ALL_ROWS = "all"


@dataclass(frozen=True)
class WindowChoice:
    """The rows the candidate is fitted on, and why (``reason``, a sentence for the gate's record)."""

    recent_only: bool
    reason: str

    def tags(self) -> dict[str, str]:
        return {
            lineage.TRAINING_WINDOW: RECENT_ONLY if self.recent_only else ALL_ROWS,
            lineage.TRAINING_WINDOW_REASON: self.reason,
        }


def recent_training_rows(train: pd.DataFrame, base_rows: int) -> pd.DataFrame:
    """The training rows a retrain added to its base snapshot: those after the base's ``base_rows``."""
    return train[after_base(train.index, base_rows)]


def validation_split(recent_train: pd.DataFrame, schema: DatasetSchema, seed: int) -> Split | None:
    """The recent training rows parted into rows to fit and rows to choose on; None when too few to part.

    The seed differs from the snapshot's split, so the part held out is not the rows a hash already sorted.
    """
    try:
        return split_holdout(recent_train, schema, VALIDATION_FRACTION, seed + 1)
    except DatasetError:  # a class with too few rows to have some on each side
        return None


def missing_classes(recent_train: pd.DataFrame, schema: DatasetSchema) -> list[str]:
    """A classifier's classes the recent training rows hold no row of: a fit on them alone could not answer them."""
    task = schema.task
    if not task.is_classifier:
        return []
    present = set(np.unique(encode_target(recent_train[schema.target.name], schema)).tolist())
    return [str(name) for index, name in enumerate(task.classes) if index not in present]


def lacking(classes: list[str]) -> WindowChoice:
    shown = ", ".join(repr(name) for name in classes[:5]) + (", …" if len(classes) > 5 else "")
    return WindowChoice(False, f"fitted on all rows: the recent training rows hold no row of class {shown}")


def too_few_rows(recent_train_rows: int) -> WindowChoice:
    return WindowChoice(
        False,
        f"fitted on all rows: the {recent_train_rows:,} recent training rows are too few to hold "
        f"{VALIDATION_FRACTION:.0%} out of a fit on them alone",
    )


def choose_window(comparison: SegmentComparison) -> WindowChoice:
    """The recent rows alone when their fit (the comparison's candidate) is significantly better than all rows'."""
    difference = comparison.difference
    if difference is None:
        return WindowChoice(
            False, f"fitted on all rows: a fit on the recent rows alone was not compared, {comparison.note}"
        )
    if difference.significantly_better:
        return WindowChoice(
            True,
            f"fitted on the recent rows alone: on {comparison.rows:,} {VALIDATION}, a fit on them alone against one on "
            f"all rows: {difference.describe()}",
        )
    return WindowChoice(
        False,
        f"fitted on all rows: on {comparison.rows:,} {VALIDATION}, a fit on the recent rows alone was not "
        f"significantly better: {difference.describe()}",
    )


def learnt_a_changed_truth(tags: Mapping[str, str]) -> bool:
    """Whether a version is a retrain after a changed truth (it records the rows it chose to fit on)."""
    return lineage.TRAINING_WINDOW in tags


def rows_of_its_truth(index: pd.Index, base_rows: int | None, changed_truth: bool) -> np.ndarray:
    """Which of a version's snapshot rows (by ``index``) hold the truth it learnt.

    All of them, but for a retrain after a changed truth whose base is recorded (``base_rows``): its recent rows.
    Its earlier rows were labelled by the old truth, on which a model of the old data wins: judged there, a run on
    the original file was promoted over a retrain that had learnt the change (trial 12).
    """
    if not changed_truth or base_rows is None:
        return np.ones(len(index), dtype=bool)
    return after_base(index, base_rows)
