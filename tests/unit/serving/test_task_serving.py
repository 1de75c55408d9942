"""A multiclass and a regression model served in-process: every protocol answers the task's outputs, /metrics
counts them the task's way, the prediction log and /feedback keep them, and the self-check guards them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from driftloop.errors import SelfCheckFailed
from driftloop.io.bundle import read_bundle
from driftloop.io.prediction_store import open_prediction_log
from driftloop.serving.app import create_app
from driftloop.serving.model import load_model
from driftloop.serving.source import FileModelSource
from driftloop.settings import Settings
from tests.support.bundles import TrainedModel, train_world_model, write_bundle
from tests.support.serving import serving_settings
from tests.support.worlds import CLASSES

KINDS = ("multiclass", "regression")


@pytest.fixture(scope="module", params=KINDS)
def model(request: pytest.FixtureRequest) -> TrainedModel:
    estimator = "random_forest" if request.param == "multiclass" else "gradient_boosting"
    return train_world_model(request.param, estimator)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, model: TrainedModel) -> Iterator[tuple[TestClient, Settings]]:
    name = model.schema.target.kind.value
    bundle = write_bundle(tmp_path_factory.mktemp("bundle") / "v1", model, "1", name=name)
    settings = serving_settings(tmp_path_factory.mktemp("server"), model_name=name, max_batch_rows=1000)
    app: FastAPI = create_app(settings, source=FileModelSource(bundle))
    with TestClient(app) as client:
        yield client, settings


def _v2_inputs(model: TrainedModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": feature.name,
            "shape": [len(records), 1],
            "datatype": "BYTES" if feature.is_categorical else "FP32",
            "data": [record[feature.name] for record in records],
        }
        for feature in model.schema.features
    ]


def test_every_protocol_answers_the_tasks_outputs(served: tuple[TestClient, Settings], model: TrainedModel) -> None:
    client, _ = served
    records = model.records(5)
    name = model.schema.target.kind.value
    one = client.post("/predict", json={"features": records[0]}).json()
    batch = client.post("/predict/batch", json={"instances": records}).json()
    mlflow = client.post("/invocations", json={"dataframe_records": records}).json()
    frame = model.raw_holdout[model.schema.feature_names].head(5)
    text = io.StringIO()
    frame.to_csv(text, index=False)
    mlflow_csv = client.post("/invocations", content=text.getvalue(), headers={"content-type": "text/csv"}).json()
    v2 = client.post(f"/v2/models/{name}/infer", json={"inputs": _v2_inputs(model, records)}).json()
    outputs = {tensor["name"]: tensor for tensor in v2["outputs"]}

    if model.probabilities is None:  # a regressor: values, the ones recorded at export
        expected = model.labels[:5].tolist()
        assert one == {"prediction": pytest.approx(expected[0]), "model_version": "1"}
        assert batch == {"predictions": pytest.approx(expected), "model_version": "1"}
        assert mlflow == mlflow_csv == {"predictions": batch["predictions"]}
        assert list(outputs) == ["prediction"]
        assert outputs["prediction"]["shape"] == [5, 1]
        assert outputs["prediction"]["data"] == batch["predictions"]
        return
    labels = model.labels[:5].tolist()
    assert one["prediction"] == labels[0]
    assert one["label"] == CLASSES[labels[0]]
    assert list(one["probabilities"]) == list(CLASSES)
    np.testing.assert_allclose(list(one["probabilities"].values()), model.probabilities[0], rtol=1e-6)
    assert batch["predictions"] == labels
    assert batch["labels"] == [CLASSES[i] for i in labels]
    np.testing.assert_allclose(batch["probabilities"], model.probabilities[:5], rtol=1e-6)
    assert mlflow == mlflow_csv
    assert mlflow["predictions"]["label"] == labels
    assert outputs["probabilities"]["shape"] == [5, len(CLASSES)]
    assert outputs["label"]["data"] == labels


def test_metadata_names_the_tasks_outputs(served: tuple[TestClient, Settings], model: TrainedModel) -> None:
    client, _ = served
    name = model.schema.target.kind.value
    outputs = client.get(f"/v2/models/{name}").json()["outputs"]
    if model.probabilities is None:
        assert outputs == [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}]
        wrong = client.post(
            f"/v2/models/{name}/infer",
            json={"inputs": _v2_inputs(model, model.records(1)), "outputs": [{"name": "probabilities"}]},
        )
        assert wrong.status_code == 400
        assert "this model has outputs 'prediction'" in wrong.json()["error"]
    else:
        assert outputs[1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(CLASSES)]}


def test_metrics_count_classes_or_histogram_values(served: tuple[TestClient, Settings], model: TrainedModel) -> None:
    client, _ = served
    client.post("/predict/batch", json={"instances": model.records(40, start=50)})
    text = client.get("/metrics").text
    if model.probabilities is None:
        assert 'driftloop_predictions_total{label="value",model="regression",model_version="1"}' in text
        buckets = [line for line in text.splitlines() if line.startswith("driftloop_predicted_value_bucket")]
        assert buckets[-1].startswith('driftloop_predicted_value_bucket{le="+Inf"')
        assert float(buckets[-1].split()[-1]) >= 40  # every prediction so far (_count is left out below 0)
        assert len(buckets) > 3  # the version's own edges, then +Inf
        cumulative = [float(line.split()[-1]) for line in buckets]
        assert cumulative == sorted(cumulative)
        assert 0 < cumulative[len(cumulative) // 2] < cumulative[-1]  # the values spread over the edges
    else:
        counted = {
            c
            for c in CLASSES
            if f'driftloop_predictions_total{{label="{c}",model="multiclass",model_version="1"}}' in text
        }
        assert len(counted) >= 2


def test_predictions_are_logged_and_labelled_the_tasks_way(
    tmp_path: Path, model: TrainedModel, served: tuple[TestClient, Settings]
) -> None:
    _, shared = served
    name = model.schema.target.kind.value
    bundle = write_bundle(tmp_path / "v1", model, "1", name=name)
    settings = serving_settings(tmp_path / "server", model_name=name)
    records = model.records(3)
    regression = model.probabilities is None
    good, bad = (151.5, "Yes") if regression else ("mid", "Maybe")
    with TestClient(create_app(settings, source=FileModelSource(bundle))) as client:
        predicted = client.post("/predict/batch", json={"instances": records})
        assert predicted.status_code == 200
        request_id = predicted.headers["x-request-id"]
        accepted = client.post("/feedback", json={"request_id": request_id, "row": 1, "label": good})
        refused = client.post("/feedback", json={"request_id": request_id, "label": bad})
        beyond = client.post("/feedback", json={"request_id": request_id, "label": 1e300})  # a typo's number
        digits = client.post(  # an integer no float holds: it overflowed float() into a 500
            "/feedback",
            content=f'{{"request_id": "{request_id}", "label": 1{"0" * 400}}}',
            headers={"content-type": "application/json"},
        )
        not_numbers = [  # Python's json.dumps and tritonclient write these literals; the server reads them
            client.post(
                "/feedback",
                content=f'{{"request_id": "{request_id}", "label": {literal}}}',
                headers={"content-type": "application/json"},
            )
            for literal in ("NaN", "-Infinity")
        ]
    assert (accepted.status_code, refused.status_code, beyond.status_code) == (202, 422, 422)
    assert digits.status_code == 422, digits.text
    # A regressor's label gets the reason a feature's value would: a class name it does not know is a classifier's.
    reasons = [response.json()["reason"] for response in (refused, beyond, digits, *not_numbers)]
    assert reasons == (
        ["wrong_type", "out_of_range", "out_of_range", "non_finite", "non_finite"]
        if regression
        else ["unknown_label"] * 5
    ), [response.text for response in not_numbers]
    expected = "a finite number within float32 range" if regression else "'low' or 'mid' or 'high'"
    assert expected in refused.json()["detail"]
    assert expected in beyond.json()["detail"]
    store = open_prediction_log(settings.predictions_url)
    try:
        window = store.read_window(name)
    finally:
        store.close()
    if regression:
        np.testing.assert_allclose(window["probability"], model.labels[:3], rtol=1e-6)
        assert [float(v) for v in window["label"]] == pytest.approx(model.labels[:3].tolist(), rel=1e-6)
        assert window["actual"].tolist() == [None, "151.5", None]
    else:
        assert window["label"].tolist() == [CLASSES[i] for i in model.labels[:3]]
        np.testing.assert_allclose(window["probability"], model.probabilities[:3].max(axis=1), rtol=1e-6)
        assert window["actual"].tolist() == [None, "mid", None]
    assert shared.model_name == name


def test_a_recording_the_model_does_not_reproduce_fails_the_self_check(tmp_path: Path, model: TrainedModel) -> None:
    selfcheck = model.selfcheck()
    if model.probabilities is None:
        selfcheck["values"] = [v * 1.01 + 1.0 for v in selfcheck["values"]]
        expected = "values differ from the recording"
    else:
        selfcheck["probabilities"] = [row[::-1] for row in selfcheck["probabilities"]]
        expected = "probabilities differ from the recording"
    bundle = write_bundle(tmp_path / "v9", model, "9", selfcheck=selfcheck)
    with pytest.raises(SelfCheckFailed, match=expected):
        load_model(read_bundle(bundle), max_rows=1000, unknown_categories="error")
    load_model(read_bundle(write_bundle(tmp_path / "v1", model, "1")), max_rows=1000, unknown_categories="error")
