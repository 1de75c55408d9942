"""The rules a feature's values follow, row by row: one place for a snapshot's validation and batch scoring.

A missing value where the feature is not nullable; a category outside a declared list that refuses others; a
value that is not a number; a number that is infinite or beyond float32's range (the model is fed float32, where
it would become infinite); a binary feature other than 0/1; a number outside [min, max]. Each rule gives the
rows that break it; how that is reported (a count and examples for a snapshot, a reason per row for scoring) is
the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from driftloop.core.features import feature_numbers
from driftloop.core.schema import Feature, FeatureKind
from driftloop.core.task import FLOAT32_MAX


class Rule(StrEnum):
    MISSING = "missing"
    UNLISTED = "not one of the declared categories"
    NOT_A_NUMBER = "not a number"
    NOT_FINITE = "not a finite number within float32 range"
    NOT_BINARY = "not 0 or 1 (or true/false)"
    BELOW_MIN = "below min"
    ABOVE_MAX = "above max"


@dataclass(frozen=True)
class Broken:
    """A rule and the rows (a boolean mask over the column) whose value breaks it."""

    rule: Rule
    rows: np.ndarray

    def reason(self, feature: Feature) -> str:
        """``tenure: below min 0``: the rule as one row's reason.

        A binary feature's text (``yes``) is said as what the feature takes, not as "not a number".
        """
        rule = Rule.NOT_BINARY if self.rule is Rule.NOT_A_NUMBER and feature.kind is FeatureKind.BINARY else self.rule
        bound = {Rule.BELOW_MIN: feature.min, Rule.ABOVE_MAX: feature.max}.get(rule)
        return f"{feature.name}: {rule}" + ("" if bound is None else f" {bound:g}")


def broken_rules(values: pd.Series, feature: Feature, numbers: pd.Series | None = None) -> list[Broken]:
    """Every rule of ``feature`` and the rows of ``values`` that break it, in the order they are reported.

    ``numbers``: the column already through ``feature_numbers``, when the caller has it. A rule is listed even when no
    row breaks it (its mask is all False).
    """
    if feature.is_categorical and feature.refuses_unlisted:
        missing, unlisted = _missing_and_unlisted(values, feature.categories or ())
        return [*([] if feature.nullable else [Broken(Rule.MISSING, missing)]), Broken(Rule.UNLISTED, unlisted)]
    missing = values.isna().to_numpy()
    broken: list[Broken] = []
    if not feature.nullable:
        broken.append(Broken(Rule.MISSING, missing))
    if feature.is_categorical:
        return broken
    numbers = feature_numbers(values, feature) if numbers is None else numbers
    present = numbers.notna().to_numpy()
    numeric = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    broken.append(Broken(Rule.NOT_A_NUMBER, ~missing & ~present))
    with np.errstate(invalid="ignore"):
        finite = present & (np.abs(numeric) <= FLOAT32_MAX)
        broken.append(Broken(Rule.NOT_FINITE, present & ~finite))
        # The rules below judge finite numbers only: an infinite value breaks one rule, not three.
        if feature.kind is FeatureKind.BINARY:
            broken.append(Broken(Rule.NOT_BINARY, finite & (numeric != 0) & (numeric != 1)))
        if feature.min is not None:
            broken.append(Broken(Rule.BELOW_MIN, finite & (numeric < feature.min)))
        if feature.max is not None:
            broken.append(Broken(Rule.ABOVE_MAX, finite & (numeric > feature.max)))
    return broken


def _missing_and_unlisted(values: pd.Series, categories: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(missing values, present values outside ``categories``), compared as str(value).

    str(value) is the text the model is fed (``core.features.to_model_frame``). Only the rows that are not listed
    as they are are looked at again: a column whose values are all listed, the usual case, is read once.
    """
    listed = [str(c) for c in categories]
    outside: np.ndarray = ~values.isin(listed).to_numpy()
    missing = np.zeros(len(values), dtype=bool)
    if outside.any():
        missing[outside] = values[outside].isna().to_numpy()
        outside &= ~missing
    if outside.any():  # a value that is not text (12 for "12") may still be listed as text
        outside[outside] = ~values[outside].astype(str).isin(listed).to_numpy()
    return missing, outside
