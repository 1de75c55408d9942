"""A first schema for a user's snapshot, read off its values: a draft to check and edit, not a contract to trust.

Every column but the target becomes a feature unless it cannot be one, and then the notes say why and what to do:

    0/1 numbers or booleans      binary (also True/False with blanks, and pandas' words for them)
    other numbers                numeric (the observed range goes in the description, not in min/max: a rule
                                 there would refuse tomorrow's data for drifting)
    text, ≥ 95% of it numbers    numeric, with a note naming the values that are not (training refuses them)
    text                         categorical, the observed values as its categories
    text, over max_categories    categorical, ``categories: learn``: the training snapshot's most frequent values;
                                 the rest and unseen values go to an other bucket (``unseen: other``)
    text, nearly all distinct    left out: an identifier
    whole numbers, all distinct  numeric, with a note: an identifier?
    dates, times                 left out: there is no date kind; derive numbers from them in the snapshot
    nothing but missing values   left out

A column with a missing value is nullable. The task is guessed from the target unless it is given: two values make
a binary classifier, numbers with many values or fractions a regression, and anything else a multiclass classifier
(its classes in sorted order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from driftloop.core.features import only_booleans
from driftloop.core.schema import DatasetSchema, Feature, FeatureKind, Target, Unseen
from driftloop.core.task import TaskKind
from driftloop.core.validation import single_row_classes
from driftloop.errors import ConfigError

DEFAULT_MAX_CATEGORIES = 100
DEFAULT_MIN_ROWS = 100
# A target with more distinct numbers than this (or any fractional one) is a quantity, not a class label.
MAX_CLASS_LIKE_NUMBERS = 20
# Spellings of a positive class, lowercased: the other class of the pair is the negative one.
POSITIVE_SPELLINGS = ("1", "1.0", "true", "yes", "y", "positive", "pos")
# ISO dates and date-times ("2024-03-01", "2024-03-01T10:00:00", "2024/03/01 10:00"): the common export formats.
_DATE_LIKE = re.compile(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?)?$")
_DATE_SHARE = 0.95  # of the non-missing values, for a text column to count as dates
_IDENTIFIER_SHARE = 0.9  # distinct values per non-missing value, for a text column to count as an identifier
_MOSTLY_NUMBERS = 0.95  # the share of a text column's values that parse as numbers for it to be inferred numeric
_IDENTIFIER_MIN_ROWS = 50  # below this, whole numbers all distinct are too likely by chance to mention


@dataclass(frozen=True)
class InferredSchema:
    """The draft schema and what to check in it: columns left out and why, guesses that may be wrong."""

    schema: DatasetSchema
    notes: tuple[str, ...]


def infer_schema(
    frame: pd.DataFrame,
    target: str,
    name: str,
    *,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    task: TaskKind | None = None,
) -> InferredSchema:
    """The schema ``frame``'s values suggest, with ``target`` as the label column.

    Raises:
        ConfigError: ``target`` is not a column, has fewer than two distinct values, does not fit ``task`` (when
            given), or no column can be a feature.
    """
    if max_categories < 1:
        raise ConfigError(f"max_categories must be at least 1, got {max_categories}")
    if target not in frame.columns:
        columns = ", ".join(repr(str(c)) for c in frame.columns[:20])
        raise ConfigError(f"the data has no column {target!r} to predict; its columns: {columns}")
    target_spec, notes = _infer_target(frame[target], target, task)
    features: list[Feature] = []
    column_notes: list[str] = []
    for column in frame.columns:
        if column == target:
            continue
        feature, note = _infer_feature(frame[column], str(column), max_categories)
        if feature is not None:
            features.append(feature)
        if note:
            column_notes.append(note)
    if not features:
        raise ConfigError(
            f"no column of the data can be a feature: {'; '.join(column_notes) or 'it has only the target'}"
        )
    notes += column_notes
    schema = DatasetSchema(
        name=name,
        description=f"inferred from {len(frame)} rows; check the kinds, categories and "
        + _TARGET_CHECK[target_spec.kind],
        target=target_spec,
        features=tuple(features),
        min_rows=max(2, min(DEFAULT_MIN_ROWS, len(frame))),
    )
    return InferredSchema(schema=schema, notes=tuple(notes))


_TARGET_CHECK = {
    TaskKind.BINARY: "the positive class",
    TaskKind.MULTICLASS: "the classes",
    TaskKind.REGRESSION: "the target's kind",
}


def _infer_target(labels: pd.Series, name: str, task: TaskKind | None) -> tuple[Target, list[str]]:
    notes: list[str] = []
    present = labels.dropna()
    if len(present) < len(labels):
        notes.append(
            f"target {name!r}: {len(labels) - len(present)} row(s) have no label; training refuses a snapshot "
            "with missing labels: drop those rows first"
        )
    counts = present.astype(str).value_counts()
    if len(counts) < 2:
        found = f"only {counts.index[0]!r}" if len(counts) else "no label at all"
        raise ConfigError(f"target {name!r} needs two distinct values to learn from; it has {found}")
    guessed = TaskKind.BINARY if len(counts) == 2 else TaskKind.REGRESSION if _is_quantity(present) else None
    kind = task or guessed or TaskKind.MULTICLASS
    if kind is TaskKind.REGRESSION:
        if not pd.api.types.is_numeric_dtype(present.dtype) or pd.api.types.is_bool_dtype(present.dtype):
            raise ConfigError(f"target {name!r} is not numbers, so it cannot be a regression target")
        return Target(name=name, kind=kind), notes
    if (single := single_row_classes(present.astype(str))) is not None:
        notes.append(f"target {name!r}: {single}; training refuses this data")
    if kind is TaskKind.MULTICLASS:
        if len(counts) < 3:
            raise ConfigError(f"target {name!r} has {len(counts)} classes: a multiclass target needs three or more")
        if task is None:
            notes.append(f"target {name!r}: {len(counts)} classes, so a multiclass classifier; pass --task to choose")
        return Target(name=name, kind=kind, classes=tuple(sorted(counts.index))), notes
    if len(counts) != 2:
        raise ConfigError(f"target {name!r} has {len(counts)} classes: a binary target needs exactly two")
    classes = sorted(counts.index)
    positive = _guess_positive(counts)
    negative = classes[0] if classes[1] == positive else classes[1]
    if positive.lower() not in POSITIVE_SPELLINGS:
        notes.append(
            f"target {name!r}: positive class guessed as {positive!r}, the rarer one ({counts[positive]} of "
            f"{len(present)} rows); if it is {negative!r}, change target.positive"
        )
    return Target(name=name, classes=(negative, positive), positive=positive), notes


def _is_quantity(values: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return False
    numbers = values.astype("float64")
    return bool(numbers.nunique() > MAX_CLASS_LIKE_NUMBERS or (numbers % 1 != 0).any())


def _guess_positive(counts: pd.Series) -> str:
    """The class spelled like a positive one (``yes``, ``1``, ``true``...); otherwise the rarer class."""
    for value in counts.index:
        if str(value).lower() in POSITIVE_SPELLINGS:
            return str(value)
    rarer = counts.sort_values(kind="stable").index[0]
    return str(rarer)


def _infer_feature(values: pd.Series, name: str, max_categories: int) -> tuple[Feature | None, str | None]:
    present = values.dropna()
    nullable = len(present) < len(values)
    if present.empty:
        return None, f"{name!r} left out: every value is missing"
    if pd.api.types.is_datetime64_any_dtype(values.dtype) or _looks_like_dates(present):
        return None, (
            f"{name!r} left out: dates and times have no kind in a schema; derive numbers from them in the "
            "snapshot (days since an event, day of week, hour) and infer again"
        )
    if pd.api.types.is_bool_dtype(values.dtype) or _only_zero_and_one(present) or only_booleans(present):
        return Feature(name=name, kind=FeatureKind.BINARY, nullable=nullable), None
    if pd.api.types.is_numeric_dtype(values.dtype):
        low, high = float(present.min()), float(present.max())
        description = f"observed {_number(low)} to {_number(high)}"
        feature = Feature(name=name, kind=FeatureKind.NUMERIC, nullable=nullable, description=description)
        if _whole_and_all_distinct(present):
            # Kept (an amount in whole units can be distinct in every row too), but worth a look.
            return feature, (
                f"{name!r} kept as numeric, but every one of its {len(present)} values is a different whole number: "
                "an identifier? If it is, remove it from the schema (a model that learns ids does not generalise)"
            )
        return feature, None
    parsed = _mostly_numbers(present)
    if parsed is not None:
        stray = parsed.isna()
        numbers = parsed.dropna()
        description = f"observed {_number(float(numbers.min()))} to {_number(float(numbers.max()))}"
        shown = ", ".join(repr(v) for v in pd.unique(present[stray].astype(str))[:3])
        return Feature(name=name, kind=FeatureKind.NUMERIC, nullable=nullable, description=description), (
            f"{name!r} inferred numeric: {len(numbers):,} of {len(present):,} values are numbers, "
            f"{int(stray.sum()):,} are not (e.g. {shown}); training refuses those rows until they are fixed "
            "(or empty, the feature then nullable). If the column is a category, declare it categorical"
        )
    text = present.astype(str)
    distinct = text.value_counts()
    if len(distinct) > max_categories:
        if len(distinct) >= _IDENTIFIER_SHARE * len(text):
            return None, (
                f"{name!r} left out: {len(distinct)} distinct values in {len(text)} rows, an identifier? (if it is "
                "a feature, declare it categorical with 'categories: learn')"
            )
        feature = Feature(name=name, kind=FeatureKind.CATEGORICAL, nullable=nullable, learn=True,
                          max_categories=max_categories, unseen=Unseen.OTHER)  # fmt: skip
        return feature, (
            f"{name!r}: {len(distinct)} distinct values, so 'categories: learn': training keeps the "
            f"{max_categories} most frequent, the others and values never seen go to an other bucket "
            "('unseen: error' refuses them instead)"
        )
    categories = tuple(sorted(distinct.index))
    return Feature(name=name, kind=FeatureKind.CATEGORICAL, nullable=nullable, categories=categories), None


def _mostly_numbers(present: pd.Series) -> pd.Series | None:
    """A text column as numbers (NaN where a value is not one), when nearly all of them are (stray text); else None."""
    if pd.api.types.is_numeric_dtype(present.dtype):
        return None
    parsed = pd.to_numeric(present.astype(str), errors="coerce")
    share = 1 - float(parsed.isna().mean())
    return parsed if _MOSTLY_NUMBERS <= share < 1 else None


def _whole_and_all_distinct(present: pd.Series) -> bool:
    """Whole numbers, each in one row only, in enough rows for that to mean something."""
    if len(present) < _IDENTIFIER_MIN_ROWS or not bool((present % 1 == 0).all()):
        return False
    return bool(present.nunique() == len(present))


def _looks_like_dates(present: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(present.dtype):
        return False
    text = present.astype(str).str.strip()
    return bool(text.str.match(_DATE_LIKE).mean() >= _DATE_SHARE)


def _only_zero_and_one(present: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(present.dtype) and bool(present.isin([0, 1]).all())


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.6g}"
