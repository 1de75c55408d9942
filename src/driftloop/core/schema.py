"""A dataset's declared schema: features, their kinds and rules, the target and its classes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from driftloop.core import lineage

# How a missing categorical value reaches the model: training, serving and the ONNX graph's imputer agree on it.
MISSING_CATEGORY = ""


class FeatureKind(StrEnum):
    """How a feature is typed and fed to the model."""

    NUMERIC = "numeric"  # a real number; float32 in the model
    BINARY = "binary"  # 0 or 1; float32 in the model
    CATEGORICAL = "categorical"  # a string from a declared set; one-hot in the model


class Feature(BaseModel):
    """One input column and the rules a snapshot's values must satisfy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: FeatureKind
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _rules_fit_kind(self) -> Feature:
        if self.kind is FeatureKind.CATEGORICAL:
            if not self.categories:
                raise ValueError(f"categorical feature {self.name!r} needs a non-empty 'categories' list")
            if self.min is not None or self.max is not None:
                raise ValueError(f"categorical feature {self.name!r} cannot have min/max")
        elif self.categories is not None:
            raise ValueError(f"{self.kind} feature {self.name!r} cannot have 'categories'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} > max {self.max}")
        return self

    @property
    def is_categorical(self) -> bool:
        return self.kind is FeatureKind.CATEGORICAL


class Target(BaseModel):
    """The label column: its classes in order (negative first) and which one is positive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    classes: tuple[str, str]
    positive: str

    @model_validator(mode="after")
    def _positive_is_a_class(self) -> Target:
        if self.classes[0] == self.classes[1]:
            raise ValueError(f"target {self.name!r}: the two classes must differ")
        if self.positive not in self.classes:
            raise ValueError(f"target {self.name!r}: positive {self.positive!r} is not one of {self.classes}")
        return self

    @property
    def negative(self) -> str:
        return self.classes[0] if self.classes[1] == self.positive else self.classes[1]


class DatasetSchema(BaseModel):
    """A whole dataset's contract, loaded from a YAML file (see ``io.datasets.load_schema``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    target: Target
    features: tuple[Feature, ...] = Field(min_length=1)
    min_rows: int = Field(default=100, ge=2)

    @model_validator(mode="after")
    def _names_unique(self) -> DatasetSchema:
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature names must be unique; repeated: {duplicated}")
        if self.target.name in names:
            raise ValueError(f"the target {self.target.name!r} is also listed as a feature")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.is_categorical]

    @property
    def numeric(self) -> list[str]:
        """Numeric and binary features: both go to the model as float32."""
        return [f.name for f in self.features if not f.is_categorical]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def fingerprint(self) -> str:
        """A short stable hash of the schema, for cache keys and lineage."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def contract(self) -> str:
        """A short stable hash of what a model trained on this schema takes and predicts.

        That is the features' names, kinds and order, and the target with its classes. The schema's name, the
        descriptions, categories, ranges, nullability and ``min_rows`` are left out: a champion trained under
        another spelling of them still scores this schema's rows, so the two can be compared.
        """
        taken = {
            "features": [[f.name, f.kind.value] for f in self.features],
            "target": self.target.model_dump(mode="json"),
        }
        return hashlib.sha256(json.dumps(taken, sort_keys=True).encode()).hexdigest()[:16]


def comparison_problem(champion_tags: Mapping[str, str], schema: DatasetSchema) -> str | None:
    """Why a champion with these version tags cannot be scored on ``schema``'s rows, or None if it can.

    Versions registered before the contract tag existed are held to the whole schema's fingerprint.
    """
    recorded = champion_tags.get(lineage.SCHEMA_CONTRACT)
    if recorded is not None:
        if recorded == schema.contract():
            return None
        differs = "features (names, kinds, order) or target differ"
    else:
        if champion_tags.get(lineage.SCHEMA_FINGERPRINT) == schema.fingerprint():
            return None
        differs = "schema differs"
    trained_on = champion_tags.get(lineage.SCHEMA_NAME, "?")
    return (
        f"it was trained on schema {trained_on!r}, whose {differs} from this snapshot's schema "
        f"{schema.name!r}; the two cannot be compared. Register it under another model name "
        "(--model-name / DRIFTLOOP_MODEL_NAME)"
    )
