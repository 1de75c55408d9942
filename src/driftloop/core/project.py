"""An installation's models: what each trains on and how it is gated and monitored (the project file's contract).

``driftloop.yaml`` declares them (``io.project`` reads it); without one, the installation has one model, the
settings' own (the bundled churn data by default). The first model is the default: the one the unnamed serving
routes serve, and the one a command without ``--model-name`` works on.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from driftloop.core.drift_rule import DriftRule, EpisodeTrigger
from driftloop.core.lineage import MODEL_NAME
from driftloop.core.schema import repeated_names

# Five-field cron: minute, hour, day of month, month, day of week.
_CRON_FIELDS = 5


class DriftPolicy(BaseModel):
    """When a model's drift check runs and what it reads; unset fields take the settings' values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str | None = Field(default=None, description="Five-field cron of the drift-check deployment (UTC).")
    window_rows: int | None = Field(default=None, ge=1)
    min_rows: int | None = Field(default=None, ge=1)
    drift_share: float | None = Field(default=None, gt=0, le=1)
    rule: DriftRule | None = Field(default=None, description="share | weighted | either (core.drift_rule)")
    opens_episode: tuple[EpisodeTrigger, ...] | None = Field(
        default=None, min_length=1, description="features | estimate | labels: what opens a drift episode"
    )

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str | None) -> str | None:
        return _five_field_cron(value)


def _five_field_cron(value: str | None) -> str | None:
    if value is not None and len(value.split()) != _CRON_FIELDS:
        raise ValueError(f"cron {value!r} needs five fields (minute hour day month weekday)")
    return value


class ScoreJob(BaseModel):
    """A model's scheduled batch scoring: which table, where the answers go, when (``flows/score.py``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str = Field(description="CSV, Parquet, a directory of Parquet (relative to the project file), or a URL.")
    query: str | None = Field(default=None, description="The SQL selecting the rows, when data is a database.")
    out: str = Field(description="Directory under which each run writes its own subdirectory of Parquet files.")
    cron: str = Field(description="Five-field cron of the score deployment (UTC).")
    keys: tuple[str, ...] = Field(default=(), description="Input columns kept beside each prediction.")
    version: str | None = Field(default=None, description="A model version; default: the champion at run time.")
    workers: int = Field(default=2, ge=1, description="Worker processes of the local Dask cluster.")
    dask_scheduler: str | None = Field(default=None, description="A Dask scheduler to run on instead (tcp://...).")
    log_fraction: float | None = Field(default=None, ge=0, le=1)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        _five_field_cron(value)
        return value

    @model_validator(mode="after")
    def _query_needs_a_database(self) -> ScoreJob:
        if self.query is not None and "://" not in self.data:
            raise ValueError("score: query needs data to be a database URL (dialect://user@host/db)")
        return self


class ProjectModel(BaseModel):
    """One model of an installation: its name, what it trains on, its estimator, its gate and its drift policy."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str
    data: str = Field(description="Snapshot: a file or directory (relative to the project file), or a database URL.")
    query: str | None = Field(default=None, description="The SQL selecting the snapshot, when data is a database.")
    schema_path: str = Field(alias="schema", description="The snapshot's schema file.")
    estimator: str | None = Field(
        default=None, description="A built-in estimator, or package.module:factory / path/to/file.py:factory."
    )
    params: dict[str, Any] = Field(default_factory=dict)
    floors: dict[str, float] | None = None
    tolerance: float = Field(default=0.005, ge=0, lt=1)  # a difference of ROC AUC or R² (GatePolicy)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    score: ScoreJob | None = None

    @field_validator("name")
    @classmethod
    def _registry_name(cls, value: str) -> str:
        if not MODEL_NAME.fullmatch(value):
            raise ValueError(f"model name {value!r} may only have letters, digits, '_', '.' and '-'")
        return value

    @model_validator(mode="after")
    def _query_needs_a_database(self) -> ProjectModel:
        if self.query is not None and "://" not in self.data:
            raise ValueError(f"model {self.name!r}: query needs data to be a database URL (dialect://user@host/db)")
        return self

    def train_parameters(self) -> dict[str, Any]:
        """The train flow's parameters for this model (``flows/train.py: train_model``)."""
        return {
            "model_name": self.name,
            "data_path": self.data,
            "query": self.query,
            "schema_path": self.schema_path,
            "estimator": self.estimator,
            "params": self.params or None,
            "floors": self.floors,
            "tolerance": self.tolerance,
        }

    def drift_parameters(self) -> dict[str, Any]:
        """The drift-check flow's parameters for this model (``flows/drift.py: check_drift``)."""
        policy = self.drift
        values = {
            "window_rows": policy.window_rows,
            "min_rows": policy.min_rows,
            "drift_share": policy.drift_share,
            "drift_rule": policy.rule,
            "opens_episode": policy.opens_episode,
        }
        return {"model_name": self.name, **{key: value for key, value in values.items() if value is not None}}

    def score_parameters(self) -> dict[str, Any] | None:
        """The score flow's parameters for this model (``flows/score.py: score_table``); None: no score job."""
        job = self.score
        if job is None:
            return None
        values = {
            "data": job.data,
            "query": job.query,
            "out": job.out,
            "keys": list(job.keys) or None,
            "version": job.version,
            "workers": job.workers,
            "dask_scheduler": job.dask_scheduler,
            "log_fraction": job.log_fraction,
        }
        return {"model_name": self.name, **{key: value for key, value in values.items() if value is not None}}


class Project(BaseModel):
    """The models of one installation, the first the default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[ProjectModel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> Project:
        repeated = repeated_names(model.name for model in self.models)
        if repeated:
            raise ValueError(f"model names must be unique; repeated: {repeated}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(model.name for model in self.models)

    @property
    def default(self) -> ProjectModel:
        return self.models[0]

    def model(self, name: str) -> ProjectModel | None:
        return next((model for model in self.models if model.name == name), None)

    def served_beside(self, default: str, more: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The models one server serves beside ``default``: the project's, then ``more`` (DRIFTLOOP_SERVE_MODELS)."""
        return tuple(dict.fromkeys(name for name in (*self.names, *more) if name != default))
