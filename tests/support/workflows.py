"""The GitHub Actions workflows as data, and the environment the CD workflow's registry snippets run in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient

from driftloop import events
from tests.support.host import PROJECT_DIR

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
CD = WORKFLOWS / "cd.yml"


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """This environment without driftloop's, MLflow's and Prefect's variables: an empty store under tmp_path."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))}
    return {**kept, "DRIFTLOOP_HOME": str(tmp_path / "home"), **env}


def champion_env(tmp_path: Path) -> dict[str, str]:
    """The CD job's environment for CHAMPION_PY: model ``m`` in an MLflow store under tmp_path (``tracking_uri``)."""
    return clean_env(tmp_path, MLFLOW_TRACKING_URI=tracking_uri(tmp_path), DRIFTLOOP_MODEL_NAME="m")


def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def make_champion(tmp_path: Path) -> None:
    """Register two versions of ``m`` in the store of ``champion_env`` and make version 2 the champion."""
    client = MlflowClient(tracking_uri=tracking_uri(tmp_path))
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", source=str(tmp_path))
    client.set_registered_model_alias("m", events.CHAMPION, "2")
