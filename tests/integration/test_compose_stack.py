"""The production stack for real: build the substitute and project images, `docker-compose up` everything but
Grafana (no substitute for it) on free ports, check every service answers, run the `train` deployment on the
stack's Docker work pool (its own container, which hands the promotion to the `ship` deployment's container, the
only one with the Docker socket) and get a prediction through nginx from the version it rolled out, then
`down -v` and nothing is left.

Needs a Docker engine, a local python:3.11-slim and docker-compose: skipped without them, failed in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import redis

from driftloop.io.datasets import read_snapshot
from driftloop.io.prefect_http import prefect_api_client
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA
from tests.support.compose import SECRETS, compose_command
from tests.support.docker_engine import remove_test_image, require_base_image, require_docker
from tests.support.host import free_port
from tests.support.serving import wait_until
from tests.support.stack import forged_drift_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILES = ("-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.substitutes.yml"))
SERVICES = ("postgres", "prefect-server", "mlflow", "redis", "nginx", "prefect-worker", "prometheus")
PORTS = ("POSTGRES", "PREFECT", "MLFLOW", "REDIS", "PROMETHEUS", "GRAFANA", "WORKER_HEALTH", "PROXY", "BLUE", "GREEN")
FLOW_DEPLOYMENTS = (
    ("train-model", "train"),
    ("check-drift", "drift-check"),
    ("retrain-model", "retrain"),
    ("score-table", "score"),
    ("ship-model", "ship"),
)
HEALTHY_TIMEOUT = 420.0
TRAIN_TIMEOUT = 1200.0


def stack_env(run_id: str, ports: dict[str, int], proxy_dir: Path, secret: str, data_dir: Path) -> dict[str, str]:
    return {
        **{name: f"{secret}-{index}" for index, name in enumerate(SECRETS)},
        "POSTGRES_PORT": str(ports["POSTGRES"]),
        "PREFECT_PORT": str(ports["PREFECT"]),
        "MLFLOW_PORT": str(ports["MLFLOW"]),
        "REDIS_PORT": str(ports["REDIS"]),
        "PROMETHEUS_PORT": str(ports["PROMETHEUS"]),
        "GRAFANA_PORT": str(ports["GRAFANA"]),
        "WORKER_HEALTH_PORT": str(ports["WORKER_HEALTH"]),
        "DRIFTLOOP_PROXY_PORT": str(ports["PROXY"]),
        "DRIFTLOOP_SLOT_PORTS": f"{ports['BLUE']},{ports['GREEN']}",
        "DRIFTLOOP_PROXY_CONTAINER": f"dltest-{run_id}-proxy",
        "DRIFTLOOP_PROXY_DIR": str(proxy_dir),
        "DRIFTLOOP_MODEL_NAME": f"stack{run_id}",
        "DRIFTLOOP_HOME_VOLUME": f"dltest-{run_id}-home",
        "DRIFTLOOP_DATA_DIR": str(data_dir),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        # No scheduled drift check: the tests start each run themselves, and a scheduled one (with the retrain its
        # verdict may start) could still hold a container when test_down_leaves_no_container looks.
        "DRIFTLOOP_DRIFT_CRON": "0 0 1 1 *",
    }


@dataclass
class Stack:
    project: str
    env_file: Path
    env: dict[str, str]
    client: docker.DockerClient
    timings: dict[str, float] = field(default_factory=dict)

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        clean = {key: value for key, value in os.environ.items() if key not in self.env}
        argv = [*compose_command(), "-p", self.project, "--env-file", str(self.env_file), *FILES, *args]
        result = subprocess.run(argv, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return result

    def port(self, name: str) -> int:
        return int(self.env[name])

    @property
    def prefect_auth(self) -> tuple[str, str]:
        return "driftloop", self.env["PREFECT_AUTH_PASSWORD"]

    @property
    def mlflow_reader(self) -> tuple[str, str]:
        return "driftloop-reader", self.env["MLFLOW_READER_PASSWORD"]

    def containers(self) -> list[docker.models.containers.Container]:
        filters = {"label": f"com.docker.compose.project={self.project}"}
        return self.client.containers.list(all=True, ignore_removed=True, filters=filters)

    def container(self, service: str) -> docker.models.containers.Container:
        (found,) = [c for c in self.containers() if c.labels.get("com.docker.compose.service") == service]
        return found

    def health(self) -> dict[str, str]:
        states = {}
        for container in self.containers():
            container.reload()
            state = container.attrs["State"]
            states[container.labels["com.docker.compose.service"]] = (
                state.get("Health", {}).get("Status") or state["Status"]
            )
        return states

    def logs(self, service: str, tail: int = 80) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), service, check=False).stdout

    def model_containers(self) -> list[docker.models.containers.Container]:
        model = self.env["DRIFTLOOP_MODEL_NAME"]
        filters = {"label": f"driftloop.model.name={model}"}
        return self.client.containers.list(all=True, ignore_removed=True, filters=filters)

    def flow_containers(self) -> list[docker.models.containers.Container]:
        """Containers the Docker worker started for this stack's flow runs (they all mount its home volume)."""
        # A flow run's container may be removed between Docker's listing and its inspection.
        filters = {"volume": self.env["DRIFTLOOP_HOME_VOLUME"]}
        return self.client.containers.list(all=True, ignore_removed=True, filters=filters)

    def down(self) -> None:
        for container in [*self.model_containers(), *self.flow_containers()]:
            if not container.labels.get("com.docker.compose.project"):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
        self.compose("down", "-v", "--remove-orphans", "-t", "10", check=False, timeout=300)


@pytest.fixture(scope="module")
def images() -> Iterator[docker.DockerClient]:
    """The substitute images and the project image, built (or found up to date) by scripts/stack-images.sh."""
    client = require_docker()
    require_base_image(client)
    compose_command()
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack-images.sh")], cwd=ROOT, capture_output=True, text=True, timeout=3600
    )
    assert result.returncode == 0, f"scripts/stack-images.sh failed:\n{result.stdout}{result.stderr[-4000:]}"
    print(f"\n{result.stdout}images ready in {time.monotonic() - started:.1f}s")  # noqa: T201
    yield client
    client.close()


def user_data(workdir: Path) -> Path:
    """A user's snapshot and schema in a host directory (DRIFTLOOP_DATA_DIR), readable by the flow containers' uid."""
    directory = workdir / "data"
    directory.mkdir()
    shutil.copy(BUNDLED_DATA, directory / "customers.csv.gz")
    shutil.copy(BUNDLED_SCHEMA, directory / "customers.schema.yaml")
    for path in [workdir, directory, *directory.iterdir()]:
        path.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def stack(images: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_id = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("stack")
    ports = {name: free_port() for name in PORTS}
    assert len(set(ports.values())) == len(ports)
    env = stack_env(run_id, ports, workdir / "proxy", secret=f"test-secret-{run_id}", data_dir=user_data(workdir))
    env_file = workdir / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    stack = Stack(project=f"dlstack{run_id}", env_file=env_file, env=env, client=images)
    try:
        started = time.monotonic()
        stack.compose("up", "-d", *SERVICES, timeout=900)
        stack.timings["up_returned"] = time.monotonic() - started
        deadline = started + HEALTHY_TIMEOUT
        while time.monotonic() < deadline:
            states = stack.health()
            if all(states.get(service) == "healthy" for service in SERVICES):
                break
            if any(states.get(service) in {"unhealthy", "exited", "dead"} for service in SERVICES):
                break
            time.sleep(2)
        stack.timings["healthy"] = time.monotonic() - started
        up, healthy = stack.timings["up_returned"], stack.timings["healthy"]
        print(f"\ncompose up returned after {up:.1f}s, all healthy after {healthy:.1f}s")  # noqa: T201
        yield stack
    finally:
        stack.down()
        for image in images.images.list(name=f"driftloop/{env['DRIFTLOOP_MODEL_NAME']}-serving"):
            remove_test_image(images, image.id)
        shutil.rmtree(workdir, ignore_errors=True)


def test_compose_refuses_the_example_placeholders(images: docker.DockerClient, tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    env = stack_env(run_id, {name: free_port() for name in PORTS}, tmp_path / "proxy", "unused", tmp_path / "data")
    env.update(dict.fromkeys(SECRETS, "change-me"))  # what .env.example ships
    env_file = tmp_path / "placeholders.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    stack = Stack(project=f"dlrefuse{run_id}", env_file=env_file, env=env, client=images)
    try:
        result = stack.compose("up", "-d", "redis", check=False, timeout=300)
        assert result.returncode != 0
        assert stack.container("preflight").attrs["State"]["ExitCode"] == 1
        logs = stack.logs("preflight")
        for name in SECRETS:
            assert f"refusing to start: {name} still has the placeholder from .env.example" in logs
        states = stack.health()
        assert "redis" not in states, "redis was started although the preflight check failed"
    finally:
        stack.down()
    assert stack.containers() == []


def test_every_service_becomes_healthy(stack: Stack) -> None:
    states = stack.health()
    unhealthy = {service: states.get(service) for service in SERVICES if states.get(service) != "healthy"}
    assert not unhealthy, "\n".join(f"{s}: {state}\n{stack.logs(s)}" for s, state in unhealthy.items())
    assert stack.container("preflight").attrs["State"]["ExitCode"] == 0
    accounts = stack.container("mlflow-accounts")
    assert accounts.attrs["State"]["ExitCode"] == 0, stack.logs("mlflow-accounts")
    assert "created driftloop, driftloop-reader" in stack.logs("mlflow-accounts")
    assert "grafana" not in states
    assert stack.container("nginx").name == stack.env["DRIFTLOOP_PROXY_CONTAINER"]


def test_services_answer_on_their_ports(stack: Stack) -> None:
    with httpx.Client(timeout=10) as http:
        assert http.get(f"http://127.0.0.1:{stack.port('PREFECT_PORT')}/api/health").json() is True
        ui = http.get(f"http://127.0.0.1:{stack.port('PREFECT_PORT')}/")
        assert ui.status_code == 200, f"no Prefect UI:\n{stack.logs('prefect-server')}"
        assert "<html" in ui.text.lower()
        mlflow = f"http://127.0.0.1:{stack.port('MLFLOW_PORT')}"
        assert http.get(f"{mlflow}/health").text.strip() == "OK"
        # Containers address MLflow by service name: its host check must let that through.
        by_name = http.get(
            f"{mlflow}/version", headers={"Host": f"mlflow:{stack.port('MLFLOW_PORT')}"}, auth=stack.mlflow_reader
        )
        assert by_name.status_code == 200, by_name.text
        prometheus = f"http://127.0.0.1:{stack.port('PROMETHEUS_PORT')}"
        assert http.get(f"{prometheus}/-/ready").status_code == 200
        targets = http.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        serving = {t["labels"]["slot"]: t["scrapeUrl"] for t in targets if t["labels"]["job"] == "driftloop-serving"}
        blue, green = stack.env["DRIFTLOOP_SLOT_PORTS"].split(",")
        assert serving == {
            "blue": f"http://slot-blue:{blue}/metrics",
            "green": f"http://slot-green:{green}/metrics",
        }
        proxy = f"http://127.0.0.1:{stack.port('DRIFTLOOP_PROXY_PORT')}"
        assert http.get(f"{proxy}/proxy-health").status_code == 200
    cache = redis.Redis(host="127.0.0.1", port=stack.port("REDIS_PORT"), password=stack.env["REDIS_PASSWORD"])
    assert cache.ping() is True
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=stack.port("REDIS_PORT")).ping()


def test_postgres_has_a_database_per_consumer(stack: Stack) -> None:
    port = stack.env["POSTGRES_PORT"]
    query = "select datname || ':' || pg_get_userbyid(datdba) from pg_database order by 1"
    result = stack.container("postgres").exec_run(["psql", "-p", port, "-U", "postgres", "-Atc", query])
    assert result.exit_code == 0, result.output
    owners = set(result.output.decode().split())
    assert {"mlflow:mlflow", "prefect:prefect", "predictions:driftloop"} <= owners


def test_prometheus_config_passes_promtool(images: docker.DockerClient) -> None:
    output = images.containers.run(
        "driftloop/prometheus:local",
        entrypoint="promtool",
        command=["check", "config", "/cfg/prometheus.yml"],
        volumes={str(ROOT / "deployments" / "prometheus"): {"bind": "/cfg", "mode": "ro"}},
        network_mode="host",
        remove=True,
    )
    assert b"is valid prometheus config file syntax" in output


def sample_row() -> dict[str, object]:
    frame = read_snapshot(BUNDLED_DATA).drop(columns=["churn"]).iloc[:1]
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict(orient="records")[0]


def test_only_the_ship_job_is_given_the_docker_socket(stack: Stack) -> None:
    api = f"http://127.0.0.1:{stack.port('PREFECT_PORT')}/api"
    with prefect_api_client(api, auth=stack.prefect_auth) as prefect:
        pool = prefect.get("/work_pools/driftloop-docker")
        assert pool.status_code == 200, f"no Docker work pool:\n{stack.logs('prefect-worker')}"
        assert pool.json()["type"] == "docker"
        mounts = {}
        for flow, name in FLOW_DEPLOYMENTS:
            deployment = prefect.get(f"/deployments/name/{flow}/{name}")
            assert deployment.status_code == 200, f"no {name} deployment:\n{stack.logs('prefect-worker')}"
            assert deployment.json()["work_pool_name"] == "driftloop-docker"
            mounts[name] = deployment.json()["job_variables"]["volumes"]
    socket = "/var/run/docker.sock:/var/run/docker.sock"
    assert [name for name, volumes in mounts.items() if socket in volumes] == ["ship"]
    assert all(f"{stack.env['DRIFTLOOP_HOME_VOLUME']}:/var/lib/driftloop" in volumes for volumes in mounts.values())


def wait_for_end(prefect: httpx.Client, run_id: str, timeout: float) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = prefect.get(f"/flow_runs/{run_id}").json()
        return run if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

    return dict(wait_until(f"flow run {run_id} to end", ended, timeout, every=3))


def test_training_in_the_stack_rolls_the_model_out_behind_nginx(stack: Stack) -> None:
    """On the Docker pool: train (a container) → register → the ship run (another container) → image → rollout."""
    api = f"http://127.0.0.1:{stack.port('PREFECT_PORT')}/api"
    model = stack.env["DRIFTLOOP_MODEL_NAME"]
    with prefect_api_client(api, auth=stack.prefect_auth) as prefect:
        deployment = prefect.get("/deployments/name/train-model/train")
        assert deployment.status_code == 200, f"no train deployment:\n{stack.logs('prefect-worker')}"
        # The user's own files, as the flow container sees the host's DRIFTLOOP_DATA_DIR.
        data = {"data_path": "/data/customers.csv.gz", "schema_path": "/data/customers.schema.yaml"}
        run = prefect.post(f"/deployments/{deployment.json()['id']}/create_flow_run", json={"parameters": data}).json()
        started = time.monotonic()
        finished = wait_for_end(prefect, run["id"], TRAIN_TIMEOUT)
        state = finished["state"]
        print(f"\ntrain flow run: {state.get('type')} after {time.monotonic() - started:.1f}s")  # noqa: T201
        assert state.get("type") == "COMPLETED", f"{state}\n{stack.logs('prefect-worker', tail=200)}"
        # A container per flow run: the Docker worker records the container it started.
        assert finished["work_pool_name"] == "driftloop-docker"
        assert finished["infrastructure_pid"], finished
        assert finished["parameters"]["data_path"] == "/data/customers.csv.gz"

        ship = prefect.get("/deployments/name/ship-model/ship").json()
        ship_runs = prefect.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [ship["id"]]}}}).json()
        assert len(ship_runs) == 1, ship_runs
        (ship_run,) = ship_runs
        assert ship_run["state"]["type"] == "COMPLETED", f"{ship_run['state']}\n{stack.logs('prefect-worker')}"
        assert ship_run["parameters"]["model_name"] == model
        assert ship_run["infrastructure_pid"] not in {None, finished["infrastructure_pid"]}
        assert ship_run["parent_task_run_id"] is not None  # linked to the train run that asked for it

    mlflow = f"http://127.0.0.1:{stack.port('MLFLOW_PORT')}/api/2.0/mlflow"
    alias = httpx.get(
        f"{mlflow}/registered-models/alias",
        params={"name": model, "alias": "champion"},
        auth=stack.mlflow_reader,
        timeout=10,
    )
    assert alias.status_code == 200, alias.text
    champion = alias.json()["model_version"]["version"]

    proxy = f"http://127.0.0.1:{stack.port('DRIFTLOOP_PROXY_PORT')}"
    deadline = time.monotonic() + 60
    response = None
    while time.monotonic() < deadline:
        response = httpx.post(f"{proxy}/predict", json={"features": sample_row()}, timeout=10)
        if response.status_code == 200:
            break
        time.sleep(1)
    assert response is not None
    assert response.status_code == 200, f"{response.text}\n{stack.logs('prefect-worker', tail=200)}"
    assert response.headers["x-model-version"] == champion
    assert any(c.status == "running" for c in stack.model_containers()), "no serving slot of the model is running"


def run_deployment(prefect: httpx.Client, flow: str, name: str, parameters: dict[str, Any]) -> str:
    deployment = prefect.get(f"/deployments/name/{flow}/{name}").json()
    run = prefect.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters})
    assert run.status_code == 201, run.text
    return str(run.json()["id"])


def artifact_of(prefect: httpx.Client, flow_run_id: str, key: str) -> dict[str, Any]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}}
    found = prefect.post("/artifacts/filter", json=body).json()
    assert found, f"flow run {flow_run_id} has no {key!r} artifact"
    return dict(found[-1])


def test_drift_check_retrain_and_score_each_run_in_their_own_flow_container(stack: Stack, tmp_path: Path) -> None:
    """After training, on the Docker pool: drifted traffic through nginx → the drift-check deployment (a container)
    finds drift and emits the event → the retrain deployment's trigger starts a retrain (another container), which
    decides it cannot help without new labels; the score deployment scores a file of the data directory (a third)."""
    from driftloop.core import scenarios
    from driftloop.io.prediction_store import open_prediction_log

    api = f"http://127.0.0.1:{stack.port('PREFECT_PORT')}/api"
    model = stack.env["DRIFTLOOP_MODEL_NAME"]
    proxy = f"http://127.0.0.1:{stack.port('DRIFTLOOP_PROXY_PORT')}"
    full = read_snapshot(BUNDLED_DATA)
    # New customers at twice the price: tenure, contract, the charges and more move against the training data.
    drifted = scenarios.price_increase(scenarios.new_customers(full, 600, seed=3), 600, seed=3, factor=2.0)
    features = drifted.drop(columns=["churn"])
    instances = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    answered = httpx.post(f"{proxy}/predict/batch", json={"instances": instances}, timeout=60)
    assert answered.status_code == 200, answered.text
    log_url = (
        f"postgresql+psycopg2://driftloop:{stack.env['DRIFTLOOP_DB_PASSWORD']}@127.0.0.1:"
        f"{stack.port('POSTGRES_PORT')}/predictions"
    )
    store = open_prediction_log(log_url)
    try:
        wait_until("600 logged predictions", lambda: store.count(model) >= 600 or None, 60, every=1)
    finally:
        store.close()
    table = Path(stack.env["DRIFTLOOP_DATA_DIR"]) / "tonight.parquet"
    full.drop(columns=["churn"]).reset_index(names="customer").to_parquet(table)
    table.chmod(0o644)

    with prefect_api_client(api, auth=stack.prefect_auth) as prefect:
        # A low drift share: this test is about where the check runs; test_decisions.py is about its verdicts.
        parameters = {"min_rows": 200, "window_rows": 600, "drift_share": 0.2}
        check_id = run_deployment(prefect, "check-drift", "drift-check", parameters)
        check = wait_for_end(prefect, check_id, 600)
        assert check["state"]["type"] == "COMPLETED", f"{check['state']}\n{stack.logs('prefect-worker', tail=200)}"
        assert check["infrastructure_pid"], check
        verdict = artifact_of(prefect, check_id, "drift-verdict")
        assert verdict["description"] == "drift check: drift", verdict["data"]

        retrain = prefect.get("/deployments/name/retrain-model/retrain").json()

        def retrain_ended() -> list[dict[str, Any]] | None:
            runs = prefect.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [retrain["id"]]}}}).json()
            ended = [r for r in runs if r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}]
            return ended or None

        (retrained,) = wait_until("the retrain the drift event starts", retrain_ended, 600, every=3)
        assert retrained["state"]["type"] == "COMPLETED", f"{retrained['state']}\n{stack.logs('prefect-worker')}"
        assert retrained["parameters"]["model_name"] == model
        assert retrained["infrastructure_pid"] not in {None, check["infrastructure_pid"]}
        decision = artifact_of(prefect, retrained["id"], "retrain-decision")["data"]
        assert "retraining cannot help yet" in decision, decision

        score_id = run_deployment(
            prefect, "score-table", "score",
            {"data": "/data/tonight.parquet", "out": "/var/lib/driftloop/scores", "keys": ["customer"], "workers": 2},
        )  # fmt: skip
        scored = wait_for_end(prefect, score_id, 600)
        assert scored["state"]["type"] == "COMPLETED", f"{scored['state']}\n{stack.logs('prefect-worker', tail=200)}"
        assert scored["infrastructure_pid"] not in {None, check["infrastructure_pid"], retrained["infrastructure_pid"]}
        summary = artifact_of(prefect, score_id, "scoring-run")["data"]
        assert f"# Scored {len(full):,} rows with {model} v1" in summary, summary
        assert f"answers: {len(full):,} rows" in summary, summary


def test_anonymous_callers_cannot_drive_either_control_plane(stack: Stack) -> None:
    """Runs after training: a champion exists to move and a train deployment to start."""
    model = stack.env["DRIFTLOOP_MODEL_NAME"]
    mlflow = f"http://127.0.0.1:{stack.port('MLFLOW_PORT')}/api/2.0/mlflow"
    move = {"name": model, "alias": "champion", "version": "1"}
    with httpx.Client(timeout=30) as http:
        assert http.post(f"{mlflow}/registered-models/alias", json=move).status_code == 401
        assert http.post(f"{mlflow}/registered-models/alias", json=move, auth=stack.mlflow_reader).status_code == 403
        tag = {"name": model, "version": "1", "key": "driftloop.parity", "value": "passed"}
        assert http.post(f"{mlflow}/model-versions/set-tag", json=tag).status_code == 401
        assert http.get(f"{mlflow}/registered-models/search").status_code == 401
        assert http.get(f"{mlflow}/registered-models/search", auth=stack.mlflow_reader).status_code == 200

        api = f"http://127.0.0.1:{stack.port('PREFECT_PORT')}/api"
        assert http.post(f"{api}/events", json=[forged_drift_event(model)]).status_code == 401
        deployment = http.get(f"{api}/deployments/name/train-model/train", auth=stack.prefect_auth).json()
        runs = f"{api}/deployments/{deployment['id']}/create_flow_run"
        assert http.post(runs, json={}).status_code == 401
        assert http.post(runs, json={}, auth=("driftloop", "not-the-password")).status_code == 401


def test_down_leaves_no_container(stack: Stack) -> None:
    worker = stack.container("prefect-worker")
    # A finished run's container exits (and is removed) just after its final state.
    wait_until("no flow run container left", lambda: stack.flow_containers() == [worker], 60, every=1)
    stack.down()
    assert stack.containers() == []
    assert stack.model_containers() == []
    assert stack.flow_containers() == []
    volumes = stack.client.volumes.list(filters={"label": f"com.docker.compose.project={stack.project}"})
    assert volumes == []
