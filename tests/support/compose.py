"""What the compose-stack tests share: the secrets the stack requires, and the compose command to run."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

# Every password docker-compose.yml requires (`${NAME:?...}`) and .env.example ships as a placeholder.
SECRETS = (
    "POSTGRES_PASSWORD",
    "PREFECT_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "DRIFTLOOP_DB_PASSWORD",
    "REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "PREFECT_AUTH_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_LOOP_PASSWORD",
    "MLFLOW_READER_PASSWORD",
    "MLFLOW_FLASK_SECRET",
)


def compose_command() -> list[str]:
    """``docker-compose`` (v1), else ``docker compose`` (v2); skip without either, or fail when CI=true."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    message = "neither docker-compose (Debian: apt-get install docker-compose) nor `docker compose` is installed"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
