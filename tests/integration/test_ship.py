"""The chain after a promotion with DRIFTLOOP_DEPLOY=docker, through the real CLI: train → image → rollout.

A real Prefect server, MLflow store, Docker engine and nginx container. The missing engine is a real fault too:
DOCKER_HOST names a socket nobody listens on.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from driftloop.core import lineage
from driftloop.io.registry import ModelRegistry
from tests.support.churn import sample_rows
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.docker_engine import docker_engine, remove_test_image, require_base_image  # noqa: F401 (pytest fixture)
from tests.support.host import free_port
from tests.support.proxy_image import PROXY_IMAGE, ensure_proxy_image

pytestmark = pytest.mark.integration


@pytest.fixture
def shipping(
    tmp_path: Path,
    prefect_server: PrefectServer,
    docker_engine: docker.DockerClient,  # noqa: F811
) -> Iterator[Driftloop]:
    """A data directory whose promotions ship: a unique model name (so unique containers and images)."""
    require_base_image(docker_engine)
    ensure_proxy_image(docker_engine)
    model = f"ship{uuid.uuid4().hex[:8]}"
    ports = sorted({free_port() for _ in range(3)})
    dl = make_driftloop(
        tmp_path,
        prefect_server,
        model_name=model,
        deploy="docker",
        proxy_image=PROXY_IMAGE,
        proxy_container=f"{model}-proxy",
        proxy_port=str(ports[0]),
        slot_ports=f"{ports[1]},{ports[2]}",
        canary_bake_seconds="1",
    )
    try:
        yield dl
    finally:
        names = [f"{model}-proxy", f"driftloop-{model}-blue", f"driftloop-{model}-green"]
        for container in docker_engine.containers.list(all=True, ignore_removed=True, filters={"name": model}):
            if container.name in names:
                container.remove(force=True)
        for image in docker_engine.images.list(name=f"driftloop/{model}-serving"):
            remove_test_image(docker_engine, image.id)


def proxy_url(dl: Driftloop) -> str:
    return f"http://127.0.0.1:{dl.env['DRIFTLOOP_PROXY_PORT']}"


def predicted_version(dl: Driftloop) -> str:
    answer = httpx.post(proxy_url(dl) + "/predict", json={"features": sample_rows(1)[0]}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-model-version"] == answer.json()["model_version"]
    return str(answer.json()["model_version"])


def test_a_promotion_is_built_and_rolled_out_behind_nginx(shipping: Driftloop) -> None:
    dl = shipping
    model = dl.env["DRIFTLOOP_MODEL_NAME"]
    first = dl.run("train")
    assert f"shipped  v1 serving from driftloop/{model}-serving:v1" in first.stdout
    assert predicted_version(dl) == "1"
    tags = ModelRegistry(model, dl.tracking_uri).get_version("1").tags
    assert tags[lineage.IMAGE_TAG] == f"driftloop/{model}-serving:v1"
    assert tags[lineage.IMAGE_ID].startswith("sha256:")
    client = docker.from_env()
    try:
        host = client.containers.get(f"driftloop-{model}-blue").attrs["HostConfig"]
    finally:
        client.close()
    assert (host["ReadonlyRootfs"], host["CapDrop"], host["SecurityOpt"]) == (True, ["ALL"], ["no-new-privileges"])

    # The champion is what serves: the alias does not move on its own.
    refused = dl.run("promote", "1", "--reason", "by hand", check=False)
    assert refused.returncode == 1
    assert "moves only with a rollout" in refused.stderr

    # A tie within tolerance is promoted, so v2 ships too: blue-green onto the other slot.
    second = dl.run("train", "--tolerance", "0.05")
    assert "shipped  v2 serving" in second.stdout
    assert predicted_version(dl) == "2"
    status = json.loads(dl.run("status", "--json").stdout)
    assert [(s["slot"], s["weight"], s["version"]) for s in status["slots"] if s["weight"]] == [("green", 100, "2")]

    # By hand, back to v1 as a canary: its image is reused (same id), the alias follows what serves.
    registry = ModelRegistry(model, dl.tracking_uri)
    back = dl.run("rollout", "1", "--strategy", "canary")
    assert "completed (canary)" in back.stdout
    assert registry.get_version("1").tags[lineage.IMAGE_ID] == tags[lineage.IMAGE_ID]
    assert predicted_version(dl) == "1"
    assert str(registry.champion().version) == "1"
    assert registry.history()[-1].reason == "rolled out (canary)"
    # Who asked, as for promote and rollback by hand, and the flow run that did it.
    assert re.fullmatch(r"\S+@\S+ via driftloop rollout \(prefect flow run ship-model/\S+ \(\S+\)\)",
                        registry.history()[-1].actor), registry.history()[-1].actor  # fmt: skip


def test_without_a_docker_engine_the_alias_goes_back_and_nothing_is_lost(shipping: Driftloop) -> None:
    dl = shipping
    model = dl.env["DRIFTLOOP_MODEL_NAME"]
    dl.run("train")  # v1 ships
    dl.env["DOCKER_HOST"] = f"unix:///tmp/no-docker-{uuid.uuid4().hex}.sock"
    second = dl.run("train", "--tolerance", "0.05")
    assert "promoted to champion" in second.stdout
    assert "not shipped" in second.stdout
    assert "no Docker engine" in second.stdout

    registry = ModelRegistry(model, dl.tracking_uri)
    assert str(registry.champion().version) == "1"
    last = registry.history()[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", "2", "1")
    assert last.reason.startswith("v2 could not be rolled out: no Docker engine answers at "), last.reason
    assert predicted_version(dl) == "1"  # v1 never stopped serving

    status = dl.run("status", check=False)
    assert status.returncode == 1
    assert "no Docker engine" in status.stderr


def test_a_missing_proxy_image_is_never_pulled_and_the_alias_goes_back(
    shipping: Driftloop,
    docker_engine: docker.DockerClient,  # noqa: F811
) -> None:
    dl = shipping
    model = dl.env["DRIFTLOOP_MODEL_NAME"]
    dl.run("train")  # v1 ships behind the real proxy
    registry = ModelRegistry(model, dl.tracking_uri)
    # The proxy container gone, and its image one the engine does not have (and cannot pull: no registry here).
    client = docker.from_env()
    try:
        client.containers.get(f"{model}-proxy").remove(force=True)
    finally:
        client.close()
    dl.env["DRIFTLOOP_PROXY_IMAGE"] = f"driftloop/{model}-no-such-nginx:1"
    second = dl.run("train", "--tolerance", "0.05")
    assert "promoted to champion" in second.stdout
    assert "not shipped" in second.stdout
    assert "is never pulled" in second.stdout
    assert str(registry.champion().version) == "1"
    last = registry.history()[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", "2", "1")
    assert "could not be rolled out" in last.reason
    # Checked before the build (trial 22: the image was built, then the proxy refused): v2 got no image.
    assert lineage.IMAGE_ID not in registry.get_version("2").tags
    assert docker_engine.images.list(name=f"driftloop/{model}-serving") == [
        docker_engine.images.get(registry.get_version("1").tags[lineage.IMAGE_ID])
    ]
    # By hand: one line, before any flow run starts, and nothing moves.
    by_hand = dl.run("rollout", "2", "--reason", "test: the proxy check comes first", check=False)
    assert by_hand.returncode == 1
    assert by_hand.stderr.startswith(f"error: proxy image 'driftloop/{model}-no-such-nginx:1' is not in the local "
                                     "engine and is never pulled: build the substitute"), by_hand.stderr  # fmt: skip
    assert len(by_hand.stderr.strip().splitlines()) == 1, by_hand.stderr
    assert lineage.IMAGE_ID not in registry.get_version("2").tags
    assert registry.history()[-1] == last


def test_a_ship_deployment_that_cannot_run_gives_the_alias_back(shipping: Driftloop) -> None:
    """DRIFTLOOP_DEPLOY=ship-deployment (the compose stack's Docker pool) naming a deployment the server lacks: the
    promotion is reported as not shipped and v1, which still serves, gets the alias back. The positive direction, a
    real ship run on a Docker pool, is tests/integration/test_compose_stack.py's."""
    dl = shipping
    model = dl.env["DRIFTLOOP_MODEL_NAME"]
    dl.run("train")  # v1 ships in-process (deploy=docker)
    dl.env["DRIFTLOOP_DEPLOY"] = "ship-deployment"
    dl.env["DRIFTLOOP_SHIP_DEPLOYMENT"] = f"ship-model/no-such-{model}"
    second = dl.run("train", "--tolerance", "0.05")
    assert "promoted to champion" in second.stdout
    assert f"not shipped: cannot run ship-model/no-such-{model}" in second.stdout

    registry = ModelRegistry(model, dl.tracking_uri)
    assert str(registry.champion().version) == "1"
    last = registry.history()[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", "2", "1")
    assert f"cannot run ship-model/no-such-{model}" in last.reason
    assert predicted_version(dl) == "1"
