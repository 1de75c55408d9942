"""The project file (``driftloop.yaml``): an installation's models, read and checked; or the default project.

Relative paths in the file (data, schema, ``path/to/file.py:factory`` estimators, a score job's data and out) are
relative to the file's own directory, so a project works from wherever driftloop is started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from driftloop.core.project import Project, ProjectModel
from driftloop.errors import ConfigError
from driftloop.io.datasets import describe_yaml_error
from driftloop.settings import Settings

EXAMPLE = "models: [{name: churn, data: churn.csv, schema: churn.schema.yaml}]"


def load_project(path: Path) -> Project:
    """The project declared in ``path``.

    Raises:
        ConfigError: the file is unreadable, not YAML, or breaks the project's rules (each problem named with
            the model and field it concerns).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"project file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read project file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"project file {path} is not valid YAML: {describe_yaml_error(error)}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list) or not raw["models"]:
        raise ConfigError(f"project file {path} must hold 'models:', a list of one or more models, e.g. {EXAMPLE}")
    base = path.parent.resolve()
    models = [_resolved(entry, base) if isinstance(entry, dict) else entry for entry in raw["models"]]
    try:
        return Project.model_validate({**raw, "models": models})
    except ValidationError as error:
        # pydantic also counts a tuple whose items failed as too short: the list is not empty (checked above)
        found = [p for p in error.errors() if not (tuple(p["loc"]) == ("models",) and p["type"] == "too_short")]
        problems = [_describe(problem, models) for problem in found]
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"project file {path} is invalid ({len(problems)} problem(s)):\n{lines}") from None


def default_project(settings: Settings) -> Project:
    """The installation without a project file: one model, the settings' own (name, data, schema)."""
    model = {"name": settings.model_name, "data": str(settings.data_path), "schema": str(settings.schema_path)}
    return Project(models=(ProjectModel.model_validate(model),))


def project_for(settings: Settings) -> Project:
    """The project file's models when it exists, else the default project.

    The file is ``DRIFTLOOP_PROJECT_FILE``, default ``./driftloop.yaml``.
    """
    if settings.project_file.is_file():
        return load_project(settings.project_file)
    return default_project(settings)


def missing_schema_files(project: Project) -> list[str]:
    """Each model whose schema file is not there, as ``model 'a': schema file /abs/a.yaml does not exist``."""
    return [
        f"model {model.name!r}: schema file {model.schema_path} does not exist"
        for model in project.models
        if not Path(model.schema_path).is_file()
    ]


def _resolved(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    """``entry`` with its relative paths (its score job's too) made absolute against ``base``; URLs left as they are."""
    resolved = dict(entry)
    data = resolved.get("data")
    if isinstance(data, str) and "://" not in data:
        resolved["data"] = str((base / data).resolve())
    schema = resolved.get("schema")
    if isinstance(schema, str):
        resolved["schema"] = str((base / schema).resolve())
    score = resolved.get("score")
    if isinstance(score, dict):
        resolved["score"] = {
            **score,
            **{key: str((base / score[key]).resolve()) for key in ("data", "out")
               if isinstance(score.get(key), str) and "://" not in score[key]},
        }  # fmt: skip
    estimator = resolved.get("estimator")
    if isinstance(estimator, str) and ":" in estimator:
        module, _, factory = estimator.rpartition(":")
        if module.endswith(".py"):
            resolved["estimator"] = f"{(base / module).resolve()}:{factory}"
    return resolved


def _describe(problem: Any, models: list[Any]) -> str:
    location = list(problem["loc"])
    where = ".".join(str(part) for part in location) or "models"
    if len(location) >= 2 and location[0] == "models" and isinstance(location[1], int):
        entry = models[location[1]] if location[1] < len(models) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        rest = ".".join(str(part) for part in location[2:])
        where = f"model {name!r}" if name else f"models[{location[1]}]"
        where += f": {rest}" if rest else ""
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"
