"""One server, three models of three tasks: each on its own named routes, the default on the unnamed ones.

Real bundles (tests/support/bundles.py), the real prediction log on SQLite under tmp_path, the app's own lifespan.
A model that fails to load, or moves to a version that fails, never takes the others down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from driftloop.io.prediction_store import open_prediction_log
from driftloop.serving.app import create_app
from driftloop.serving.source import FileModelSource
from driftloop.settings import Settings
from tests.support.bundles import TrainedModel, train_world_model, write_bundle
from tests.support.serving import MovingSource, serving_settings, wait_until

NAMES = ("churn", "wine", "houses")  # binary (the default), multiclass, regression
CLASSES = ("low", "mid", "high")  # the multiclass world's classes


@pytest.fixture(scope="module")
def models(served_model: TrainedModel) -> dict[str, TrainedModel]:
    return {
        "churn": served_model,
        "wine": train_world_model("multiclass", "random_forest"),
        "houses": train_world_model("regression", "gradient_boosting"),
    }


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, models: dict[str, TrainedModel]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {name: write_bundle(root / name / "v1", model, "1", name=name) for name, model in models.items()}


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return serving_settings(tmp_path, max_batch_rows=1000, **overrides)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _settings(tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def client(settings: Settings, bundles: dict[str, Path]) -> Iterator[TestClient]:
    app = create_app(settings, sources=[FileModelSource(bundles[name]) for name in NAMES])
    with TestClient(app) as client:
        yield client


def _samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
    ]


def test_models_lists_every_model_and_the_default(client: TestClient) -> None:
    listing = client.get("/models").json()
    assert listing["default"] == "churn"
    assert [(m["name"], m["version"], m["ready"]) for m in listing["models"]] == [(n, "1", True) for n in NAMES]
    for name in NAMES:
        assert client.get(f"/models/{name}/ready").json() == {"status": "ready", "model_version": "1"}
        assert client.get(f"/models/{name}").json()["name"] == name
        assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}


def test_each_named_route_answers_its_own_models_task(client: TestClient, models: dict[str, TrainedModel]) -> None:
    for name, model in models.items():
        record = model.records(1, start=7)[0]
        answer = client.post(f"/models/{name}/predict", json={"features": record})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-model-version"] == "1"
        body = answer.json()
        if name == "houses":
            assert body["prediction"] == pytest.approx(float(model.labels[7]), rel=1e-5)
        elif name == "wine":
            assert body["label"] == CLASSES[int(model.labels[7])]
            assert set(body["probabilities"]) == set(CLASSES)
        else:
            assert body["label"] == model.schema.task.classes[int(model.labels[7])]
            assert body["probability"] == pytest.approx(model.probabilities[7].tolist(), abs=1e-6)  # type: ignore[index]
        batch = client.post(f"/models/{name}/predict/batch", json={"instances": model.records(5)})
        assert batch.status_code == 200
        assert len(batch.json()["predictions"]) == 5
        mlflow = client.post(f"/models/{name}/invocations", json={"dataframe_records": model.records(2)})
        assert mlflow.status_code == 200, mlflow.text


def test_the_unnamed_routes_serve_the_default_model(client: TestClient, models: dict[str, TrainedModel]) -> None:
    churn = models["churn"]
    named = client.post("/models/churn/predict", json={"features": churn.records(1)[0]}).json()
    unnamed = client.post("/predict", json={"features": churn.records(1)[0]}).json()
    assert named == unnamed
    # The default model's schema is not the others': a wine record is refused on /predict, by name.
    refused = client.post("/predict", json={"features": models["wine"].records(1)[0]})
    assert refused.status_code == 422


def test_the_fast_path_and_the_route_give_the_same_named_answer(
    client: TestClient, models: dict[str, TrainedModel]
) -> None:
    """The fast path answers /models/{name}/predict; behind a proxy's root_path the FastAPI route does."""
    record = models["wine"].records(1, start=3)[0]
    fast = client.post("/models/wine/predict", json={"features": record}, headers={"x-request-id": "same"})
    proxied = TestClient(client.app, root_path="/behind-proxy")  # no `with`: the app's lifespan already runs
    routed = proxied.post(
        "/behind-proxy/models/wine/predict", json={"features": record}, headers={"x-request-id": "same"}
    )
    assert (fast.status_code, fast.json()) == (routed.status_code, routed.json())
    assert fast.headers["x-model-version"] == routed.headers["x-model-version"] == "1"


def test_an_unknown_model_is_a_404_in_each_protocols_shape(client: TestClient) -> None:
    before = _samples(client.get("/metrics").text, "driftloop_request_errors_total")
    predict = client.post("/models/nope/predict", json={"features": {}})
    mlflow = client.post("/models/nope/invocations", json={"dataframe_records": []})
    v2 = client.post("/v2/models/nope/infer", json={"inputs": []})
    ready = client.get("/models/nope/ready")
    assert [r.status_code for r in (predict, mlflow, v2, ready)] == [404] * 4
    assert predict.json()["reason"] == "unknown_model"
    assert "unknown model 'nope'; this server serves 'churn', 'wine', 'houses'" in predict.json()["detail"]
    assert mlflow.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "unknown model 'nope'" in v2.json()["error"]
    after = _samples(client.get("/metrics").text, "driftloop_request_errors_total")
    # Counted under one label whatever the name asked for: a URL cannot mint series.
    assert {labels["model"] for labels, _ in after} - {labels["model"] for labels, _ in before} <= {"(unknown)"}
    assert not any(labels["model"] == "nope" for labels, _ in after)
    unknown = sum(value for labels, value in after if labels["model"] == "(unknown)")
    assert unknown - sum(value for labels, value in before if labels["model"] == "(unknown)") == 4


def test_metrics_are_labelled_by_model(
    tmp_path: Path, bundles: dict[str, Path], models: dict[str, TrainedModel]
) -> None:
    app = create_app(_settings(tmp_path), sources=[FileModelSource(bundles[name]) for name in NAMES])
    with TestClient(app) as client:
        for name, rows in (("churn", 3), ("wine", 5), ("houses", 7)):
            client.post(f"/models/{name}/predict/batch", json={"instances": models[name].records(rows)})
        client.post("/models/wine/predict", json={"features": {"bad": 1}})
        text = client.get("/metrics").text
    predicted: dict[str, float] = {}
    for labels, value in _samples(text, "driftloop_predictions_total"):
        predicted[labels["model"]] = predicted.get(labels["model"], 0) + value
    assert predicted == {"churn": 3, "wine": 5, "houses": 7}
    info = {labels["name"]: labels["version"] for labels, value in _samples(text, "driftloop_model_info") if value}
    assert info == {"churn": "1", "wine": "1", "houses": "1"}
    errors = {(labels["model"], labels["endpoint"]) for labels, _ in _samples(text, "driftloop_request_errors_total")}
    assert errors == {("wine", "predict")}
    values = _samples(text, "driftloop_predicted_value_bucket")  # (no _count when an edge is negative)
    assert [(labels["model"], value) for labels, value in values if labels["le"] == "+Inf"] == [("houses", 7)]
    timed = {labels["model"] for labels, _ in _samples(text, "driftloop_request_latency_seconds_count")}
    assert timed == {"churn", "wine", "houses"}


def test_the_log_and_feedback_are_keyed_by_model(
    tmp_path: Path, bundles: dict[str, Path], models: dict[str, TrainedModel]
) -> None:
    settings = _settings(tmp_path)
    app = create_app(settings, sources=[FileModelSource(bundles[name]) for name in NAMES])
    with TestClient(app) as client:
        ids = {}
        for name in NAMES:
            sent = client.post(
                f"/models/{name}/predict/batch",
                json={"instances": models[name].records(2)},
                headers={"x-request-id": "shared-id"},  # the same client id for every model: kept beside, not used
            )
            assert sent.status_code == 200
            ids[name] = sent.headers["x-request-id"]
        assert client.post(
            "/models/wine/feedback", json={"request_id": ids["wine"], "row": 1, "label": "high"}
        ).json() == {"accepted": 1, "already_labelled": 0}
        assert client.post("/feedback", json={"request_id": ids["churn"], "row": 0, "label": "Yes"}).status_code == 202
        # wine's id given to churn's feedback labels no row of wine (nor of churn: no such churn request)
        assert client.post("/feedback", json={"request_id": ids["wine"], "label": "No"}).status_code == 202
        refused = client.post("/models/houses/feedback", json={"request_id": ids["houses"], "label": "high"})
        assert refused.status_code == 422  # a regressor's label is a number
    store = open_prediction_log(settings.predictions_url)
    try:
        windows = {name: store.read_window(name) for name in NAMES}
    finally:
        store.close()
    assert {name: len(window) for name, window in windows.items()} == dict.fromkeys(NAMES, 2)
    assert windows["wine"]["actual"].tolist() == [None, "high"]
    assert windows["churn"]["actual"].tolist() == ["Yes", None]
    assert windows["houses"]["actual"].tolist() == [None, None]
    np.testing.assert_allclose(
        windows["houses"]["probability"], models["houses"].labels[:2], rtol=1e-6
    )  # a regressor's logged value


def test_a_model_that_fails_to_load_leaves_the_others_serving(
    tmp_path: Path, bundles: dict[str, Path], models: dict[str, TrainedModel], other_model: TrainedModel
) -> None:
    # wine's only version records another model's outputs: its self-check fails, so it never serves.
    broken = write_bundle(tmp_path / "wine-v1", models["wine"], "1", name="wine", selfcheck=other_model.selfcheck())
    houses = MovingSource(
        {"1": bundles["houses"], "2": write_bundle(tmp_path / "houses-v2", models["houses"], "2", name="houses")},
        current="1",
        name="houses",
    )
    settings = _settings(tmp_path, reload_interval=0.02)
    app = create_app(settings, sources=[FileModelSource(bundles["churn"]), FileModelSource(broken), houses])
    with TestClient(app) as client:
        listing = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert [listing[n]["ready"] for n in NAMES] == [True, False, True]
        assert "failed" in listing["wine"]["reason"]
        wine = client.post("/models/wine/predict", json={"features": models["wine"].records(1)[0]})
        assert wine.status_code == 503
        assert "version 1 failed" in wine.json()["detail"]
        assert client.get("/ready").status_code == 200  # the default model is fine
        for name in ("churn", "houses"):
            answer = client.post(f"/models/{name}/predict", json={"features": models[name].records(1)[0]})
            assert answer.status_code == 200, answer.text
        # houses moves to v2 on its own; the others stay where they are.
        houses.current = "2"
        wait_until("houses v2", lambda: client.get("/models/houses/ready").json().get("model_version") == "2")
        assert client.get("/models/churn/ready").json()["model_version"] == "1"
        assert (
            client.post("/models/houses/predict", json={"features": models["houses"].records(1)[0]}).headers[
                "x-model-version"
            ]
            == "2"
        )


def test_two_sources_with_one_name_are_refused(tmp_path: Path, bundles: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="model 'churn' is listed twice"):
        create_app(_settings(tmp_path), sources=[FileModelSource(bundles["churn"]), FileModelSource(bundles["churn"])])


def test_the_settings_name_the_served_models_default_first(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, model_name="wine", serve_models="churn, houses ,wine")  # type: ignore[arg-type]
    assert settings.served_model_names == ("wine", "churn", "houses")
    with pytest.raises(ValueError, match="model names are letters"):
        Settings(home=tmp_path, serve_models="ok,not/ok")  # type: ignore[arg-type]
