"""The serving image, built for real: a trained version → `build_image_for_version` → a running container.

Needs a Docker engine and a local `python:3.11-slim` (skipped without them, failed when CI=true). The first
build in a session is cold (pip inside the build, ~15-60 s); the layers stay cached for later builds.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from docker.errors import ImageNotFound
from docker.models.containers import Container

from driftloop.core import lineage
from driftloop.deploy.image_build import VersionImage, build_image_for_version, build_serving_image
from driftloop.deploy.image_context import stage_build_context
from driftloop.errors import DeployError
from driftloop.io.bundle import ModelInfo, write_model_info
from driftloop.io.registry import ModelRegistry
from driftloop.settings import Settings
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.docker_engine import (  # noqa: F401 (pytest fixtures)
    DockerTestRun,
    docker_engine,
    docker_run,
    labelled_run,
    remove_test_image,
    require_base_image,
)
from tests.support.host import free_port

pytestmark = pytest.mark.integration

MAX_IMAGE_BYTES = 300_000_000  # decimal MB, as `docker images` shows sizes
HEALTHY_TIMEOUT = 60.0
NOT_IN_IMAGE = ("sklearn", "mlflow", "prefect", "pandas", "skl2onnx", "typer", "pip")


@dataclass(frozen=True)
class Built:
    settings: Settings
    result: VersionImage
    log: list[str]
    model_dir: Path  # the version's model directory, as the registry hands it out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer) -> Driftloop:
    dl = make_driftloop(tmp_path_factory.mktemp("image"), prefect_server)
    dl.run("train")
    return dl


@pytest.fixture(scope="module")
def built(docker_engine: docker.DockerClient, trained: Driftloop) -> Iterator[Built]:  # noqa: F811
    # docker_engine first: without an engine the module skips before training anything.
    require_base_image(docker_engine)
    settings = Settings(
        home=trained.home,
        mlflow_tracking_uri=trained.tracking_uri,
        image_prefix=f"dltest-{uuid.uuid4().hex[:8]}",
    )
    log: list[str] = []
    result = build_image_for_version(settings, None, on_log=log.append)  # None: the champion, v1
    model_dir = ModelRegistry(settings.model_name, settings.tracking_uri).download_model_dir(
        "1", trained.home.parent / "v1-model"
    )
    try:
        yield Built(settings=settings, result=result, log=log, model_dir=model_dir)
    finally:
        # The tag goes; its parent layers stay as the build cache other tests and builds reuse.
        remove_test_image(docker_engine, result.image.tag)


def _start(client: docker.DockerClient, tag: str, run: DockerTestRun, port: int) -> Container:
    return client.containers.run(
        tag,
        detach=True,
        network_mode="host",
        environment={"DRIFTLOOP_SERVE_PORT": str(port)},
        labels=run.labels(role="image-test"),
        name=run.name(f"serving-{port}"),
    )


def _wait_healthy(container: Container) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        if state["Status"] == "exited":
            pytest.fail(f"the container exited ({state['ExitCode']}):\n{container.logs().decode()[-3000:]}")
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.2)
    pytest.fail(f"not healthy after {HEALTHY_TIMEOUT}s: {container.attrs['State'].get('Health')}")


def _python_in_image(client: docker.DockerClient, tag: str, run: DockerTestRun, code: str) -> str:
    output = client.containers.run(
        tag, ["python", "-c", code], network_mode="host", labels=run.labels(role="image-test"), remove=True
    )
    return output.decode().strip()


# ------------------------------------------------------------------------------------------------------ tests


def test_the_build_log_streams_and_names_the_image(built: Built) -> None:
    assert built.result.image.tag == f"{built.settings.image_prefix}/churn-serving:v1"
    assert any(line.startswith("Step 1/") for line in built.log)
    assert any("Successfully tagged" in line and built.result.image.tag in line for line in built.log)


def test_the_image_is_small_and_labelled_with_the_versions_lineage(
    built: Built,
    trained: Driftloop,
    docker_engine: docker.DockerClient,  # noqa: F811
) -> None:
    image = docker_engine.images.get(built.result.image.tag)
    assert image.id == built.result.image.id
    assert built.result.image.size_bytes == image.attrs["Size"] <= MAX_IMAGE_BYTES

    version = ModelRegistry("churn", trained.tracking_uri).get_version("1")
    labels = image.labels
    assert labels["driftloop.model.name"] == "churn"
    assert labels["driftloop.model.version"] == labels["org.opencontainers.image.version"] == "1"
    assert labels["driftloop.model.run_id"] == version.run_id
    assert labels["driftloop.model.onnx_sha256"] == version.tags[lineage.ONNX_SHA256]
    assert labels["driftloop.model.data_hash"] == version.tags[lineage.DATA_HASH]
    commit = version.tags[lineage.GIT_COMMIT]
    if commit != "unknown":
        assert labels["driftloop.model.git_commit"] == labels["org.opencontainers.image.revision"] == commit
    assert built.result.labels == {key: labels[key] for key in built.result.labels}


def test_the_version_records_the_image(built: Built, trained: Driftloop) -> None:
    tags = ModelRegistry("churn", trained.tracking_uri).get_version("1").tags
    assert tags[lineage.IMAGE_ID] == built.result.image.id
    assert tags[lineage.IMAGE_TAG] == built.result.image.tag


def test_the_server_runs_as_a_non_root_user(
    built: Built,
    docker_engine: docker.DockerClient,  # noqa: F811
    docker_run: DockerTestRun,  # noqa: F811
) -> None:
    user = docker_engine.images.get(built.result.image.tag).attrs["Config"]["User"]
    assert user
    assert user.split(":")[0] not in ("root", "0")
    uid = _python_in_image(docker_engine, built.result.image.tag, docker_run, "import os; print(os.getuid())")
    assert uid == user.split(":")[0] != "0"


def test_the_training_and_orchestration_stack_is_not_in_the_image(
    built: Built,
    docker_engine: docker.DockerClient,  # noqa: F811
    docker_run: DockerTestRun,  # noqa: F811
) -> None:
    code = (
        "import importlib.util, json; "
        f"print(json.dumps([m for m in {NOT_IN_IMAGE!r} if importlib.util.find_spec(m) is not None]))"
    )
    assert json.loads(_python_in_image(docker_engine, built.result.image.tag, docker_run, code)) == []
    # ... while the serving runtime is there (the probe itself would pass on an empty image otherwise).
    code = "import onnxruntime, fastapi, uvicorn, uvloop, httptools, driftloop.serving.app; print('ok')"
    assert _python_in_image(docker_engine, built.result.image.tag, docker_run, code) == "ok"


def test_the_container_gets_healthy_and_serves_the_version(
    built: Built,
    docker_engine: docker.DockerClient,  # noqa: F811
    docker_run: DockerTestRun,  # noqa: F811
) -> None:
    port = free_port()
    container = _start(docker_engine, built.result.image.tag, docker_run, port)
    _wait_healthy(container)
    selfcheck = json.loads((built.model_dir / "extra_files" / lineage.SELFCHECK_FILE).read_text())
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert http.get("/ready").json() == {"status": "ready", "model_version": "1"}
        model = http.get("/model").json()
        assert (model["name"], model["version"], model["source"]) == ("churn", "1", "image")
        assert model["onnx_sha256"] == built.result.labels["driftloop.model.onnx_sha256"]
        assert model["served_graph"] == lineage.SERVING_ONNX_FILE  # the grouped graph went into the image
        for record, label, probabilities in zip(
            selfcheck["records"][:5], selfcheck["labels"], selfcheck["probabilities"], strict=False
        ):
            response = http.post("/predict", json={"features": record})
            assert response.status_code == 200, response.text
            assert response.headers["x-model-version"] == "1"
            body = response.json()
            assert body["prediction"] == label
            assert body["probability"] == pytest.approx(probabilities, abs=selfcheck["tolerance"])


def test_sigterm_stops_the_server_gracefully(
    built: Built,
    docker_engine: docker.DockerClient,  # noqa: F811
    docker_run: DockerTestRun,  # noqa: F811
) -> None:
    container = _start(docker_engine, built.result.image.tag, docker_run, free_port())
    _wait_healthy(container)
    container.stop(timeout=30)  # SIGTERM; a server ignoring it would be SIGKILLed (exit 137)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0
    assert "Finished server process" in container.logs().decode()


def test_a_new_model_only_changes_the_last_layer(
    built: Built,
    docker_engine: docker.DockerClient,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Two contexts with the same code and different model identities (the second a copy of the first, so a
    # source file edited meanwhile cannot differ): every layer but the model's must be shared.
    first_context = stage_build_context(built.model_dir, ModelInfo(name="churn", version="1"), tmp_path / "a")
    second_context = tmp_path / "b"
    shutil.copytree(first_context, second_context)
    write_model_info(second_context / "model", ModelInfo(name="churn", version="2", run_id="another-run"))
    tags = [f"{built.settings.image_prefix}/churn-serving:layers-{name}" for name in ("a", "b")]
    try:
        first, second = (
            build_serving_image(docker_engine, context, tag, {"driftloop.model.version": tag[-1]}, "host", print)
            for context, tag in zip((first_context, second_context), tags, strict=True)
        )
        first_layers = docker_engine.images.get(first.id).attrs["RootFS"]["Layers"]
        second_layers = docker_engine.images.get(second.id).attrs["RootFS"]["Layers"]
        assert len(first_layers) == len(second_layers)
        assert first_layers[:-1] == second_layers[:-1]
        assert first_layers[-1] != second_layers[-1]
    finally:
        for tag in tags:
            remove_test_image(docker_engine, tag)


def test_a_model_directory_without_its_graph_is_refused_before_building(
    built: Built,
    docker_engine: docker.DockerClient,  # noqa: F811
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for path in built.model_dir.rglob("*"):
        if path.is_file() and path.name != lineage.ONNX_FILE:
            (broken / path.relative_to(built.model_dir)).parent.mkdir(parents=True, exist_ok=True)
            (broken / path.relative_to(built.model_dir)).write_bytes(path.read_bytes())
    with pytest.raises(DeployError, match=r"model 'churn' version 1: .*has no model\.onnx"):
        stage_build_context(broken, ModelInfo(name="churn", version="1"), tmp_path / "context")


def test_a_failing_build_step_raises_with_the_log_and_leaves_no_container(
    built: Built,
    docker_engine: docker.DockerClient,  # noqa: F811
    tmp_path: Path,
) -> None:
    context = stage_build_context(built.model_dir, ModelInfo(name="churn", version="1"), tmp_path / "context")
    marker = f"driftloop-broken-step-{uuid.uuid4().hex[:8]}"
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f'RUN echo "{marker}" && exit 3\n')
    tag = f"{built.settings.image_prefix}/churn-serving:broken"
    log: list[str] = []

    with pytest.raises(DeployError) as raised:
        build_serving_image(docker_engine, context, tag, {}, "host", log.append)

    message = str(raised.value)
    assert f"building image {tag} failed" in message
    assert "non-zero code: 3" in message
    assert marker in message  # the log's tail
    assert any(marker in line for line in log)  # streamed as it happened
    everything = docker_engine.containers.list(all=True, sparse=True)
    leftovers = [c.id for c in everything if marker in c.attrs.get("Command", "")]
    assert leftovers == []
    with pytest.raises(ImageNotFound):
        docker_engine.images.get(tag)


def test_without_an_engine_the_build_says_how_to_start_one(
    built: Built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(DeployError, match=r"no Docker engine answers at unix://.*no-engine\.sock.*Start one"):
        build_image_for_version(built.settings, "1", on_log=print)


def test_an_unknown_version_is_refused_before_any_build(built: Built) -> None:
    from driftloop.errors import RegistryError

    with pytest.raises(RegistryError, match="has no version '99'"):
        build_image_for_version(built.settings, "99", on_log=print)
