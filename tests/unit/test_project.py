"""The project file: an installation's models, read and checked; and prefect.yaml's deployments once per model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from driftloop.core.lineage import as_model_name
from driftloop.core.project import Project
from driftloop.errors import ConfigError, ServiceError
from driftloop.io.deployments import RETRAIN, deployment_name, model_deployments
from driftloop.io.project import default_project, load_project, project_for
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA, Settings

ROOT = Path(__file__).resolve().parents[2]

THREE = """
models:
  - name: churn
    data: data/churn.csv
    schema: data/churn.schema.yaml
  - name: wine
    data: wine.parquet
    schema: wine.yaml
    estimator: random_forest
    params: {n_estimators: 50}
    floors: {roc_auc_ovr: 0.8}
    drift: {cron: "*/5 * * * *", window_rows: 300}
    score: {data: nightly/, out: scored, cron: "0 2 * * *", keys: [id]}
  - name: houses
    data: postgresql://loop@db/houses
    query: SELECT * FROM sales
    schema: /etc/houses.yaml
    estimator: models/houses.py:make_model
    tolerance: 0.01
    drift: {rule: weighted}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "project" / "driftloop.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_project_file_declares_models_with_paths_relative_to_it(tmp_path: Path) -> None:
    project = load_project(_write(tmp_path, THREE))
    base = (tmp_path / "project").resolve()
    assert project.names == ("churn", "wine", "houses")
    assert project.default.name == "churn"
    churn, wine, houses = project.models
    assert churn.data == str(base / "data" / "churn.csv")
    assert churn.schema_path == str(base / "data" / "churn.schema.yaml")
    assert wine.train_parameters() == {
        "model_name": "wine",
        "data_path": str(base / "wine.parquet"),
        "query": None,
        "schema_path": str(base / "wine.yaml"),
        "estimator": "random_forest",
        "params": {"n_estimators": 50},
        "floors": {"roc_auc_ovr": 0.8},
        "tolerance": 0.005,
    }
    assert wine.drift_parameters() == {"model_name": "wine", "window_rows": 300}
    assert houses.data == "postgresql://loop@db/houses"  # a URL is not a path
    assert houses.schema_path == "/etc/houses.yaml"
    assert houses.estimator == f"{base / 'models' / 'houses.py'}:make_model"
    assert houses.tolerance == 0.01
    assert houses.drift_parameters() == {"model_name": "houses", "drift_rule": "weighted"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: []", "must hold 'models:', a list of one or more models"),
        ("name: x", "must hold 'models:', a list of one or more models, e.g. models: [{name: churn"),
        ("models: [", "is not valid YAML"),
        ("models: [{name: a, data: [x\n", "is not valid YAML: line 2, column 1: expected ',' or ']'"),
        (
            "models:\n  - {name: a, data: x.csv, schema: s.yaml}\n  - {name: a, data: y.csv, schema: t.yaml}",
            "  - models: model names must be unique; repeated: ['a']",
        ),
        (
            "models:\n  - {name: 'a b', data: x.csv, schema: s.yaml}",
            "model 'a b': name: model name 'a b' may only have",
        ),
        ("models:\n  - {name: a, schema: s.yaml}", "model 'a': data: Field required"),
        ("models:\n  - {name: a, data: x.csv, schema: s.yaml, estimater: rf}", "model 'a': estimater: Extra inputs"),
        ("models:\n  - {name: a, data: x.csv, query: SELECT 1, schema: s.yaml}", "query needs data to be a database"),
        ("models:\n  - {name: a, data: x.csv, schema: s.yaml, drift: {cron: '5 *'}}", "needs five fields"),
        (
            "models:\n  - {name: a, data: x.csv, schema: s.yaml, score: {data: y.csv, cron: '0 2 * * *'}}",
            "model 'a': score.out: Field required",
        ),
        (
            "models:\n  - {name: a, data: x.csv, schema: s.yaml, score: {data: y.csv, out: o, cron: '0 2'}}",
            "needs five fields",
        ),
    ],
)
def test_a_broken_project_file_names_each_problem(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="project file") as raised:
        load_project(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)
    assert "should have at least 1 item" not in str(raised.value)  # pydantic's echo of a failed item


def test_a_project_file_with_one_broken_model_names_that_problem_alone(tmp_path: Path) -> None:
    path = _write(tmp_path, "models:\n  - {name: a, schema: s.yaml}")
    with pytest.raises(ConfigError) as raised:
        load_project(path)
    assert str(raised.value) == f"project file {path} is invalid (1 problem(s)):\n  - model 'a': data: Field required"


def test_without_a_project_file_the_settings_model_is_the_project(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, project_file=tmp_path / "driftloop.yaml")
    project = project_for(settings)
    assert project == default_project(settings)
    assert project.names == ("churn",)
    assert (project.default.data, project.default.schema_path) == (str(BUNDLED_DATA), str(BUNDLED_SCHEMA))
    _write(tmp_path, THREE)
    assert project_for(Settings(home=tmp_path, project_file=tmp_path / "project" / "driftloop.yaml")).names == (
        "churn",
        "wine",
        "houses",
    )


def test_up_serves_the_projects_models_and_those_of_driftloop_serve_models(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, project_file=tmp_path / "driftloop.yaml", serve_models=("wine", "churn"))
    assert project_for(settings).served_beside("churn", settings.serve_models) == ("wine",)  # no project file
    _write(tmp_path, THREE)
    project = project_for(Settings(home=tmp_path, project_file=tmp_path / "project" / "driftloop.yaml"))
    assert project.served_beside("churn") == ("wine", "houses")
    assert project.served_beside("churn", ("extra", "wine")) == ("wine", "houses", "extra")
    assert project.served_beside("wine") == ("churn", "houses")


def test_prefect_yaml_is_deployed_once_per_model_keyed_by_it(tmp_path: Path) -> None:
    template = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    project = load_project(_write(tmp_path, THREE))
    generated = model_deployments(template, project)
    by_name = {d["name"]: d for d in generated["deployments"]}
    bases = [d["name"] for d in template["deployments"]]
    # A score deployment only for the model with a score job (wine): what to score has no default.
    assert list(by_name) == [
        deployment_name(base, model) for model in project.names for base in bases if base != "score" or model == "wine"
    ]
    assert {key: generated[key] for key in generated if key != "deployments"} == {
        key: template[key] for key in template if key != "deployments"
    }
    for model in project.names:
        for base in template["deployments"]:
            if deployment_name(base["name"], model) not in by_name:
                continue
            mine = by_name[deployment_name(base["name"], model)]
            assert mine["entrypoint"] == base["entrypoint"]
            assert mine["work_pool"] == base["work_pool"]
            assert mine["concurrency_limit"] == 1  # per model: one model's retrain never waits for another's
            assert f"model:{model}" in mine["tags"]
    wine_train = by_name["train-wine"]["parameters"]
    assert wine_train["model_name"] == "wine"
    assert wine_train["estimator"] == "random_forest"
    assert wine_train["params"] == {"n_estimators": 50}
    assert by_name["train-churn"]["parameters"]["tolerance"] == 0.005
    assert "query" not in by_name["train-churn"]["parameters"]  # unset values are left to the flow's defaults
    assert by_name["drift-check-wine"]["parameters"] == {"model_name": "wine", "window_rows": 300}
    assert [s["cron"] for s in by_name["drift-check-wine"]["schedules"]] == ["*/5 * * * *"]
    assert [s["cron"] for s in by_name["drift-check-houses"]["schedules"]] == ["{{ $DRIFTLOOP_DRIFT_CRON }}"]
    nightly = tmp_path / "project"
    assert by_name["score-wine"]["parameters"] == {
        "model_name": "wine",
        "data": str(nightly / "nightly"),  # relative to the project file
        "out": str(nightly / "scored"),
        "keys": ["id"],
        "workers": 2,
    }
    assert by_name["score-wine"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    for model in project.names:
        (trigger,) = by_name[f"retrain-{model}"]["triggers"]
        assert trigger["match"]["prefect.resource.id"] == f"driftloop.model.{model}"  # only its own events
        assert trigger["expect"] == ["driftloop.drift.detected"]
    # The template itself is left as it was (one set of deployments for a by-hand `prefect deploy --all`).
    assert template == yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_a_model_whose_data_is_unknown_gets_every_deployment_but_train(tmp_path: Path) -> None:
    template = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    project = load_project(_write(tmp_path, THREE))
    every = {d["name"] for d in model_deployments(template, project)["deployments"]}
    without = {d["name"] for d in model_deployments(template, project, frozenset({"wine"}))["deployments"]}
    assert every - without == {"train-wine"}
    assert {"drift-check-wine", "retrain-wine", "score-wine", "train-churn", "train-houses"} <= without


def test_a_deployment_of_an_unknown_flow_is_refused(tmp_path: Path) -> None:
    template = {"deployments": [{"name": "explain", "entrypoint": "flows/explain.py:explain"}]}
    project = Project.model_validate({"models": [{"name": "a", "data": "x.csv", "schema": "s.yaml"}]})
    with pytest.raises(ServiceError, match="'explain' runs 'flows/explain.py:explain': not keyed by model"):
        model_deployments(template, project)
    assert RETRAIN.endswith("retrain_model")


@pytest.mark.parametrize(
    ("text", "name"),
    [("telco-churn", "telco-churn"), ("My data (2024)", "My-data-2024"), ("ü", "model"), ("a.b_c", "a.b_c")],
)
def test_a_schema_name_becomes_a_model_name(text: str, name: str) -> None:
    assert as_model_name(text) == name
