"""Three models of three tasks in one installation, declared in a project file and run by `driftloop up`.

`churn` (binary, the bundled data), `wine` (multiclass, a random forest) and `houses` (regression, gradient
boosting) each get their own train, drift-check and retrain deployments; one model server serves all three. Traffic
from a shifted world reaches `wine` only, with its labels: its drift check (run by its own deployment) opens an
episode, and only `retrain-wine` runs. A broken version of `houses` is refused by the server while the other two
keep serving. Then the project drops `houses`: `up` restarts the server for the two left and deletes houses'
deployments. The data is generated (or bundled), so the truth is known.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from driftloop.core import lineage
from driftloop.io.datasets import schema_yaml
from driftloop.io.registry import ModelRegistry
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA
from tests.support.broken_version import register_broken_copy
from tests.support.stack import (
    api,
    drift_events,
    finished_runs,
    flow_run_logs,
    replay,
    running_stack,
    server_url,
    wait_for,
    wait_logged,
)
from tests.support.worlds import TARGET, world, world_schema

pytestmark = pytest.mark.integration

NAMES = ("churn", "wine", "houses")


def _project(tmp_path: Path) -> Path:
    """The project file and its data: paths relative to it, as a user would write them."""
    for name, kind in (("wine", "multiclass"), ("houses", "regression")):
        world(1500, 1, kind).to_csv(tmp_path / f"{name}.csv", index=False)
        (tmp_path / f"{name}.schema.yaml").write_text(schema_yaml(world_schema(kind).model_copy(update={"name": name})))
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "models:\n"
        f"  - {{name: churn, data: {BUNDLED_DATA}, schema: {BUNDLED_SCHEMA}}}\n"
        "  - {name: wine, data: wine.csv, schema: wine.schema.yaml, estimator: random_forest}\n"
        "  - {name: houses, data: houses.csv, schema: houses.schema.yaml, estimator: gradient_boosting}\n"
    )
    return path


def _ready(base: str) -> dict[str, str | None]:
    listing = httpx.get(f"{base}/models", timeout=10).json()["models"]
    return {model["name"]: model["version"] for model in listing}


def _deployment_runs(dl_api: httpx.Client, flow: str) -> list[tuple[str, str]]:
    """(deployment name, model_name parameter) of every run of ``flow``."""
    runs = dl_api.post("/flow_runs/filter", json={"flows": {"name": {"any_": [flow]}}}).json()
    deployments = {
        d["id"]: d["name"]
        for d in dl_api.post("/deployments/filter", json={"flows": {"name": {"any_": [flow]}}}).json()
    }
    return [(deployments.get(run["deployment_id"], "-"), run["parameters"].get("model_name")) for run in runs]


def test_three_models_share_one_installation_and_one_server(tmp_path: Path) -> None:
    project = _project(tmp_path)
    with running_stack(tmp_path, project_file=str(project)) as dl:
        listed = dl.run("up").stdout  # again: up is idempotent, and says what it deployed
        for name in NAMES:
            for deployment in ("train", "drift-check", "retrain"):
                assert f"{deployment}-{name}" in listed, listed
        assert "follows the champion alias of 'churn', 'wine', 'houses'" in listed
        assert "restarting" not in listed  # the server already serves the declared models

        for name in NAMES:
            trained = dl.run("train", name).stdout
            assert f"{name} v1: promoted to champion" in trained, trained
            # The next commands are about the project's first model: the others' need their name (trial 20).
            flag = "" if name == NAMES[0] else f" --model-name {name}"
            assert f"  driftloop models{flag} | driftloop history{flag}\n" in trained, trained
        assert ModelRegistry("wine", dl.tracking_uri).get_version("1").tags[lineage.ESTIMATOR] == "random_forest"
        base = server_url(dl)
        wait_for("all three served", lambda: _ready(base) == dict.fromkeys(NAMES, "1"), 60)

        # Each model on its own routes, the default on the unnamed ones.
        rows = {
            name: world(20, 2, kind).drop(columns=[TARGET])
            for name, kind in (("wine", "multiclass"), ("houses", "regression"))
        }
        with httpx.Client(base_url=base, timeout=30) as client:
            wine = client.post("/models/wine/predict", json={"features": rows["wine"].iloc[0].to_dict()}).json()
            houses = client.post("/models/houses/predict", json={"features": rows["houses"].iloc[0].to_dict()}).json()
            assert wine["label"] in ("low", "mid", "high")
            assert set(wine["probabilities"]) == {"low", "mid", "high"}
            assert isinstance(houses["prediction"], float)
            assert client.post("/predict", json={"features": rows["wine"].iloc[0].to_dict()}).status_code == 422
            assert client.get("/model").json()["name"] == "churn"

        # Traffic: in-distribution rows for churn and houses, a shifted world (labels included) for wine.
        churn_rows = pd.read_csv(BUNDLED_DATA).sample(300, random_state=3)
        replay(dl, churn_rows, target="churn", labels=True)
        replay(dl, world(300, 4, "regression"), target=TARGET, labels=True, model="houses")
        replay(dl, world(700, 5, "multiclass", shifted=True), target=TARGET, labels=True, model="wine")
        for name, rows_sent in (("churn", 300), ("houses", 300), ("wine", 700)):
            wait_logged(dl, rows_sent, model=name)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        for name in NAMES:
            assert f'model="{name}"' in metrics

        started = datetime.now(UTC)
        for name in ("churn", "houses"):
            check = dl.run("drift-check", "--model-name", name).stdout
            assert f"drift check of {name} v1" in check, check
            assert "verdict  no drift" in check, check
            assert "event emitted" not in check, check
        # wine's check runs from its own deployment, in the worker, as its schedule would run it.
        with api(dl) as client:
            deployment = client.get("/deployments/name/check-drift/drift-check-wine").json()
            assert deployment["parameters"]["model_name"] == "wine"
            client.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).raise_for_status()
        (event,) = wait_for("wine's drift event", lambda: drift_events(dl, started), 180)
        assert event["resource"]["prefect.resource.id"] == "driftloop.model.wine"
        (run,) = finished_runs(dl, "retrain-model", 1, timeout=400)
        assert run["state_type"] == "COMPLETED", flow_run_logs(dl, run["id"])[-4000:]
        with api(dl) as client:
            assert _deployment_runs(client, "retrain-model") == [("retrain-wine", "wine")]
        assert str(ModelRegistry("wine", dl.tracking_uri).champion().version) == "2"
        for name in ("churn", "houses"):
            assert [v.version for v in ModelRegistry(name, dl.tracking_uri).versions()] == ["1"]
        wait_for(
            "the server to swap wine to v2", lambda: _ready(base) == {"churn": "1", "wine": "2", "houses": "1"}, 60
        )

        # A broken version of houses: the server refuses it, houses keeps v1, and the other two never notice.
        broken = register_broken_copy(dl.tracking_uri, "houses", "1", tmp_path)
        dl.run("promote", broken, "--model-name", "houses", "--reason", "a broken upload")

        def refused() -> dict[str, object] | None:
            info = httpx.get(f"{base}/models/houses", timeout=10).json()
            return info if info["last_reload_failure"] else None

        info = wait_for("the server to refuse the broken houses version", refused, 60)
        assert info["version"] == "1"
        assert "differ from the recording" in info["last_reload_failure"]["error"]  # type: ignore[index]
        with httpx.Client(base_url=base, timeout=30) as client:
            for name, path, features in (
                ("churn", "/predict", churn_rows.drop(columns=["churn"]).iloc[0]),
                ("wine", "/models/wine/predict", rows["wine"].iloc[1]),
                ("houses", "/models/houses/predict", rows["houses"].iloc[1]),
            ):
                clean = features.astype(object).where(features.notna(), None).to_dict()
                answer = client.post(path, json={"features": clean})
                assert answer.status_code == 200, (name, answer.text)
        assert _ready(base) == {"churn": "1", "wine": "2", "houses": "1"}
        # The project drops houses: `up` deploys and serves what is declared now, and deletes houses' deployments.
        project.write_text("".join(line for line in project.read_text().splitlines(True) if "houses" not in line))
        again = dl.run("up").stdout
        assert "restarting it for the project's models" in again, again
        wait_for("the server to serve churn and wine only", lambda: _ready(base) == {"churn": "1", "wine": "2"}, 60)
        with api(dl) as client:
            deployed = {d["name"] for d in client.post("/deployments/filter", json={}).json()}
        assert deployed == {f"{d}-{m}" for d in ("train", "drift-check", "retrain") for m in ("churn", "wine")}
        listing = dl.run("models", "--model-name", "wine").stdout
        assert "model wine" in listing
        assert "champion" in listing
