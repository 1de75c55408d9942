"""Check a snapshot against its schema and list every problem found, one line each."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from driftloop.core.schema import DatasetSchema, Feature, FeatureKind
from driftloop.core.task import TaskKind
from driftloop.errors import DatasetValidationError

_EXAMPLES = 3
_UNKNOWN_SHOWN = 5


def validate_snapshot(frame: pd.DataFrame, schema: DatasetSchema, dataset: str) -> None:
    """Raise if the snapshot breaks its schema.

    Raises:
        DatasetValidationError: with every problem ``find_problems`` reports.
    """
    problems = find_problems(frame, schema)
    if problems:
        raise DatasetValidationError(dataset, problems)


def find_problems(frame: pd.DataFrame, schema: DatasetSchema, min_rows: int | None = None) -> list[str]:
    """Every way the snapshot breaks the schema, one human-readable line each; empty when it is valid.

    Columns the schema does not mention are ignored. A column whose name appears more than once is reported
    once as duplicated and not checked further. ``min_rows`` replaces the schema's own minimum (a part of a
    snapshot, such as a retrain's recent rows, may be small).
    """
    problems: list[str] = []
    columns = pd.Index(frame.columns)
    duplicated = set(columns[columns.duplicated()])
    if duplicated:
        problems.append(f"duplicated column name(s): {_names(sorted(map(str, duplicated)))}")

    missing = [name for name in schema.feature_names if name not in columns]
    if missing:
        problems.append(f"missing feature column(s): {_names(missing)}")
    target = schema.target.name
    if target not in columns:
        problems.append(f"missing target column {target!r}")

    least = schema.min_rows if min_rows is None else min_rows
    if len(frame) < least:
        problems.append(f"only {len(frame)} row(s); the schema requires at least {least}")

    for feature in schema.features:
        if feature.name in columns and feature.name not in duplicated:
            problems.extend(_feature_problems(frame[feature.name], feature))
    if target in columns and target not in duplicated:
        problems.extend(_target_problems(frame[target], schema))
    return problems


def _feature_problems(values: pd.Series, feature: Feature) -> list[str]:
    column = f"column {feature.name!r}"
    problems: list[str] = []
    missing = values.isna()
    if not feature.nullable and missing.any():
        problems.append(
            f"{column}: {int(missing.sum())} missing value(s) but the feature is not nullable "
            f"(rows {_examples(values.index[missing])})"
        )
    if feature.is_categorical:
        if feature.learn and missing.all():
            problems.append(f"{column}: no values to learn its categories from")
        if feature.refuses_unlisted:
            unknown = _unknown_values(values, feature.categories or ())
            if unknown:
                problems.append(f"{column}: {unknown} outside the declared categories")
        return problems

    numbers, problem = _as_numbers(values)
    if problem:
        problems.append(f"{column}: {problem}")
    if feature.kind is FeatureKind.BINARY:
        bad = numbers.notna() & ~numbers.isin([0, 1])
        if bad.any():
            problems.append(f"{column}: {int(bad.sum())} value(s) other than 0/1 ({_distinct(values[bad])})")
    if feature.min is not None:
        below = numbers < feature.min
        if below.any():
            problems.append(
                f"{column}: {int(below.sum())} value(s) below min {_show(feature.min)} ({_distinct(numbers[below])})"
            )
    if feature.max is not None:
        above = numbers > feature.max
        if above.any():
            problems.append(
                f"{column}: {int(above.sum())} value(s) above max {_show(feature.max)} ({_distinct(numbers[above])})"
            )
    return problems


def _as_numbers(values: pd.Series) -> tuple[pd.Series, str | None]:
    """The column as float64 (unparsable values → NaN) and, if it is not a numeric dtype, what is wrong."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64"), None
    numbers = pd.to_numeric(values.astype(object), errors="coerce").astype("float64")
    not_numbers = values.notna() & numbers.isna()
    if not_numbers.any():
        return numbers, f"{int(not_numbers.sum())} non-numeric value(s) ({_distinct(values[not_numbers])})"
    return numbers, f"numbers stored as {values.dtype}, not a numeric dtype ({_distinct(values.dropna())})"


def _target_problems(labels: pd.Series, schema: DatasetSchema) -> list[str]:
    target = schema.target
    column = f"target {target.name!r}"
    problems: list[str] = []
    missing = labels.isna()
    if missing.any():
        problems.append(f"{column}: {int(missing.sum())} missing label(s) (rows {_examples(labels.index[missing])})")
    if target.kind is TaskKind.REGRESSION:
        numbers, wrong = _as_numbers(labels)
        if wrong is not None:
            problems.append(f"{column}: {wrong}; a regression target must be numbers")
        infinite = np.isinf(numbers)
        if infinite.any():
            rows = _examples(labels.index[infinite])
            problems.append(f"{column}: {int(infinite.sum())} infinite value(s) (rows {rows})")
        if numbers.dropna().nunique() < 2:
            problems.append(f"{column}: a regression target needs at least two distinct values")
        return problems
    classes = target.task.classes
    # Labels are compared as text, the way core.task.Task.encode reads them.
    text = labels[~missing].astype(str)
    outside = ~text.isin(classes)
    if outside.any():
        problems.append(f"{column}: {_counted(text[outside])} outside the classes {_names(classes)}")
    seen = set(text[~outside].unique())
    absent = [c for c in classes if c not in seen]
    if absent:
        every = "both classes" if len(classes) == 2 else f"all {len(classes)} classes"
        problems.append(f"{column}: {every} {_names(classes)} are needed; no rows of {_names(absent)}")
    return problems


def _unknown_values(values: pd.Series, categories: tuple[str, ...]) -> str | None:
    # Compared as str(value), the text the model is fed (core.features.to_model_frame).
    text = values.dropna().astype(object).astype(str)
    unknown = text[~text.isin(categories)]
    return _counted(unknown) if len(unknown) else None


def _counted(values: pd.Series) -> str:
    """``3 value(s): 'Weekly' (2), 'Daily' (1)``, most frequent first, at most a few shown."""
    counts = values.value_counts(sort=True)
    shown = ", ".join(f"{value!r} ({count})" for value, count in counts.head(_UNKNOWN_SHOWN).items())
    more = len(counts) - _UNKNOWN_SHOWN
    suffix = f", and {more} more distinct" if more > 0 else ""
    return f"{len(values)} value(s): {shown}{suffix}"


def _distinct(values: pd.Series) -> str:
    return f"e.g. {_examples(pd.unique(values.to_numpy()))}"


def _examples(values: Iterable[object]) -> str:
    shown: list[str] = []
    for value in values:
        if len(shown) == _EXAMPLES:
            break
        shown.append(_show(value))
    return ", ".join(shown)


def _show(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float | int):
        return str(value)
    return repr(value)


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)
