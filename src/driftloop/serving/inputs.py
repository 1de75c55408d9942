"""Turn decoded request values into the model's feed, checking each one against the schema.

Every protocol ends here: rows (values in schema order), records (objects keyed by feature name) or columns
(feature name → list of values), already decoded from JSON or CSV. The result is a ``FeatureBatch``: the
numeric features as one matrix and the categorical ones as another, typed as ``core.features.to_model_frame``
types them (float32 with NaN for a missing number, ``str`` with ``""`` for a missing category), ready to be
the onnxruntime feed of the grouped graph (or, column by column, of the per-feature one).

Rules (the first problem found is reported, as an ``InputError`` naming row, feature, value and expectation):

* numeric: an int or float, not a bool or a string, finite, within the schema's ``min``/``max`` (and float32's
  range); binary: 0 or 1 as an int, a float or a bool; categorical: a string.
* ``None`` (or NaN from a lenient decoder, or ``""`` for a categorical: the model's missing-category marker) is a
  missing value, allowed only where the feature is ``nullable``. Infinity is never allowed.
* A category outside the schema's list is an error by default (``unknown_categories="error"``): the exported
  model one-hot encodes it as "none of the known categories" and scores it without complaint, so a typo or an
  upstream change would otherwise go unnoticed. ``"ignore"`` passes it through to be scored that way.
* Records must carry every feature and nothing else (strict: send ``null`` for a missing value); all missing
  and unknown names are listed at once.

Status codes: 422 for content that breaks these rules, 413 for a batch over ``max_rows``; protocol envelopes
that are not what the endpoint expects are reported by ``serving.protocols`` (400).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any, Literal, NamedTuple, NoReturn

import numpy as np

from driftloop.core.layout import FeatureLayout
from driftloop.core.schema import (
    MISSING_CATEGORY,
    DatasetSchema,
    Feature,
    FeatureKind,
    Unseen,
    repeated_names,
)
from driftloop.core.task import FLOAT32_MAX
from driftloop.errors import InputError

UnknownCategories = Literal["error", "ignore"]

_NUMERIC, _BINARY, _CATEGORICAL = 0, 1, 2
_KIND_CODE = {FeatureKind.NUMERIC: _NUMERIC, FeatureKind.BINARY: _BINARY, FeatureKind.CATEGORICAL: _CATEGORICAL}
_ZERO_ONE = frozenset({0, 1})  # 0 == 0.0 == False and 1 == 1.0 == True hash alike
_NUMBER_TYPES = frozenset({int, float})
_BINARY_TYPES = frozenset({int, float, bool})
_SHOWN_CHARS = 60
_SHOWN_NAMES = 20
_JSON_TYPES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    tuple: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


class FeatureBatch(NamedTuple):
    """The validated rows as two matrices, columns in schema order.

    ``numeric``: the numeric and binary features, float32 ``(n, k)``, NaN where missing. ``categorical``: str
    objects ``(n, m)``, "" where missing. The grouped ONNX graph takes the two matrices as they are;
    ``columns`` gives the per-feature feed.
    """

    numeric: np.ndarray
    categorical: np.ndarray
    layout: FeatureLayout
    rows: int

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """One ``(n, 1)`` view per feature, in schema order: the feed of a per-feature graph."""
        numeric = [self.numeric[:, index : index + 1] for index in range(self.numeric.shape[1])]
        categorical = [self.categorical[:, index : index + 1] for index in range(self.categorical.shape[1])]
        return dict(zip(self.layout.names, self.layout.in_schema_order(numeric, categorical), strict=True))

    def records(self) -> list[dict[str, Any]]:
        """One JSON-friendly dict per row (float / str, ``None`` where missing)."""
        lists: list[list[Any]] = []
        for column in self.columns.values():
            flat = column.reshape(-1)
            if flat.dtype == object:
                lists.append([value or None for value in flat.tolist()])
            else:
                # Through float32's shortest text, so 29.85 is logged as 29.85, not 29.850000381469727.
                values = flat.astype(str).astype(np.float64).tolist()
                lists.append([None if value != value else value for value in values])
        names = list(self.layout.names)
        return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


def _matrix(columns: list[np.ndarray], rows: int, dtype: type) -> np.ndarray:
    return np.hstack(columns) if columns else np.empty((rows, 0), dtype=dtype)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def json_type(value: Any) -> str:
    """How a decoded JSON value is described to a client: 'an object', 'a list', 'a string', ..."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _number(value: float) -> str:
    return f"{value:g}"


def _quoted(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:_SHOWN_NAMES])
    return shown if len(names) <= _SHOWN_NAMES else f"{shown}, ... ({len(names)} in all)"


def _where(row: int | None, name: str) -> str:
    return f"feature {name!r}" if row is None else f"row {row}, feature {name!r}"


class _Spec:
    """What the per-value checks need about one feature, computed once."""

    __slots__ = (
        "allowed", "categories_text", "expected", "hi", "index", "kind", "lo", "name", "nullable", "to_other",
    )  # fmt: skip

    def __init__(self, index: int, feature: Feature) -> None:
        self.index = index
        self.name = feature.name
        self.kind = _KIND_CODE[feature.kind]
        self.nullable = feature.nullable
        self.lo = -FLOAT32_MAX if feature.min is None else max(feature.min, -FLOAT32_MAX)
        self.hi = FLOAT32_MAX if feature.max is None else min(feature.max, FLOAT32_MAX)
        self.allowed = frozenset(feature.categories or ())
        self.categories_text = _quoted(feature.categories or ())
        # A value outside the list is accepted as sent, and the model sees it in the other bucket (``for_model``).
        self.to_other = feature.unseen is Unseen.OTHER
        if self.kind == _NUMERIC:
            if feature.min is not None and feature.max is not None:
                self.expected = f"a number in [{_number(feature.min)}, {_number(feature.max)}]"
            elif feature.min is not None:
                self.expected = f"a number >= {_number(feature.min)} (within float32 range)"
            elif feature.max is not None:
                self.expected = f"a number <= {_number(feature.max)} (within float32 range)"
            else:
                self.expected = "a finite number within float32 range"
        elif self.kind == _BINARY:
            self.expected = "0 or 1 (or true/false)"
        else:
            self.expected = f"one of {self.categories_text}"


class FeatureParser:
    """Validates request values for one schema and builds the model feed; build once per loaded model."""

    def __init__(self, schema: DatasetSchema, max_rows: int, unknown_categories: UnknownCategories = "error") -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {max_rows}")
        if unknown_categories not in ("error", "ignore"):
            raise ValueError(f"unknown_categories must be 'error' or 'ignore', not {unknown_categories!r}")
        self._schema = schema
        self._max_rows = max_rows
        self._unknown_categories: UnknownCategories = unknown_categories
        self._strict_categories = unknown_categories == "error"
        self._specs = [_Spec(i, f) for i, f in enumerate(schema.features)]
        self._names = [s.name for s in self._specs]
        self._name_set = frozenset(self._names)
        self._count = len(self._specs)
        self._layout = FeatureLayout.of(schema)
        # The one-row fast path: (kind, lo, hi, categories, spec) per feature.
        self._fast = [(s.kind, s.lo, s.hi, s.allowed, s) for s in self._specs]
        self._getter = itemgetter(*self._names) if self._count > 1 else lambda record: (record[self._names[0]],)
        # (column in the categorical matrix, feature, its categories) of each feature that has an other bucket.
        categorical = [f for f in schema.features if f.is_categorical]
        self._bucketed = [
            (position, feature, frozenset(feature.categories or ()))
            for position, feature in enumerate(categorical)
            if feature.has_other_bucket
        ]
        self._order_text = ", ".join(self._names)

    @property
    def schema(self) -> DatasetSchema:
        return self._schema

    @property
    def max_rows(self) -> int:
        return self._max_rows

    @property
    def unknown_categories(self) -> UnknownCategories:
        return self._unknown_categories

    @property
    def feature_names(self) -> list[str]:
        return list(self._names)

    @property
    def layout(self) -> FeatureLayout:
        return self._layout

    def for_model(self, batch: FeatureBatch) -> FeatureBatch:
        """The batch as the model takes it: values outside a feature's list in its other bucket, as in training.

        The rule is ``Feature.bucketed``. The batch itself keeps the values as sent: the prediction log records
        those, so drift checks see new values and a retrain can learn them.
        """
        if not self._bucketed:
            return batch
        categorical: np.ndarray | None = None
        for position, feature, listed in self._bucketed:
            sent = batch.categorical[:, position].tolist()
            seen = [feature.bucketed(value, listed) for value in sent]
            if seen != sent:
                if categorical is None:
                    categorical = batch.categorical.copy()
                categorical[:, position] = seen
        return batch if categorical is None else batch._replace(categorical=categorical)

    # ---------------------------------------------------------------- one row (the /predict hot path)

    def from_row(self, row: Any) -> FeatureBatch:
        """One row: a list of values in schema feature order."""
        if type(row) is not list and type(row) is not tuple:
            raise InputError(
                422,
                "wrong_shape",
                f"expected a list of {self._count} feature values in schema order ({self._order_text}), "
                f"got {json_type(row)}",
            )
        if len(row) != self._count:
            self._wrong_count(row, None)
        return self._one(row)

    def from_record(self, record: Any) -> FeatureBatch:
        """One record: an object keyed by feature name (any key order, every feature present)."""
        if type(record) is not dict:
            raise InputError(
                422, "wrong_shape", f"expected an object mapping feature names to values, got {json_type(record)}"
            )
        try:
            values = self._getter(record)
        except KeyError:
            self._wrong_names(record, None)
        if len(record) != self._count:
            self._wrong_names(record, None)
        return self._one(values)

    def _one(self, values: Sequence[Any]) -> FeatureBatch:
        numbers: list[Any] = []
        strings: list[Any] = []
        for (kind, lo, hi, allowed, spec), value in zip(self._fast, values, strict=True):
            kind_of = type(value)
            if kind == _CATEGORICAL:
                if kind_of is str and value in allowed:
                    strings.append(value)
                else:
                    strings.append(self._check(spec, value, None))
            elif kind == _NUMERIC:
                if (kind_of is float or kind_of is int) and lo <= value <= hi:
                    numbers.append(value)
                else:
                    numbers.append(self._check(spec, value, None))
            elif kind_of in _BINARY_TYPES and value in _ZERO_ONE:
                numbers.append(value)
            else:
                numbers.append(self._check(spec, value, None))
        return FeatureBatch(
            np.array(numbers, dtype=np.float32).reshape(1, len(numbers)),
            np.array(strings, dtype=object).reshape(1, len(strings)),
            self._layout,
            1,
        )

    # ---------------------------------------------------------------- batches

    def from_rows(self, rows: Any) -> FeatureBatch:
        """A batch of rows, each a list of values in schema feature order."""
        self._check_batch(rows, "a list of rows (each a list of feature values in schema order)")
        if set(map(type, rows)) - {list, tuple}:
            for index, row in enumerate(rows):
                if type(row) is not list and type(row) is not tuple:
                    raise InputError(
                        422,
                        "wrong_shape",
                        f"row {index}: expected a list of {self._count} feature values in schema order "
                        f"({self._order_text}), got {json_type(row)}",
                    )
        if set(map(len, rows)) != {self._count}:
            for index, row in enumerate(rows):
                if len(row) != self._count:
                    self._wrong_count(row, index)
        return self._from_column_values(list(zip(*rows, strict=True)), len(rows))

    def from_records(self, records: Any) -> FeatureBatch:
        """A batch of records, each an object keyed by feature name."""
        self._check_batch(records, "a list of records (objects keyed by feature name)")
        if set(map(type, records)) != {dict}:
            for index, record in enumerate(records):
                if type(record) is not dict:
                    raise InputError(
                        422,
                        "wrong_shape",
                        f"row {index}: expected an object mapping feature names to values, got {json_type(record)}",
                    )
        getter = self._getter
        try:
            rows = [getter(record) for record in records]
        except KeyError:
            rows = []
        if len(rows) != len(records) or set(map(len, records)) != {self._count}:
            for index, record in enumerate(records):
                if len(record) != self._count or not self._name_set.issuperset(record):
                    self._wrong_names(record, index)
        return self._from_column_values(list(zip(*rows, strict=True)), len(rows))

    def from_columns(self, columns: Any) -> FeatureBatch:
        """A batch as columns: an object mapping each feature name to a list of values (all the same length)."""
        if type(columns) is not dict:
            raise InputError(
                422,
                "wrong_shape",
                f"expected an object mapping each feature name to a list of values, got {json_type(columns)}",
            )
        self.require_names(columns)
        values = [columns[name] for name in self._names]
        for name, column in zip(self._names, values, strict=True):
            if type(column) is not list and type(column) is not tuple:
                raise InputError(
                    422, "wrong_shape", f"feature {name!r}: expected a list of values, got {json_type(column)}"
                )
        lengths = set(map(len, values))
        if len(lengths) > 1:
            first = len(values[0])
            other = next(i for i, column in enumerate(values) if len(column) != first)
            raise InputError(
                422,
                "wrong_shape",
                f"columns differ in length: {self._names[0]!r} has {first} values, "
                f"{self._names[other]!r} has {len(values[other])}; every column needs one value per row",
            )
        rows = lengths.pop()
        self.check_rows(rows)
        return self._from_column_values(values, rows)

    def require_names(self, names: Iterable[str]) -> None:
        """Raise ``missing_feature`` / ``unknown_feature`` (422) unless ``names`` are exactly the schema's features."""
        given = list(names)
        if len(given) == self._count and self._name_set.issuperset(given) and len(set(given)) == self._count:
            return
        duplicated = repeated_names(given)
        if duplicated and self._name_set == set(given):
            raise InputError(422, "wrong_shape", f"feature name(s) given more than once: {_quoted(duplicated)}")
        self._raise_names(given, None)

    # ---------------------------------------------------------------- shared checks

    def _check_batch(self, batch: Any, expected: str) -> None:
        if type(batch) is not list and type(batch) is not tuple:
            raise InputError(422, "wrong_shape", f"expected {expected}, got {json_type(batch)}")
        self.check_rows(len(batch))

    def check_rows(self, rows: int) -> None:
        """Raise ``empty_batch`` (422) for no rows, ``batch_too_large`` (413) over ``max_rows``."""
        if rows == 0:
            raise InputError(422, "empty_batch", "the batch is empty; send at least one row")
        if rows > self._max_rows:
            raise InputError(
                413,
                "batch_too_large",
                f"the batch has {rows:,} rows; this server takes at most {self._max_rows:,} rows per request",
            )

    def _wrong_count(self, row: Sequence[Any], index: int | None) -> NoReturn:
        prefix = "" if index is None else f"row {index}: "
        raise InputError(
            422,
            "feature_count",
            f"{prefix}expected {self._count} values in schema order ({self._order_text}), got {len(row)}",
        )

    def _wrong_names(self, record: dict[str, Any], index: int | None) -> NoReturn:
        self._raise_names(list(record), index)

    def _raise_names(self, given: list[str], index: int | None) -> NoReturn:
        present = set(given)
        missing = [n for n in self._names if n not in present]
        unknown = [n for n in dict.fromkeys(given) if n not in self._name_set]
        prefix = "" if index is None else f"row {index}: "
        parts = []
        if missing:
            nullable = {spec.name for spec in self._specs if spec.nullable}
            hint = " (send null for a missing value)" if nullable & set(missing) else ""
            parts.append(f"missing feature(s) {_quoted(missing)}{hint}")
        if unknown:
            parts.append(f"unknown feature(s) {_quoted(unknown)}")
        parts.append(f"expected exactly: {self._order_text}")
        raise InputError(422, "missing_feature" if missing else "unknown_feature", prefix + "; ".join(parts))

    def _from_column_values(self, columns: Sequence[Sequence[Any]], rows: int) -> FeatureBatch:
        """Vectorised checks per column; any doubt falls back to the per-value checks for the exact error."""
        numeric: list[np.ndarray] = []
        categorical: list[np.ndarray] = []
        for spec, column in zip(self._specs, columns, strict=True):
            array = self._column(spec, column, rows)
            if array is None:
                self._diagnose(columns, rows)
            (categorical if spec.kind == _CATEGORICAL else numeric).append(array)
        return FeatureBatch(_matrix(numeric, rows, np.float32), _matrix(categorical, rows, object), self._layout, rows)

    def _column(self, spec: _Spec, column: Sequence[Any], rows: int) -> np.ndarray | None:
        types = set(map(type, column))
        if spec.kind == _CATEGORICAL:
            if not types <= ({str, type(None)} if spec.nullable else {str}):
                return None
            seen = set(column)
            if not spec.nullable and MISSING_CATEGORY in seen:
                return None
            if self._strict_categories and not spec.to_other and seen - spec.allowed - {MISSING_CATEGORY, None}:
                return None
            if None in seen:
                column = [MISSING_CATEGORY if value is None else value for value in column]
            array = np.empty(rows, dtype=object)
            array[:] = column
            return array.reshape(rows, 1)
        allowed = _NUMBER_TYPES if spec.kind == _NUMERIC else _BINARY_TYPES
        if not types <= (allowed | {type(None)} if spec.nullable else allowed):
            return None
        try:
            values = np.array(column, dtype=np.float64)
        except (OverflowError, TypeError, ValueError):
            return None
        missing = np.isnan(values)
        if not spec.nullable and missing.any():
            return None
        if spec.kind == _NUMERIC:
            if np.isinf(values).any() or ((values < spec.lo) | (values > spec.hi)).any():
                return None
        elif not ((values == 0) | (values == 1) | missing).all():
            return None
        return values.astype(np.float32).reshape(rows, 1)

    def _diagnose(self, columns: Sequence[Sequence[Any]], rows: int) -> NoReturn:
        for row in range(rows):
            for spec, column in zip(self._specs, columns, strict=True):
                self._check(spec, column[row], row)
        raise AssertionError("a column failed the vectorised checks but no value breaks a rule")  # pragma: no cover

    def _check(self, spec: _Spec, value: Any, row: int | None) -> Any:
        """The value as the model takes it, or an InputError naming the rule it breaks."""
        where = _where(row, spec.name)
        missing = value is None or (type(value) is float and value != value)
        if spec.kind == _CATEGORICAL:
            missing = missing or value == MISSING_CATEGORY
        if missing:
            if spec.nullable:
                return MISSING_CATEGORY if spec.kind == _CATEGORICAL else float("nan")
            if value is None:
                raise InputError(422, "null_not_allowed", f"{where}: null is not allowed (the feature is not nullable)")
            if spec.kind == _CATEGORICAL:
                raise InputError(
                    422,
                    "null_not_allowed",
                    f"{where}: '' is the missing-value marker and the feature is not nullable; "
                    f"expected {spec.expected}",
                )
            raise InputError(422, "non_finite", f"{where}: NaN is not allowed (the feature is not nullable)")
        kind_of = type(value)
        if spec.kind == _CATEGORICAL:
            if kind_of is not str:
                raise InputError(
                    422, "wrong_type", f"{where}: expected a string, got {json_type(value)} {_show(value)}"
                )
            if value in spec.allowed or spec.to_other or not self._strict_categories:
                return value
            raise InputError(
                422, "unknown_category", f"{where}: unknown category {_show(value)}; expected {spec.expected}"
            )
        if kind_of not in (_NUMBER_TYPES if spec.kind == _NUMERIC else _BINARY_TYPES):
            raise InputError(
                422, "wrong_type", f"{where}: expected {spec.expected}, got {json_type(value)} {_show(value)}"
            )
        if kind_of is float and value in (float("inf"), float("-inf")):
            raise InputError(422, "non_finite", f"{where}: {_show(value)} is not allowed; expected {spec.expected}")
        if spec.kind == _BINARY:
            if value in _ZERO_ONE:
                return value
            raise InputError(422, "out_of_range", f"{where}: {_show(value)} is not {spec.expected}")
        if spec.lo <= value <= spec.hi:
            return value
        raise InputError(422, "out_of_range", f"{where}: {_show(value)} is out of range; expected {spec.expected}")
