"""The flows' deployments on the Docker and Kubernetes work pools, rendered offline by the workers' own code.

Each deployment's job variables go through what the worker does with them before it starts anything: Prefect's
`{{ $VAR }}` templating (as `prefect deploy` applies it), the pool's base job template
(``from_template_and_values``) and ``prepare_for_flow_run``. The Docker container settings are then read for who
gets the Docker socket; the Kubernetes Job is validated strictly against the Kubernetes 1.33 schemas.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import Flow, FlowRun
from prefect.utilities.templating import apply_values
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

ROOT = Path(__file__).resolve().parents[2]
DOCKER_FILE = ROOT / "deployments" / "project" / "prefect.docker.yaml"
K8S_FILE = ROOT / "deployments" / "k8s" / "prefect.k8s.yaml"
K8S_TEMPLATE = ROOT / "deployments" / "k8s" / "work-pool.json"
KUBERNETES_VERSION = "1.33.0"
SOCKET = "/var/run/docker.sock"
ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")
# No server is asked: with no block or variable placeholders in a template, Prefect never uses the client.
OFFLINE_CLIENT = PrefectClient("http://127.0.0.1:9/api")


def deployments(path: Path) -> dict[str, dict[str, Any]]:
    return {deployment["name"]: deployment for deployment in yaml.safe_load(path.read_text())["deployments"]}


def compose_worker_env() -> dict[str, str]:
    """The compose stack worker's environment as compose would set it: defaults taken, required values made up."""
    worker = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["prefect-worker"]
    resolved = {}
    for name, value in worker["environment"].items():
        text = str(value)
        text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), text)
        text = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: f"secret-{m.group(1).lower()}", text)
        resolved[name] = text
    return resolved


def templated(path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """The deployments after `prefect deploy`'s env templating, run with ``env`` as the environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    document = apply_values(yaml.safe_load(path.read_text()), dict(env), remove_notset=False)
    return {deployment["name"]: deployment for deployment in document["deployments"]}


def flow_run(flow_name: str) -> tuple[Flow, FlowRun]:
    flow = Flow(name=flow_name)
    return flow, FlowRun(flow_id=flow.id, name="calm-otter")


def docker_job(job_variables: dict[str, Any]) -> DockerWorkerJobConfiguration:
    template = DockerWorker.get_default_base_job_template()
    configuration = asyncio.run(
        DockerWorkerJobConfiguration.from_template_and_values(template, job_variables, client=OFFLINE_CLIENT)
    )
    flow, run = flow_run("train-model")
    configuration.prepare_for_flow_run(run, flow=flow)
    return configuration


def kubernetes_job(template: dict[str, Any], job_variables: dict[str, Any]) -> dict[str, Any]:
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(template, job_variables, client=OFFLINE_CLIENT)
    )
    flow, run = flow_run("train-model")
    configuration.prepare_for_flow_run(run, flow=flow)
    return configuration.job_manifest


# --- Docker: the compose stack's pool ---------------------------------------------------------------------------


def test_docker_prefect_file_is_prefect_yaml_plus_the_ship_job() -> None:
    process = deployments(ROOT / "prefect.yaml")
    docker = deployments(DOCKER_FILE)
    assert docker.keys() == process.keys() | {"ship"}
    assert docker["ship"]["entrypoint"] == "flows/ship.py:ship_model"
    for name, deployment in process.items():
        ours = {key: value for key, value in docker[name].items() if key != "work_pool"}
        assert ours == {key: value for key, value in deployment.items() if key != "work_pool"}, name


def test_the_compose_worker_sets_every_variable_the_docker_deployments_read() -> None:
    env = compose_worker_env()
    wanted = set(ENV_PLACEHOLDER.findall(DOCKER_FILE.read_text()))
    assert wanted - env.keys() == set()
    pools = {deployment["work_pool"]["name"] for deployment in deployments(DOCKER_FILE).values()}
    assert pools == {env["DRIFTLOOP_WORK_POOL"]}


def test_docker_job_variables_fit_the_docker_workers_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = {**DockerWorker.get_default_base_job_template()["variables"], "additionalProperties": False}
    rendered = templated(DOCKER_FILE, compose_worker_env(), monkeypatch)
    for deployment in rendered.values():
        jsonschema.validate(deployment["work_pool"]["job_variables"], schema)
    with pytest.raises(jsonschema.ValidationError, match="mem_limt"):
        jsonschema.validate({**deployment["work_pool"]["job_variables"], "mem_limt": "1g"}, schema)


def test_only_the_ship_job_gets_the_docker_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    env = compose_worker_env()
    rendered = templated(DOCKER_FILE, env, monkeypatch)
    for name, deployment in rendered.items():
        job = docker_job(deployment["work_pool"]["job_variables"])
        assert job.image == env["DRIFTLOOP_PROJECT_IMAGE"]
        assert job.get_network_mode() == "host"
        assert job.auto_remove is True
        assert f"{env['DRIFTLOOP_HOME_VOLUME']}:/var/lib/driftloop" in job.volumes
        assert f"{env['DRIFTLOOP_DATA_DIR']}:/data:ro" in job.volumes
        assert job.env["MLFLOW_TRACKING_URI"] == env["MLFLOW_TRACKING_URI"]
        assert job.env["DRIFTLOOP_PREDICTION_LOG_URL"] == env["DRIFTLOOP_PREDICTION_LOG_URL"]
        assert job.container_create_kwargs is not None
        assert job.container_create_kwargs["extra_hosts"]["mlflow"] == "127.0.0.1"
        assert not any("{{" in str(value) for value in job.env.values()), name
        sockets = [volume for volume in job.volumes if volume.startswith(f"{SOCKET}:")]
        if name == "ship":
            assert sockets == [f"{SOCKET}:{SOCKET}"]
            proxy = env["DRIFTLOOP_PROXY_CONFIG_DIR"]
            assert f"{proxy}:{proxy}" in job.volumes
            assert job.container_create_kwargs["user"] == "0:0"
            assert job.env["DRIFTLOOP_DEPLOY"] == "docker"
            assert job.env["DRIFTLOOP_SLOT_PORTS"] == env["DRIFTLOOP_SLOT_PORTS"]
        else:
            assert sockets == [], f"{name} must not reach the Docker engine"
            assert "user" not in job.container_create_kwargs  # the image's own user: driftloop (10001)
            assert job.env["DRIFTLOOP_DEPLOY"] == "ship-deployment"
            assert job.env["DRIFTLOOP_SHIP_DEPLOYMENT"] == "ship-model/ship"


# --- Kubernetes: deployments/k8s/work-pool.json ------------------------------------------------------------------


def kubernetes_env() -> dict[str, str]:
    return {
        "DRIFTLOOP_FLOW_IMAGE": "registry.example.com/driftloop/flows:1.0",
        "MLFLOW_TRACKING_URI": "http://mlflow.mlflow:5000",
        "DRIFTLOOP_DRIFT_CRON": "*/10 * * * *",
    }


def test_our_kubernetes_template_takes_the_same_job_variables_as_the_workers() -> None:
    ours = json.loads(K8S_TEMPLATE.read_text())
    default = KubernetesWorker.get_default_base_job_template()
    assert ours["variables"] == default["variables"]
    assert {k: v for k, v in ours["job_configuration"].items() if k != "job_manifest"} == {
        k: v for k, v in default["job_configuration"].items() if k != "job_manifest"
    }


def test_every_kubernetes_deployment_renders_a_valid_restricted_job(monkeypatch: pytest.MonkeyPatch) -> None:
    template = json.loads(K8S_TEMPLATE.read_text())
    env = kubernetes_env()
    rendered = templated(K8S_FILE, env, monkeypatch)
    assert rendered.keys() == deployments(ROOT / "prefect.yaml").keys()
    for name, deployment in rendered.items():
        variables = deployment["work_pool"]["job_variables"]
        jsonschema.validate(variables, {**template["variables"], "additionalProperties": False})
        job = kubernetes_job(template, variables)
        assert kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True) == "1.33", name
        assert job["metadata"]["namespace"] == "prefect"
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == env["DRIFTLOOP_FLOW_IMAGE"]
        assert {"name": "MLFLOW_TRACKING_URI", "value": env["MLFLOW_TRACKING_URI"]} in container["env"]
        assert container["resources"] == {"limits": {"memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}
        # Pod Security Standard "restricted": what the namespace driftloop enforces.
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert mounts == {"/var/lib/driftloop", "/tmp"}  # the writable paths of a read-only root filesystem


def test_the_workers_default_kubernetes_template_fails_strict_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why work-pool.json exists: the default puts a Job's completions and parallelism into the pod spec."""
    rendered = templated(K8S_FILE, kubernetes_env(), monkeypatch)
    job = kubernetes_job(
        KubernetesWorker.get_default_base_job_template(), rendered["train"]["work_pool"]["job_variables"]
    )
    with pytest.raises(kubernetes_validate.ValidationError, match="completions|parallelism"):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
