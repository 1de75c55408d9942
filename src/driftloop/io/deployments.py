"""Put the deployments on a Prefect server: prefect.yaml's, once per model of the project (or as they are).

prefect.yaml stays the one place that declares what a deployment is (entrypoint, pool, concurrency, schedule,
trigger); ``model_deployments`` adds what differs per model: its name, its parameters, its drift schedule, a
retrain trigger that matches only that model's events, and its score job's schedule (no job: no score
deployment). Each model's deployments have their own concurrency limit, so one model's retrain never waits for
another's.
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from driftloop.core.project import Project, ProjectModel
from driftloop.errors import ServiceError
from driftloop.events import model_resource
from driftloop.io.services import venv_bin
from driftloop.settings import Settings

TRAIN = "flows/train.py:train_model"
DRIFT_CHECK = "flows/drift.py:check_drift"
RETRAIN = "flows/retrain.py:retrain_model"
SCORE = "flows/score.py:score_table"
GENERATED_FILE = "prefect.models.yaml"  # under DRIFTLOOP_HOME: what `driftloop up` deployed, to read


def deployment_name(template: str, model: str) -> str:
    """A model's copy of a prefect.yaml deployment: ``train`` of ``wine`` is ``train-wine``."""
    return f"{template}-{model}"


def model_deployments(
    template: dict[str, Any], project: Project, untrained: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """prefect.yaml (``template``, parsed) with each of its deployments repeated for every model of ``project``.

    The models named in ``untrained`` get no train deployment: their data is not known here.

    Raises:
        ServiceError: a deployment of prefect.yaml runs a flow this function does not know how to key by model.
    """
    generated = {key: value for key, value in template.items() if key != "deployments"}
    deployments: list[dict[str, Any]] = []
    for model in project.models:
        for base in template.get("deployments", []):
            if base.get("entrypoint") == TRAIN and model.name in untrained:
                continue
            deployment = _for_model(base, model)
            if deployment is not None:
                deployments.append(deployment)
    generated["deployments"] = deployments
    return generated


def _for_model(base: dict[str, Any], model: ProjectModel) -> dict[str, Any] | None:
    """``base`` made ``model``'s; None for the score deployment of a model without a score job."""
    deployment = copy.deepcopy(base)
    deployment["name"] = deployment_name(base["name"], model.name)
    deployment["tags"] = [*base.get("tags", []), f"model:{model.name}"]
    entrypoint = base.get("entrypoint")
    if entrypoint == TRAIN:
        given = {key: value for key, value in model.train_parameters().items() if value is not None}
        deployment["parameters"] = {**base.get("parameters", {}), **given}
    elif entrypoint == DRIFT_CHECK:
        deployment["parameters"] = {**base.get("parameters", {}), **model.drift_parameters()}
        if model.drift.cron is not None:
            for schedule in deployment.get("schedules", []):
                schedule["cron"] = model.drift.cron
    elif entrypoint == RETRAIN:
        for trigger in deployment.get("triggers", []):
            trigger.setdefault("match", {})["prefect.resource.id"] = model_resource(model.name)
    elif entrypoint == SCORE:
        parameters = model.score_parameters()
        if parameters is None or model.score is None:
            return None
        deployment["parameters"] = {**base.get("parameters", {}), **parameters}
        deployment["schedules"] = [{"cron": model.score.cron, "timezone": "UTC", "active": True}]
    else:
        raise ServiceError(f"prefect.yaml deployment {base['name']!r} runs {entrypoint!r}: not keyed by model")
    return deployment


def deploy_all(
    settings: Settings, project_dir: Path, prefect_file: Path | None = None, pool_type: str = "process"
) -> list[str]:
    """Deploy a prefect file's deployments as they are, for the one model of the settings (the compose stack's way).

    Args:
        settings: Whose work pool (created or overwritten as ``pool_type``) and Prefect server.
        project_dir: The checkout the deployments run from.
        prefect_file: Default: ``project_dir``/prefect.yaml (process pool); the compose stack deploys
            deployments/project/prefect.docker.yaml on a Docker pool.
        pool_type: The work pool's type: ``process``, ``docker`` (prefect-docker) or ``kubernetes``.

    Returns:
        The deployment names Prefect reported (``flow/deployment``).

    Raises:
        ServiceError: prefect.yaml is missing, or Prefect refused the pool or the deployments.
    """
    source = _prefect_file(project_dir, prefect_file or Path("prefect.yaml"))
    return _deploy(settings, project_dir, source, pool_type)


def deploy_project(
    settings: Settings, project_dir: Path, project: Project, untrained: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """Create the work pool if needed and deploy prefect.yaml's deployments for every model of ``project``.

    The models named in ``untrained`` get no train deployment (``model_deployments``).

    Deployments of driftloop's flows that the project no longer has (a model removed, or the one-model names
    of prefect.yaml deployed by hand) are deleted, so no stale trigger retrains a model twice.

    Returns:
        The deployment names Prefect reported, and those deleted (``flow/deployment``).

    Raises:
        ServiceError: prefect.yaml is missing, or Prefect refused the pool or the deployments.
    """
    source = _prefect_file(project_dir, Path("prefect.yaml"))
    generated = settings.home / GENERATED_FILE
    generated.parent.mkdir(parents=True, exist_ok=True)
    template = yaml.safe_load(source.read_text(encoding="utf-8"))
    header = "# Written by `driftloop up` from prefect.yaml and the project's models; edit those, not this.\n"
    generated.write_text(header + yaml.safe_dump(model_deployments(template, project, untrained), sort_keys=False))
    deployed = _deploy(settings, project_dir, generated)
    return deployed, _delete_stale(settings, template, set(deployed))


def _prefect_file(project_dir: Path, relative: Path) -> Path:
    source = project_dir / relative
    if not source.is_file():
        raise ServiceError(f"no {relative} in {project_dir}: run driftloop from a checkout of the repository")
    return source


def _deploy(settings: Settings, project_dir: Path, prefect_file: Path, pool_type: str = "process") -> list[str]:
    """The work pool (created or overwritten), then `prefect deploy --all` of ``prefect_file`` from ``project_dir``."""
    _put_work_pool(settings.work_pool, pool_type)
    env = {**os.environ, **settings.process_env()}
    prefect = venv_bin("prefect")
    deploy = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
        env=env, cwd=project_dir, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if deploy.returncode != 0:
        raise ServiceError(f"prefect deploy --all failed:\n{deploy.stdout[-3000:]}{deploy.stderr[-2000:]}")
    return [
        line.split("'")[1]
        for line in deploy.stdout.splitlines()
        if "Deployment '" in line and "successfully created" in line
    ]


def _put_work_pool(name: str, pool_type: str) -> None:
    """Create the work pool ``name``, or reset an existing one, with its worker type's default job template.

    What `prefect work-pool create --type ... --overwrite` does, on this process's Prefect client: the command's
    own process cost `up` about 3.7 s of CPU, mostly importing Prefect again.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.base import BaseWorker
    from prefect.workers.process import ProcessWorker

    # Looking a type up loads every installed Prefect collection (Kubernetes' client among them); the process
    # worker is Prefect's own.
    worker = ProcessWorker if pool_type == ProcessWorker.type else BaseWorker.get_worker_class_from_type(pool_type)
    if worker is None:
        raise ServiceError(f"cannot create work pool {name!r}: no Prefect worker of type {pool_type!r} is installed")
    pool = WorkPoolCreate(name=name, type=pool_type, base_job_template=worker.get_default_base_job_template())
    try:
        with get_client(sync_client=True) as client:
            client.create_work_pool(pool, overwrite=True)
    except httpx.HTTPError as error:  # refused, or no server: named, as the command named it
        raise ServiceError(f"cannot create work pool {name!r}: {error}") from error


def _delete_stale(settings: Settings, template: dict[str, Any], keep: set[str]) -> list[str]:
    """Delete deployments of prefect.yaml's flows that are not in ``keep`` (``flow/deployment`` names); their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    flows = sorted({_flow_name(d["entrypoint"]) for d in template.get("deployments", [])})
    with get_client(sync_client=True) as client:
        found = client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=flows)))
        names = {flow.id: flow.name for flow in found}
        deleted = []
        for deployment in client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=flows))):
            name = f"{names.get(deployment.flow_id)}/{deployment.name}"
            if name not in keep:
                client.delete_deployment(deployment.id)
                deleted.append(name)
    return sorted(deleted)


def _flow_name(entrypoint: str) -> str:
    """The flow name of an entrypoint of prefect.yaml (its ``@flow(name=...)``: function name with dashes)."""
    names = {TRAIN: "train-model", DRIFT_CHECK: "check-drift", RETRAIN: "retrain-model", SCORE: "score-table"}
    return names[entrypoint]
