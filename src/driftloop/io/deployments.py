"""Put prefect.yaml's deployments on a Prefect server: the work pool, then `prefect deploy --all`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from driftloop.errors import ServiceError
from driftloop.io.services import venv_bin
from driftloop.settings import Settings


def deploy_all(settings: Settings, project_dir: Path) -> list[str]:
    """Create the work pool if needed and deploy every deployment in ``project_dir/prefect.yaml``.

    Returns:
        The deployment names Prefect reported (``flow/deployment``).

    Raises:
        ServiceError: prefect.yaml is missing, or Prefect refused the pool or the deployments.
    """
    if not (project_dir / "prefect.yaml").is_file():
        raise ServiceError(f"no prefect.yaml in {project_dir}: run driftloop from a checkout of the repository")
    env = {**os.environ, **settings.process_env()}
    prefect = venv_bin("prefect")
    pool = subprocess.run(
        [prefect, "work-pool", "create", settings.work_pool, "--type", "process", "--overwrite"],
        env=env, cwd=project_dir, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if pool.returncode != 0:
        raise ServiceError(
            f"cannot create work pool {settings.work_pool!r}:\n{pool.stdout[-2000:]}{pool.stderr[-2000:]}"
        )
    deploy = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"],
        env=env, cwd=project_dir, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if deploy.returncode != 0:
        raise ServiceError(f"prefect deploy --all failed:\n{deploy.stdout[-3000:]}{deploy.stderr[-2000:]}")
    return [
        line.split("'")[1]
        for line in deploy.stdout.splitlines()
        if "Deployment '" in line and "successfully created" in line
    ]
