"""Where each feature sits when the features travel as two matrices (numeric, categorical) instead of one per column.

The grouped serving graph takes them so, the server parses requests into them, and the prediction log writes them;
this is the one place that knows how to put them back in schema order. Pure Python: the server imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from driftloop.core.schema import DatasetSchema

T = TypeVar("T")


@dataclass(frozen=True)
class FeatureLayout:
    """Where each feature sits in a ``FeatureBatch``: schema order, and the column of its group's matrix."""

    names: tuple[str, ...]
    # Per feature in schema order: (whether it is categorical, its column in that group's matrix).
    positions: tuple[tuple[bool, int], ...]

    @classmethod
    def of(cls, schema: DatasetSchema) -> FeatureLayout:
        numeric, categorical = schema.numeric, schema.categorical
        positions = tuple(
            (f.is_categorical, (categorical if f.is_categorical else numeric).index(f.name)) for f in schema.features
        )
        return cls(tuple(schema.feature_names), positions)

    def in_schema_order(self, numeric: Sequence[T], categorical: Sequence[T]) -> list[T]:
        """One item per feature in schema order, from one per numeric and one per categorical feature."""
        return [categorical[index] if is_categorical else numeric[index] for is_categorical, index in self.positions]
