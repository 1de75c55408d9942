"""What a retrain trains on, or why it does not run: the pure decision behind the retrain flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from driftloop.core.gates import ALL, RECENT

Base = Literal["snapshot", "source"]


@dataclass(frozen=True)
class SourceCheck:
    """The champion's data source as the retrain found it.

    Attributes:
        changed: True when its content hash differs from the one recorded on the champion; None when it could
            not be read here (moved, or on another machine): the stored snapshot is used then.
        note: What was found, for the decision record.
    """

    changed: bool | None
    note: str


@dataclass(frozen=True)
class RetrainPlan:
    """Whether to retrain, on what, and where the candidate must prove itself.

    Attributes:
        run: False: skip (``reason`` says why), the episode waits for labels.
        base: ``snapshot``: the champion's stored training snapshot; ``source``: its data source, which changed.
        new_labels: Labelled rows the champion was not trained on, added to the base.
        improve_on: The holdout segment where the candidate must be significantly better.
        reason: The decision in a sentence.
    """

    run: bool
    base: Base
    new_labels: int
    improve_on: str
    reason: str


def plan_retrain(version: str, new_labels: int, source: SourceCheck) -> RetrainPlan:
    """Retrain when there is something new to learn from: new labelled rows, or a changed data source."""
    if new_labels < 0:
        raise ValueError(f"new_labels must be ≥ 0, got {new_labels}")
    labels = f"{new_labels} new labelled row{'s' if new_labels != 1 else ''}"
    if source.changed:
        with_labels = f" plus {labels}" if new_labels else ""
        return RetrainPlan(
            True, "source", new_labels, RECENT if new_labels else ALL,
            f"the training data source changed since v{version} ({source.note}): retraining on it{with_labels}",
        )  # fmt: skip
    if new_labels:
        return RetrainPlan(
            True, "snapshot", new_labels, RECENT, f"retraining on v{version}'s training snapshot plus {labels}"
        )
    return RetrainPlan(
        False, "snapshot", 0, RECENT,
        f"no new labelled data since v{version}: retraining cannot help yet ({source.note})",
    )  # fmt: skip
