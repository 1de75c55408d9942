"""Check a snapshot against its schema and list every problem found, one line each."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from driftloop.core.feature_rules import Rule, broken_rules
from driftloop.core.features import as_numbers, feature_numbers, only_booleans
from driftloop.core.schema import DatasetSchema, Feature, FeatureKind
from driftloop.core.task import TaskKind
from driftloop.errors import DatasetValidationError

_EXAMPLES = 3
_UNKNOWN_SHOWN = 5
_NUMBER_LIKE_CLASSES = 20  # fewer classes than this are never taken for a number to predict


def validate_snapshot(frame: pd.DataFrame, schema: DatasetSchema, dataset: str) -> None:
    """Raise if the snapshot breaks its schema.

    Raises:
        DatasetValidationError: with every problem ``find_problems`` reports.
    """
    problems = find_problems(frame, schema)
    if problems:
        raise DatasetValidationError(dataset, problems)


def find_problems(
    frame: pd.DataFrame, schema: DatasetSchema, min_rows: int | None = None, *, part: bool = False
) -> list[str]:
    """Every way the snapshot breaks the schema, one human-readable line each; empty when it is valid.

    Columns the schema does not mention are ignored. A column whose name appears more than once is reported
    once as duplicated and not checked further. ``min_rows`` replaces the schema's own minimum, and ``part`` says
    the rows are a part of a snapshot (a retrain's recent rows): small, and a feature may have no value in them.
    In a whole snapshot a feature with no value at all, even a nullable one, is a problem: nothing can be
    learnt from it, and its drift cannot be measured.
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
            learnt = feature.is_categorical and feature.learn  # its own problem says so: no values to learn from
            if not part and feature.nullable and not learnt and len(frame) and frame[feature.name].isna().all():
                problems.append(f"column {feature.name!r}: no value in any row (nullable, but nothing to learn from)")
    if target in columns and target not in duplicated:
        problems.extend(_target_problems(frame[target], schema, part))
    return problems


def _feature_problems(values: pd.Series, feature: Feature) -> list[str]:
    column = f"column {feature.name!r}"
    problems: list[str] = []
    numbers = None if feature.is_categorical else feature_numbers(values, feature)
    for broken in broken_rules(values, feature, numbers):
        rows = broken.rows
        if broken.rule is Rule.NOT_A_NUMBER:  # said of the whole column, with its dtype
            stored = None if numbers is None else _stored_as_text(values, numbers, feature)
            problems.extend([f"{column}: {stored}"] if stored else [])
            continue
        if not rows.any():
            continue
        count = int(rows.sum())
        match broken.rule:
            case Rule.MISSING:
                problem = f"{count} missing value(s) but the feature is not nullable ({_data_rows(rows)})"
            case Rule.UNLISTED:
                unlisted = _counted(values[rows].astype(object).astype(str))
                problem = f"{unlisted} outside the declared categories ({_data_rows(rows)})"
            case Rule.NOT_FINITE:
                shown = values if numbers is None else numbers
                problem = (
                    f"{count} value(s) that are not finite numbers within float32 range ({_distinct(shown[rows])}; "
                    f"{_data_rows(rows)})"
                )
            case Rule.NOT_BINARY:
                problem = f"{count} value(s) other than 0/1 ({_distinct(values[rows])}; {_data_rows(rows)})"
            case Rule.BELOW_MIN | Rule.ABOVE_MAX:
                bound = feature.min if broken.rule is Rule.BELOW_MIN else feature.max
                shown = values if numbers is None else numbers
                problem = (
                    f"{count} value(s) {broken.rule} {_show(bound)} ({_distinct(shown[rows])}; {_data_rows(rows)})"
                )
        problems.append(f"{column}: {problem}")
    if feature.is_categorical and feature.learn and values.isna().all():  # then no other rule has a row to name
        problems.append(f"{column}: no values to learn its categories from")
    return problems


def _stored_as_text(values: pd.Series, numbers: pd.Series, feature: Feature | None = None) -> str | None:
    """What is wrong with a numeric column whose dtype is not numeric: values that are not numbers, or none.

    A numeric ``feature``'s booleans are not numbers (``core.features.feature_numbers``): said as what to change.
    """
    if feature is not None and only_booleans(values):
        if feature.kind is not FeatureKind.NUMERIC:
            return None  # a binary feature's 1 and 0
        flags = values.notna()
        return (
            f"{int(flags.sum())} boolean value(s) ({_distinct(values[flags])}; {_data_rows(flags)}) in a numeric "
            "feature: declare it binary, or give numbers"
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        return None
    not_numbers = values.notna() & numbers.isna()
    if not_numbers.any():
        examples = f"{_distinct(values[not_numbers])}; {_data_rows(not_numbers)}"
        return f"{int(not_numbers.sum())} non-numeric value(s) ({examples})"
    return f"numbers stored as {values.dtype}, not a numeric dtype ({_distinct(values.dropna())})"


def _target_problems(labels: pd.Series, schema: DatasetSchema, part: bool) -> list[str]:
    target = schema.target
    column = f"target {target.name!r}"
    problems: list[str] = []
    missing = labels.isna()
    if missing.any():
        problems.append(f"{column}: {int(missing.sum())} missing label(s) ({_data_rows(missing)})")
    if target.kind is TaskKind.REGRESSION:
        numbers = as_numbers(labels)
        wrong = _stored_as_text(labels, numbers)
        if wrong is not None:
            problems.append(f"{column}: {wrong}; a regression target must be numbers")
        infinite = np.isinf(numbers)
        if infinite.any():
            problems.append(f"{column}: {int(infinite.sum())} infinite value(s) ({_data_rows(infinite)})")
        if numbers.dropna().nunique() < 2:
            problems.append(f"{column}: a regression target needs at least two distinct values")
        return problems
    classes = target.task.classes
    # Labels are compared as text, the way core.task.Task.encode reads them.
    text = labels.astype(str)
    outside = ~missing & ~text.isin(classes)
    if outside.any():
        problems.append(
            f"{column}: {_counted(text[outside])} outside the classes {_names(classes)} ({_data_rows(outside)})"
        )
    listed = text[~missing & ~outside]
    seen = set(listed.unique())
    absent = [c for c in classes if c not in seen]
    if absent and not part:  # a retrain's recent rows join the champion's, which hold every class (trial 53)
        every = "both classes" if len(classes) == 2 else f"all {len(classes)} classes"
        problems.append(f"{column}: {every} {_names(classes)} are needed; no rows of {_names(absent)}")
    single = None if part else single_row_classes(listed)
    if single is not None:
        problems.append(f"{column}: {single}")
    return problems


def single_row_classes(labels: pd.Series) -> str | None:
    """The problem of classes with one row, which no holdout split can put on both sides; None when there are none.

    ``labels`` are a classifier's labels as text. When they are numbers, many, and most of them have a single row,
    the target is likely a number to predict, and the line says so.
    """
    counts = labels.value_counts()
    single = counts.index[counts.to_numpy() == 1]
    if not len(single):
        return None
    more = len(single) - _EXAMPLES
    shown = _names(map(str, single[:_EXAMPLES])) + (f" and {more:,} more" if more > 0 else "")
    line = (
        f"{len(single):,} of its {len(counts):,} classes {'has' if len(single) == 1 else 'have'} a single row "
        f"({shown}): each class needs rows on both sides of the holdout split"
    )
    if (
        _NUMBER_LIKE_CLASSES < len(counts) < 2 * len(single)
        and pd.to_numeric(pd.Series(counts.index), errors="coerce").notna().all()
    ):
        line += f"; {len(counts):,} classes in {len(labels):,} rows look like a number to predict (task regression)"
    return line


def _counted(values: pd.Series) -> str:
    """``3 value(s): 'Weekly' (2), 'Daily' (1)``, most frequent first, at most a few shown."""
    counts = values.value_counts(sort=True)
    shown = ", ".join(f"{value!r} ({count})" for value, count in counts.head(_UNKNOWN_SHOWN).items())
    more = len(counts) - _UNKNOWN_SHOWN
    suffix = f", and {more} more distinct" if more > 0 else ""
    return f"{len(values)} value(s): {shown}{suffix}"


def data_row(position: int) -> str:
    """``data row 12``: the row at ``position`` (counted from 0) as ``_data_rows`` names rows, from 1."""
    return f"data row {position + 1}"


def _data_rows(where: pd.Series | np.ndarray) -> str:
    """``data rows 9, 12, 40``: the first few rows ``where`` marks, by position from 1, whatever the frame's index.

    Row 1 is the first row of data: in a CSV, the line after the header. Data row N is the CSV's line N + 1 unless
    blank lines (which readers skip) or quoted fields holding line breaks come before it.
    """
    positions = np.flatnonzero(np.asarray(where)) + 1
    return f"data row{'s' if len(positions) > 1 else ''} {_examples(positions)}"


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
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:  # 1e300 stays 1e+300
        return str(int(value))
    if isinstance(value, float | int):
        return str(value)
    return repr(value)


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)
