"""Seeded traffic scenarios built from a feature frame, so the demo and the tests replay the same windows.

The bundled churn snapshot has no time order, so drift is staged by resampling rows:

* ``normal_traffic``: rows as they are.
* ``new_customers``: a segment shift; the business suddenly acquires many new customers (``tenure <= 12``).
* ``price_increase``: monthly charges up by ``factor``; total charges scaled alike so the two stay consistent.
* ``concept_drift_labels``: features unchanged, outcomes changed for long-standing customers, so a model's
  accuracy drops while a feature-drift check sees nothing.
* ``competitor_offer_labels``: a learnable change of the relation to the label: a competitor's fibre offer makes
  customers on DSL leave, whatever else they look like. A model trained on these labels can learn it.
* ``random_labels``: outcomes that carry no information (a broken label feed): nothing to learn.
* ``longer_tenure_reference``: the demo's training data, mostly longer-tenure customers, against which the
  new-customer window clearly drifts.

Column names default to the churn schema's and are checked up front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from driftloop.errors import DatasetError

__all__ = [
    "INTERNET_SERVICE",
    "MONTHLY_CHARGES",
    "NEW_CUSTOMER_MAX_TENURE",
    "TENURE",
    "TOTAL_CHARGES",
    "competitor_offer_labels",
    "concept_drift_labels",
    "longer_tenure_reference",
    "new_customers",
    "normal_traffic",
    "price_increase",
    "random_labels",
]

TENURE = "tenure"
MONTHLY_CHARGES = "monthly_charges"
TOTAL_CHARGES = "total_charges"
INTERNET_SERVICE = "internet_service"
NEW_CUSTOMER_MAX_TENURE = 12  # months; customers at or below are "new"
CHURNED, STAYED = "Yes", "No"


def normal_traffic(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` rows drawn with replacement from ``frame``, unchanged."""
    return _resample(frame, rows, seed, "normal_traffic")


def new_customers(
    frame: pd.DataFrame,
    rows: int,
    seed: int,
    *,
    tenure: str = TENURE,
    max_tenure: float = NEW_CUSTOMER_MAX_TENURE,
) -> pd.DataFrame:
    """``rows`` rows drawn with replacement from the customers with ``tenure <= max_tenure``."""
    _require(frame, [tenure], "new_customers")
    segment = frame[frame[tenure] <= max_tenure]
    if segment.empty:
        raise DatasetError(f"new_customers: no row has {tenure} <= {max_tenure}, so there is no one to draw from")
    return _resample(segment, rows, seed, "new_customers")


def price_increase(
    frame: pd.DataFrame,
    rows: int,
    seed: int,
    factor: float = 1.3,
    *,
    monthly_charges: str = MONTHLY_CHARGES,
    total_charges: str = TOTAL_CHARGES,
) -> pd.DataFrame:
    """Normal traffic whose monthly and total charges are multiplied by ``factor`` (rounded to cents).

    Both are scaled, as if the new prices had always applied, so ``total ≈ monthly × tenure`` still holds and
    the shift is in the price level, not in an impossible combination. Missing totals stay missing.
    """
    if not factor > 0:
        raise DatasetError(f"price_increase: factor must be positive, got {factor}")
    _require(frame, [monthly_charges, total_charges], "price_increase")
    window = _resample(frame, rows, seed, "price_increase")
    for column in (monthly_charges, total_charges):
        window[column] = (pd.to_numeric(window[column]) * factor).round(2)
    return window


def concept_drift_labels(
    frame: pd.DataFrame,
    labels: pd.Series,
    seed: int,
    flip: float = 0.5,
    *,
    tenure: str = TENURE,
    min_tenure: float = NEW_CUSTOMER_MAX_TENURE,
    churned: str = CHURNED,
) -> pd.Series:
    """New labels for ``frame``'s rows, with features untouched: long-standing customers now churn more.

    Among customers with ``tenure > min_tenure`` (the ones a model trusts to stay), each one not labelled
    ``churned`` becomes ``churned`` with probability ``flip``, say after a competitor's offer. Only a check on
    labelled outcomes can see this change.
    """
    if not 0 <= flip <= 1:
        raise DatasetError(f"concept_drift_labels: flip must be in [0, 1], got {flip}")
    _require(frame, [tenure], "concept_drift_labels")
    if len(labels) != len(frame) or not labels.index.equals(frame.index):
        raise DatasetError("concept_drift_labels: labels must have the same index as the frame, row for row")
    segment = (frame[tenure] > min_tenure).to_numpy() & (labels != churned).to_numpy()
    draws = np.random.default_rng(seed).random(len(frame)) < flip
    changed = labels.copy()
    changed[segment & draws] = churned
    return changed


def competitor_offer_labels(
    frame: pd.DataFrame,
    seed: int,
    noise: float = 0.1,
    *,
    internet_service: str = INTERNET_SERVICE,
    targeted: str = "DSL",
    churned: str = CHURNED,
    stayed: str = STAYED,
) -> pd.Series:
    """Outcomes after a competitor's fibre offer: customers on ``targeted`` internet leave, the others stay.

    Each outcome is then flipped with probability ``noise``. The relation to the label is new (a model trained
    before the offer believes fibre customers are the ones who leave) and learnable from these labels.
    """
    if not 0 <= noise < 0.5:
        raise DatasetError(f"competitor_offer_labels: noise must be in [0, 0.5), got {noise}")
    _require(frame, [internet_service], "competitor_offer_labels")
    leaves = (frame[internet_service] == targeted).to_numpy()
    flipped = np.random.default_rng(seed).random(len(frame)) < noise
    return pd.Series(np.where(leaves ^ flipped, churned, stayed), index=frame.index, name="churn")


def random_labels(frame: pd.DataFrame, seed: int, classes: Sequence[str] = (STAYED, CHURNED)) -> pd.Series:
    """One class drawn uniformly at random for each row: labels that carry no information."""
    if len(classes) < 2:
        raise DatasetError(f"random_labels: need at least two classes, got {list(classes)}")
    drawn = np.random.default_rng(seed).choice(np.asarray(classes, dtype=object), size=len(frame))
    return pd.Series(drawn, index=frame.index, name="churn")


def longer_tenure_reference(
    frame: pd.DataFrame,
    seed: int,
    share_new: float = 0.1,
    *,
    tenure: str = TENURE,
    max_tenure: float = NEW_CUSTOMER_MAX_TENURE,
) -> pd.DataFrame:
    """The demo's reference: mostly longer-tenure customers.

    Every customer with ``tenure > max_tenure`` plus a seeded subset of the new ones, so that new customers make
    up ``share_new`` of the result (fewer if there are not enough). Rows keep their order; the index is reset.
    """
    if not 0 <= share_new < 1:
        raise DatasetError(f"longer_tenure_reference: share_new must be in [0, 1), got {share_new}")
    _require(frame, [tenure], "longer_tenure_reference")
    is_new = (frame[tenure] <= max_tenure).to_numpy()
    older = np.flatnonzero(~is_new)
    newer = np.flatnonzero(is_new)
    if older.size == 0:
        raise DatasetError(f"longer_tenure_reference: no row has {tenure} > {max_tenure}")
    wanted = min(newer.size, round(older.size * share_new / (1 - share_new)))
    picked = np.random.default_rng(seed).choice(newer, size=wanted, replace=False)
    keep = np.sort(np.concatenate([older, picked]))
    return frame.iloc[keep].reset_index(drop=True)


def _resample(frame: pd.DataFrame, rows: int, seed: int, scenario: str) -> pd.DataFrame:
    if rows < 1:
        raise DatasetError(f"{scenario}: rows must be at least 1, got {rows}")
    if frame.empty:
        raise DatasetError(f"{scenario}: the frame has no rows to draw from")
    picked = np.random.default_rng(seed).integers(0, len(frame), size=rows)
    return frame.iloc[picked].reset_index(drop=True)


def _require(frame: pd.DataFrame, columns: Sequence[str], scenario: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{scenario} needs column(s) {missing}, which the frame lacks (it has {list(frame.columns)})"
        )
