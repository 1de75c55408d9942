"""A dataset's declared schema: features, their kinds and rules, the target and its task."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from driftloop.core import lineage
from driftloop.core.task import Task, TaskKind

# How a missing categorical value reaches the model: training, serving and the ONNX graph's imputer agree on it.
MISSING_CATEGORY = ""
# The bucket of a categorical feature's values outside its categories, when its rules send them there: the values
# a learned list leaves out for its cap, and (``unseen: other``) values outside the list.
OTHER_CATEGORY = "__other__"
# How many values ``categories: learn`` keeps when the feature sets no ``max_categories``.
DEFAULT_LEARNED_CATEGORIES = 100
LEARN = "learn"


class FeatureKind(StrEnum):
    """How a feature is typed and fed to the model."""

    NUMERIC = "numeric"  # a real number; float32 in the model
    BINARY = "binary"  # 0 or 1; float32 in the model
    CATEGORICAL = "categorical"  # a string from a declared set; one-hot in the model


class Unseen(StrEnum):
    """What becomes of a categorical value outside the feature's categories, in training and in serving."""

    ERROR = "error"  # a listed feature's snapshot is refused; a request is answered 422
    OTHER = "other"  # it goes to the feature's other bucket (OTHER_CATEGORY)


# Feature fields that came after the first schemas, at their defaults: left out of the fingerprint so a schema that
# does not use them keeps the fingerprint it always had.
_LATER_FIELD_DEFAULTS: dict[str, object] = {
    "learn": False,
    "max_categories": None,
    "unseen": Unseen.ERROR.value,
    "drift_threshold": None,
}


class Feature(BaseModel):
    """One input column and the rules a snapshot's values must satisfy.

    A categorical feature lists its ``categories``, or declares ``categories: learn``: they are then the training
    snapshot's ``max_categories`` most frequent values (``learn`` is True; after training the learned list is in
    ``categories``, stored with the model, and a retrain learns it again from its own snapshot). Values a learned
    list leaves out go to the other bucket, and so does any value outside the list when ``unseen`` is ``other``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: FeatureKind
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    learn: bool = False
    max_categories: int | None = Field(default=None, ge=1)
    unseen: Unseen = Unseen.ERROR
    description: str = ""
    # The drift test's threshold for this column instead of Evidently's default (0.05 for a p-value, 0.1 for a
    # distance); the test itself is still chosen by Evidently's rules. A p-value at or below it, or a distance at
    # or above it, is drift: a smaller threshold makes a p-value test less sensitive, a distance test more.
    drift_threshold: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _learn_spelling(cls, data: Any) -> Any:
        """``categories: learn`` in a schema file is ``learn: true`` with no list yet."""
        if isinstance(data, dict) and isinstance(data.get("categories"), str):
            if data["categories"] != LEARN:
                raise ValueError(
                    f"feature {data.get('name')!r}: categories must be a list of values or {LEARN!r}, "
                    f"got {data['categories']!r}"
                )
            data = {**data, "categories": None, "learn": True}
        return data

    @model_validator(mode="after")
    def _rules_fit_kind(self) -> Feature:
        if self.kind is FeatureKind.CATEGORICAL:
            if not self.learn and not self.categories:
                raise ValueError(
                    f"categorical feature {self.name!r} needs a non-empty 'categories' list, or 'categories: learn' "
                    "to take them from the training snapshot"
                )
            if self.max_categories is not None and not self.learn:
                raise ValueError(f"feature {self.name!r}: max_categories applies to 'categories: learn' only")
            if self.min is not None or self.max is not None:
                raise ValueError(f"categorical feature {self.name!r} cannot have min/max")
        else:
            if self.categories is not None or self.learn:
                raise ValueError(f"{self.kind} feature {self.name!r} cannot have 'categories'")
            if self.max_categories is not None or self.unseen is not Unseen.ERROR:
                raise ValueError(f"{self.kind} feature {self.name!r}: max_categories and unseen are for categories")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} > max {self.max}")
        return self

    @property
    def is_categorical(self) -> bool:
        return self.kind is FeatureKind.CATEGORICAL

    @property
    def category_cap(self) -> int:
        """How many values ``categories: learn`` keeps."""
        return self.max_categories or DEFAULT_LEARNED_CATEGORIES

    @property
    def refuses_unlisted(self) -> bool:
        """Whether a snapshot value outside ``categories`` is an error (a declared list with ``unseen: error``)."""
        return self.is_categorical and not self.learn and self.unseen is Unseen.ERROR

    def bucketed(self, text: str, listed: frozenset[str]) -> str:
        """The value the model sees for ``text``, a categorical value as text (``listed``: ``categories`` as a set).

        A value outside the list goes to the other bucket when the feature sends unseen values there, or when training
        put rows in the bucket; otherwise it stays as it is (validation refuses it first, unless told to ignore it).
        """
        if text in listed or text == MISSING_CATEGORY:
            return text
        return OTHER_CATEGORY if self.has_other_bucket else text

    @property
    def has_other_bucket(self) -> bool:
        """Whether values outside ``categories`` reach the model as the other bucket (``bucketed``)."""
        return self.unseen is Unseen.OTHER or OTHER_CATEGORY in (self.categories or ())

    def recorded(self) -> dict[str, object]:
        """The feature as plain values, without the later fields left at their defaults."""
        dumped = self.model_dump(mode="json")
        for field, default in _LATER_FIELD_DEFAULTS.items():
            if dumped[field] == default:
                dumped.pop(field)
        return dumped


def _class_text(value: object) -> object:
    """A YAML number or boolean as its text (``str``, as pandas' ``astype(str)`` spells it); anything else as is."""
    return str(value) if isinstance(value, int | float) else value


class Target(BaseModel):
    """The label column and its task: binary (default), multiclass or regression.

    Binary: exactly two ``classes`` and which one is ``positive``. Multiclass: three or more ``classes``, in the
    order of the model's outputs. Regression: no classes; the target is a number.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: TaskKind = TaskKind.BINARY
    classes: tuple[str, ...] | None = None
    positive: str | None = None

    @field_validator("classes", "positive", mode="before")
    @classmethod
    def _numbers_as_text(cls, value: object) -> object:
        """``classes: [1, 2]`` as the text a snapshot's 1 and 2 are read as (``with_canonical_target``)."""
        if isinstance(value, list | tuple):
            return [_class_text(v) for v in value]
        return _class_text(value)

    @model_validator(mode="after")
    def _classes_fit_kind(self) -> Target:
        where = f"target {self.name!r}"
        classes = self.classes or ()
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise ValueError(f"{where}: classes must differ; repeated: {repeated}")
        if self.kind is TaskKind.BINARY:
            if len(classes) != 2:
                more = "; a target with more classes is kind: multiclass" if len(classes) > 2 else ""
                raise ValueError(f"{where}: a binary target needs exactly two 'classes', got {list(classes)}{more}")
            if self.positive is None:
                raise ValueError(f"{where}: a binary target needs 'positive', one of {list(classes)}")
            if self.positive not in classes:
                raise ValueError(f"{where}: positive {self.positive!r} is not one of {list(classes)}")
        elif self.kind is TaskKind.MULTICLASS:
            if len(classes) < 3:
                raise ValueError(
                    f"{where}: a multiclass target needs three or more 'classes', got {list(classes)}"
                    + ("; two classes are kind: binary" if len(classes) == 2 else "")
                )
            if self.positive is not None:
                raise ValueError(f"{where}: 'positive' applies to binary targets only")
        elif self.classes is not None or self.positive is not None:
            raise ValueError(f"{where}: a regression target has no 'classes' or 'positive'")
        return self

    @property
    def negative(self) -> str:
        """The binary target's other class."""
        classes = self.classes or ()
        if self.kind is not TaskKind.BINARY:
            raise ValueError(f"target {self.name!r} is {self.kind}: it has no negative class")
        return classes[0] if classes[1] == self.positive else classes[1]

    @property
    def task(self) -> Task:
        """The task, classes in model output order (binary: negative first, as ``Task.encode`` numbers them)."""
        if self.kind is TaskKind.BINARY:
            return Task(self.kind, (self.negative, str(self.positive)))
        return Task(self.kind, tuple(self.classes or ()))

    def recorded(self) -> dict[str, object]:
        """The target as plain values; a binary target without its default ``kind``, as before kinds existed."""
        dumped = self.model_dump(mode="json", exclude_none=True)
        if self.kind is TaskKind.BINARY:
            dumped.pop("kind")
        return dumped


def repeated_names(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


class DatasetSchema(BaseModel):
    """A whole dataset's contract, loaded from a YAML file (see ``io.datasets.load_schema``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    target: Target
    features: tuple[Feature, ...] = Field(min_length=1)
    min_rows: int = Field(default=100, ge=2)
    # Categorical features whose values split the traffic into segments: each drift check also reports drift and
    # performance per segment, so a change confined to one (one contract type, one region) is seen.
    segments: tuple[str, ...] = ()

    @field_validator("segments", mode="before")
    @classmethod
    def _one_segment_as_a_list(cls, value: object) -> object:
        """``segments: contract`` means ``segments: [contract]``."""
        return [value] if isinstance(value, str) else value

    @property
    def model_name(self) -> str:
        """The name a model of this dataset is registered under unless told otherwise: the schema's own name."""
        return lineage.as_model_name(self.name)

    @model_validator(mode="after")
    def _names_unique(self) -> DatasetSchema:
        names = [f.name for f in self.features]
        duplicated = repeated_names(names)
        if duplicated:
            raise ValueError(f"feature names must be unique; repeated: {duplicated}")
        if self.target.name in names:
            raise ValueError(f"the target {self.target.name!r} is also listed as a feature")
        categorical = {f.name for f in self.features if f.is_categorical}
        for segment in self.segments:
            if segment not in categorical:
                what = "a numeric feature" if segment in names else "not a feature"
                raise ValueError(f"segments: {segment!r} is {what}; a segment column must be a categorical feature")
        if repeated_names(list(self.segments)):
            raise ValueError(f"segments: listed more than once: {repeated_names(list(self.segments))}")
        return self

    @property
    def task(self) -> Task:
        return self.target.task

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def unused_columns(self, columns: Iterable[Any]) -> list[str]:
        """The columns the schema names neither as a feature nor as the target, in their order: ignored."""
        used = {*self.feature_names, self.target.name}
        return [str(column) for column in columns if column not in used]

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
        dumped = self.model_dump(mode="json")
        # So schemas keep the fingerprint they had before target kinds and learned categories existed.
        dumped["target"] = self.target.recorded()
        dumped["features"] = [feature.recorded() for feature in self.features]
        if not self.segments:
            dumped.pop("segments")
        canonical = json.dumps(dumped, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def contract(self) -> str:
        """A short stable hash of what a model trained on this schema takes and predicts.

        That is the features' names, kinds and order, and the target with its classes. The schema's name, the
        descriptions, categories, ranges, nullability and ``min_rows`` are left out: a champion trained under
        another spelling of them still scores this schema's rows, so the two can be compared.
        """
        taken = {
            "features": [[f.name, f.kind.value] for f in self.features],
            "target": self.target.recorded(),
        }
        return hashlib.sha256(json.dumps(taken, sort_keys=True).encode()).hexdigest()[:16]


def same_contract(champion_tags: Mapping[str, str], schema: DatasetSchema) -> bool:
    """Whether a champion with these version tags takes and predicts exactly what ``schema`` describes.

    If not, ``evolution_problem`` on the champion's own schema says whether it can still be compared. Versions
    registered before the contract tag existed are held to the whole schema's fingerprint.
    """
    recorded = champion_tags.get(lineage.SCHEMA_CONTRACT)
    if recorded is not None:
        return recorded == schema.contract()
    return champion_tags.get(lineage.SCHEMA_FINGERPRINT) == schema.fingerprint()


def evolution_problem(champion: DatasetSchema, schema: DatasetSchema) -> str | None:
    """Why a model trained on ``schema`` cannot be gated against a champion trained on ``champion``, or None.

    It can when the snapshot keeps every feature of the champion's with the same kind, and the same target (task
    and classes): the champion then scores the snapshot's holdout rows from its own features. Added features are
    fine. A removed or retyped feature, or another target, is not: the two models would not score the same rows.
    """
    kinds = {f.name: f.kind for f in schema.features}
    removed = [f.name for f in champion.features if f.name not in kinds]
    retyped = [f"{f.name} ({f.kind.value} → {kinds[f.name].value})" for f in champion.features
               if f.name in kinds and kinds[f.name] is not f.kind]  # fmt: skip
    problems = []
    if removed:
        problems.append(f"removes feature(s) {', '.join(map(repr, removed))}")
    if retyped:
        problems.append(f"retypes {', '.join(retyped)}")
    if champion.target.recorded() != schema.target.recorded():
        problems.append(f"changes the target ({champion.target.recorded()} → {schema.target.recorded()})")
    if not problems:
        return None
    return (
        f"this snapshot's schema {schema.name!r} {'; '.join(problems)} of the champion's {champion.name!r}, so the "
        "two cannot be scored on the same rows. Keep those features as they were (adding features is fine), or "
        "register it under another model name (--model-name / DRIFTLOOP_MODEL_NAME)"
    )
