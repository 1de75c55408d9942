"""What a version records about how it was trained, so that a retrain rebuilds it the same way.

Stored as model-version tags (``to_tags`` / ``from_tags``): the estimator and the user's parameters, the gate
policy with its floors, the split, where its training snapshot is kept (content-addressed), the source it came
from with that source's content hash, and the newest label it includes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from driftloop.core import lineage
from driftloop.core.gates import GatePolicy


@dataclass(frozen=True)
class SplitSpec:
    """How a version's snapshot was split: the holdout fraction, the seed, and the features the row hash read.

    ``features`` is None when the hash read all the version's features. It is set when a snapshot added features
    to the champion's: its rows are then placed by the champion's features, and every later version inherits them,
    so a row never changes side along the lineage (``core.snapshot.split_holdout``).
    """

    fraction: float
    seed: int
    features: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TrainingRecipe:
    """How a version was trained.

    Attributes:
        estimator: The estimator's name.
        params: The parameters the user gave (not the defaults driftloop filled in).
        gate: The gate policy it was judged by (floors, tolerance, significance settings).
        split: The holdout fraction and seed, so a retrain holds out the same rows of the same data.
        snapshot_uri: Where its training snapshot is kept in the artifact store (content-addressed).
        data_hash: The snapshot's content hash, checked when it is read back.
        source: Where its data came from originally (a path or URL the user gave).
        source_hash: That source's content hash when it was last read.
        labels_through: The newest label (feedback time, ISO 8601) its snapshot includes; None when it
            includes none, so every labelled prediction is new to it.
        base_rows: A retrain's: how many of its snapshot's first rows are its base's; the rest are the recent
            labelled rows (``core.snapshot.after_base``). None for a snapshot without recent rows.
    """

    estimator: str
    params: Mapping[str, Any] = field(default_factory=dict)
    gate: GatePolicy = field(default_factory=GatePolicy)
    split: SplitSpec = field(default_factory=lambda: SplitSpec(0.25, 42))
    snapshot_uri: str | None = None
    data_hash: str | None = None
    source: str | None = None
    source_hash: str | None = None
    labels_through: str | None = None
    base_rows: int | None = None

    def to_tags(self) -> dict[str, str]:
        tags = {
            lineage.ESTIMATOR: self.estimator,
            lineage.PARAMS: json.dumps(dict(self.params), sort_keys=True, default=str),
            lineage.GATE_POLICY: json.dumps(self.gate.as_dict(), sort_keys=True),
            lineage.SPLIT: json.dumps(
                {"fraction": self.split.fraction, "seed": self.split.seed}
                | ({"features": list(self.split.features)} if self.split.features is not None else {})
            ),
        }
        optional = {
            lineage.SNAPSHOT_URI: self.snapshot_uri,
            lineage.DATA_HASH: self.data_hash,
            lineage.SOURCE: self.source,
            lineage.SOURCE_HASH: self.source_hash,
            lineage.LABELS_THROUGH: self.labels_through,
            lineage.BASE_ROWS: None if self.base_rows is None else str(self.base_rows),
        }
        tags.update({key: value for key, value in optional.items() if value is not None})
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], default_split: SplitSpec) -> TrainingRecipe:
        """Read a recipe back; versions registered before a field existed get its default.

        Raises:
            ValueError: a recipe tag is present but not what ``to_tags`` writes.
        """
        try:
            params = json.loads(tags.get(lineage.PARAMS, "{}"))
            gate = json.loads(tags[lineage.GATE_POLICY]) if lineage.GATE_POLICY in tags else None
            split = json.loads(tags[lineage.SPLIT]) if lineage.SPLIT in tags else None
            policy = GatePolicy(**gate) if gate is not None else GatePolicy()
            split_spec = _split_spec(split) if split else default_split
            base_rows = int(tags[lineage.BASE_ROWS]) if lineage.BASE_ROWS in tags else None
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"the version's training recipe tags are not readable: {error}") from error
        if not isinstance(params, dict):
            raise ValueError(f"{lineage.PARAMS} must hold a JSON object, got {params!r}")
        return cls(
            estimator=tags.get(lineage.ESTIMATOR, "logistic_regression"),
            params=params,
            gate=policy,
            split=split_spec,
            snapshot_uri=tags.get(lineage.SNAPSHOT_URI),
            data_hash=tags.get(lineage.DATA_HASH),
            # Versions registered before the source was recorded: the file they were trained from.
            source=tags.get(lineage.SOURCE) or tags.get(lineage.DATA_PATH),
            source_hash=tags.get(lineage.SOURCE_HASH) or tags.get(lineage.DATA_HASH),
            labels_through=tags.get(lineage.LABELS_THROUGH),
            base_rows=base_rows,
        )


class RetrainInput(BaseModel):
    """What a retrain adds to an ordinary training run (a parameter of the training flow).

    Attributes:
        drifted_version: The champion version whose drift asked for the retrain.
        recent_data_path: The recent labelled rows (Parquet), appended to the base data; None when the retrain
            uses a changed source alone.
        improve_on: The holdout segment where the candidate must be significantly better.
        min_effect: How far above zero the improvement's interval must lie.
        source: The data source the champion came from, carried to the new version.
        source_hash: That source's content hash as this retrain found it.
        labels_through: The newest label time among the recent rows (ISO 8601).
        truth_changed: The drift check that asked found the labels degraded: the candidate is held to the recent
            rows alone (``GatePolicy.truth_changed``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    drifted_version: str
    recent_data_path: str | None = None
    improve_on: str = "recent"
    min_effect: float = Field(default=0.0, ge=0)
    source: str | None = None
    source_hash: str | None = None
    labels_through: str | None = None
    truth_changed: bool = False


def _split_spec(recorded: Mapping[str, Any]) -> SplitSpec:
    features = recorded.get("features")
    if features is not None and not (isinstance(features, list) and all(isinstance(f, str) for f in features)):
        raise ValueError(f"the split's features must be a list of names, got {features!r}")
    return SplitSpec(
        float(recorded["fraction"]), int(recorded["seed"]), tuple(features) if features is not None else None
    )
