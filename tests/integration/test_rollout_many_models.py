"""Two models of two tasks behind one nginx: each its own images, slots, ports and routing; one proxy for both.

`churn` (binary, the bundled data) and `houses` (regression, generated) are trained with the real CLI and their
serving images built through the engine. Both are rolled out behind one real nginx container. Then, with clients
hitting both models throughout, `houses` is rolled out again (v2) and a crashing candidate of `houses` is rolled
back: neither touches churn's slot, routing or traffic. Last, a project file naming `houses` first moves the
unnamed routes to it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftloop.core import lineage
from driftloop.deploy import proxy
from driftloop.deploy.image_build import build_image_for_version
from driftloop.deploy.rollout import RolloutResult, rollout
from driftloop.deploy.slots import Slots
from driftloop.deploy.status import deployment_status
from driftloop.io.datasets import schema_yaml
from driftloop.io.registry import ModelRegistry
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA, Settings
from tests.support.churn import sample_rows
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.docker_engine import (  # noqa: F401 (pytest fixtures)
    DockerTestRun,
    build_derived,
    docker_engine,
    docker_run,
    remove_test_image,
    require_base_image,
    require_docker,
)
from tests.support.host import free_port, free_ports_in_a_row
from tests.support.load import PredictLoad
from tests.support.proxy_image import PROXY_IMAGE, ensure_proxy_image
from tests.support.worlds import TARGET, world, world_schema

pytestmark = pytest.mark.integration

ACTOR = "pytest@test_rollout_many_models"


@dataclass(frozen=True)
class Trained:
    dl: Driftloop
    prefix: str
    images: dict[str, str]  # "churn v1", "houses v1", "houses v2", "houses crash"
    houses_rows: list[dict[str, Any]]
    houses_files: tuple[Path, Path]  # data, schema


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer) -> Iterator[Trained]:
    client = require_docker()  # skip (or fail in CI) before the expensive part
    require_base_image(client)
    ensure_proxy_image(client)
    tmp = tmp_path_factory.mktemp("many-rollouts")
    houses = world(1200, 3, "regression")
    houses.to_csv(tmp / "houses.csv", index=False)
    (tmp / "houses.schema.yaml").write_text(
        schema_yaml(world_schema("regression").model_copy(update={"name": "houses"}))
    )
    dl = make_driftloop(tmp, prefect_server)
    first = dl.run("train").stdout
    assert "  driftloop models | driftloop history\n" in first  # churn: what the next commands are about
    # No --model-name: the model is named after the schema, and the next commands need its name (trial 20).
    houses_out = dl.run("train", "--data", str(tmp / "houses.csv"), "--schema", str(tmp / "houses.schema.yaml")).stdout
    assert "driftloop models --model-name houses | driftloop history --model-name houses" in houses_out
    dl.run("train", "--data", str(tmp / "houses.csv"), "--schema", str(tmp / "houses.schema.yaml"),
           "--estimator", "random_forest")  # fmt: skip
    assert ModelRegistry("houses", dl.tracking_uri).get_version("2").tags[lineage.GATE] == "refuse"
    prefix = f"dltest{uuid.uuid4().hex[:8]}"
    tags: dict[str, str] = {}
    try:
        for name, version in (("churn", "1"), ("houses", "1"), ("houses", "2")):
            settings = Settings(home=dl.home, image_prefix=prefix, model_name=name)
            built = build_image_for_version(settings, version, lambda line: None, client=client)
            tags[f"{name} v{version}"] = built.image.tag
        repository = tags["houses v2"].rsplit(":", 1)[0]
        tags["houses crash"] = build_derived(
            client,
            f'FROM {tags["houses v2"]}\nCMD ["python", "-c", "import sys; print(\'refusing\'); sys.exit(3)"]\n',
            f"{repository}:crash",
        )
        rows = houses.drop(columns=[TARGET]).head(50).to_dict(orient="records")
        yield Trained(dl, prefix, tags, rows, (tmp / "houses.csv", tmp / "houses.schema.yaml"))
    finally:
        for tag in tags.values():
            remove_test_image(client, tag)
        client.close()


@dataclass
class Proxy:
    """One test's nginx, and per model its settings and slots (ports left to the proxy to give)."""

    trained: Trained
    run: DockerTestRun
    base: dict[str, Any]

    def settings(self, model: str, **overrides: Any) -> Settings:
        return Settings(**{**self.base, "model_name": model, **overrides})

    def slots(self, settings: Settings) -> Slots:
        return Slots(settings, self.run.client, name_prefix=self.run.name("slot"), labels=self.run.labels())

    def rollout(self, model: str, version: str, image: str, **overrides: Any) -> RolloutResult:
        settings = self.settings(model, **overrides)
        # houses v2 (a random forest) scores below v1 on its holdout: its gate refused it (the fixture checks).
        refused_by_its_gate = (model, version) == ("houses", "2")
        reason = "test: houses v2, which its gate refused, is the candidate" if refused_by_its_gate else None
        return rollout(settings, version, image, "blue-green", actor=ACTOR, slots=self.slots(settings), reason=reason)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.base['proxy_port']}"

    def container_id(self, model: str) -> str:
        settings = self.settings(model)
        primary = proxy.read_routing(settings).primary()
        container = self.slots(settings).find(primary.slot)
        assert container is not None
        return str(container.id)


@pytest.fixture
def stage(trained: Trained, docker_run: DockerTestRun, tmp_path: Path) -> Proxy:  # noqa: F811 (the fixture)
    proxy_port = free_port()
    blue, green, *_ = free_ports_in_a_row(4)  # the second model counts up from churn's pair: two more free
    base = {
        "home": trained.dl.home,
        "image_prefix": trained.prefix,
        "proxy_container": docker_run.name("proxy"),
        "proxy_image": PROXY_IMAGE,
        "proxy_port": proxy_port,
        "proxy_config_dir": tmp_path / "proxy",
        "slot_ports": (blue, green),
        "project_file": tmp_path / "no-project.yaml",
        "rollout_ready_timeout": 30,
        "drain_timeout": 15,
    }
    return Proxy(trained, docker_run, base)


def test_two_models_share_one_proxy_and_never_disturb_each_other(stage: Proxy, tmp_path: Path) -> None:
    images = stage.trained.images
    for model in ("churn", "houses"):
        first = stage.rollout(model, "1", images[f"{model} v1"])
        assert first.ok, first.markdown()
    models = proxy.read_models(stage.settings("churn"))
    assert models.default == "churn"  # the first model rolled out, with no project file
    assert models.ports["churn"] == stage.base["slot_ports"]
    assert set(models.ports["houses"]).isdisjoint(models.ports["churn"])

    # Each model answers on its own routes; the unnamed ones are churn's.
    churn_row, houses_row = sample_rows(1)[0], stage.trained.houses_rows[0]
    unnamed = httpx.post(stage.url + "/predict", json={"features": churn_row}, timeout=10)
    assert unnamed.status_code == 200, unnamed.text
    assert len(unnamed.json()["probability"]) == 2  # a binary classifier's answer
    named = httpx.post(stage.url + "/models/houses/predict", json={"features": houses_row}, timeout=10)
    assert named.status_code == 200, named.text
    assert isinstance(named.json()["prediction"], float)
    assert named.json()["model_version"] == "1"
    v2 = httpx.get(stage.url + "/v2/models/houses", timeout=10).json()
    assert (v2["name"], v2["versions"]) == ("houses", ["1"])
    assert httpx.get(stage.url + "/models/churn/ready", timeout=10).json()["model_version"] == "1"
    wrong = httpx.post(stage.url + "/models/houses/predict", json={"features": churn_row}, timeout=10)
    assert 400 <= wrong.status_code < 500, wrong.text  # churn's features are not houses': refused by houses' slot
    assert "x1" in wrong.text
    nobody = httpx.post(stage.url + "/models/wine/predict", json={"features": churn_row}, timeout=10)
    assert nobody.status_code == 404
    assert nobody.json()["reason"] == "unknown_model"

    # houses moves to v2, then a crashing candidate of houses is rolled back: churn's clients never notice.
    churn_container = stage.container_id("churn")
    churn_routing = proxy.read_routing(stage.settings("churn"))
    with (
        PredictLoad(stage.url, sample_rows(50), threads=2, keep_alive=False) as churn_load,
        PredictLoad(
            stage.url, stage.trained.houses_rows, threads=2, keep_alive=False, path="/models/houses/predict"
        ) as houses_load,
    ):
        time.sleep(1)
        to_v2 = stage.rollout("houses", "2", images["houses v2"])
        time.sleep(0.5)
        crashed = stage.rollout("houses", "2", images["houses crash"])
        time.sleep(0.5)
    assert to_v2.ok, to_v2.markdown()
    assert not crashed.ok
    assert crashed.reason.startswith("candidate crashed"), crashed.reason
    assert churn_load.report.failed == 0, churn_load.report
    assert houses_load.report.failed == 0, houses_load.report
    assert set(churn_load.report.versions) == {"1"}
    assert houses_load.report.versions["1"] > 0
    assert houses_load.report.versions["2"] > 0
    assert stage.container_id("churn") == churn_container
    assert proxy.read_routing(stage.settings("churn")) == churn_routing
    assert proxy.read_routing(stage.settings("houses")).primary().version == "2"
    assert str(ModelRegistry("houses", stage.trained.dl.tracking_uri).champion().version) == "2"
    assert str(ModelRegistry("churn", stage.trained.dl.tracking_uri).champion().version) == "1"

    status = deployment_status(stage.settings("houses"), stage.slots(stage.settings("houses")))
    assert status.proxy.models == {"churn": "1", "houses": "2"}
    assert status.proxy.default_model == "churn"
    assert [(s.weight, s.version) for s in status.serving] == [(100, "2")]
    assert "/models/houses/predict" in status.table()

    # A project file naming houses first: the next rollout moves the unnamed routes to houses.
    project = tmp_path / "driftloop.yaml"
    data, schema = (json.dumps(str(path)) for path in stage.trained.houses_files)
    project.write_text(
        f"models:\n  - {{name: houses, data: {data}, schema: {schema}}}\n"
        f"  - {{name: churn, data: {BUNDLED_DATA}, schema: {BUNDLED_SCHEMA}}}\n"
    )
    again = stage.rollout("churn", "1", images["churn v1"], project_file=project)
    assert again.ok, again.markdown()
    assert "default model moved" in [step.name for step in again.steps]
    unnamed = httpx.post(stage.url + "/predict", json={"features": houses_row}, timeout=10)
    assert unnamed.status_code == 200, unnamed.text
    assert isinstance(unnamed.json()["prediction"], float)
    assert httpx.post(stage.url + "/models/churn/predict", json={"features": churn_row}, timeout=10).status_code == 200


def test_shipping_a_version_that_does_not_exist_fails_in_one_line(trained: Trained) -> None:
    """Before any service or flow starts: no traceback, no failed flow run left behind."""
    for command in (("rollout", "9"), ("build-image", "9")):
        result = trained.dl.run(*command, "--model-name", "houses", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.startswith("error: model 'houses' has no version '9' (existing versions: "), result.stderr
        assert "Traceback" not in result.stderr
