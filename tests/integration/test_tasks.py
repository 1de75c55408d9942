"""A multiclass and a regression model through the whole loop, as a user with their own CSV would run it.

`driftloop schema infer` drafts the schema, `driftloop train` trains and registers, the server answers every
protocol with the task's outputs, traffic from a shifted world arrives with its labels, `driftloop drift-check`
finds the drift, the Prefect automation retrains on the new labelled rows, the gate promotes the retrained
version because it is significantly better on them, and the server swaps to it.

The data is generated, so the truth is known: in the shifted world ``x1`` moved and the target follows another
rule, which only a model that saw the new rows can learn.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from driftloop.core import lineage
from driftloop.io.registry import ModelRegistry
from tests.support.stack import drift_events, finished_runs, replay, running_stack, server_url, wait_for, wait_logged
from tests.support.worlds import CLASSES, world

pytestmark = pytest.mark.integration


def _post(client: httpx.Client, path: str, **kwargs: object) -> dict[str, object]:
    response = client.post(path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, (path, response.status_code, response.text)
    body: dict[str, object] = response.json()
    return body


def _answers_on_every_protocol(base: str, name: str, kind: str, rows: pd.DataFrame) -> None:
    """Each protocol answers the same rows with the task's outputs, and all agree."""
    features = rows.drop(columns=["y"])
    records = features.to_dict(orient="records")
    text = io.StringIO()
    features.to_csv(text, index=False, quoting=csv.QUOTE_MINIMAL)
    with httpx.Client(base_url=base, timeout=30) as client:
        one = _post(client, "/predict", json={"features": records[0]})
        batch = _post(client, "/predict/batch", json={"instances": records})
        mlflow = _post(client, "/invocations", json={"dataframe_records": records})
        mlflow_csv = _post(client, "/invocations", content=text.getvalue(), headers={"content-type": "text/csv"})
        v2 = _post(
            client,
            f"/v2/models/{name}/infer",
            json={
                "inputs": [
                    {
                        "name": column,
                        "shape": [len(rows), 1],
                        "datatype": "BYTES" if column == "region" else "FP32",
                        "data": features[column].tolist(),
                    }
                    for column in features.columns
                ]
            },
        )
        metadata = client.get(f"/v2/models/{name}").json()
        metrics = client.get("/metrics").text
    outputs = {tensor["name"]: tensor for tensor in v2["outputs"]}  # type: ignore[attr-defined]
    if kind == "regression":
        values = batch["predictions"]
        assert isinstance(values, list)
        assert all(isinstance(v, float) for v in values)
        assert one["prediction"] == pytest.approx(values[0])
        assert set(one) == {"prediction", "model_version"}
        assert mlflow == mlflow_csv == {"predictions": values}
        assert outputs["prediction"]["shape"] == [len(rows), 1]
        assert outputs["prediction"]["data"] == pytest.approx(values)
        assert metadata["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}]
        assert 'driftloop_predicted_value_bucket{le="+Inf",model_version="1"}' in metrics
        assert 'driftloop_predictions_total{label="value",model_version="1"}' in metrics
        return
    probabilities = batch["probabilities"]
    assert isinstance(probabilities, list)
    assert all(len(p) == len(CLASSES) for p in probabilities)
    assert all(sum(p) == pytest.approx(1.0, abs=1e-5) for p in probabilities)
    assert set(batch["labels"]) <= set(CLASSES)  # type: ignore[arg-type]
    assert one["label"] == batch["labels"][0]  # type: ignore[index]
    assert set(one["probabilities"]) == set(CLASSES)  # type: ignore[arg-type]
    assert mlflow == mlflow_csv
    assert mlflow["predictions"]["label"] == batch["predictions"]  # type: ignore[index]
    assert outputs["probabilities"]["shape"] == [len(rows), len(CLASSES)]
    assert outputs["label"]["data"] == batch["predictions"]
    assert metadata["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(CLASSES)]}
    counted = [line for line in metrics.splitlines() if line.startswith("driftloop_predictions_total{")]
    assert counted
    assert all(any(f'label="{c}"' in line for c in CLASSES) for line in counted)


def _served(base: str) -> str | None:
    response = httpx.get(f"{base}/ready", timeout=10)
    return str(response.json().get("model_version")) if response.status_code == 200 else None


@pytest.mark.parametrize(
    ("kind", "estimator", "primary"),
    [("multiclass", "random_forest", "roc_auc_ovr"), ("regression", "gradient_boosting", "r2")],
)
def test_a_model_of_another_task_goes_round_the_whole_loop(
    tmp_path: Path, kind: str, estimator: str, primary: str
) -> None:
    name = f"{kind}-demo"
    reference = tmp_path / "reference.csv"
    world(1500, seed=1, kind=kind, shifted=False).to_csv(reference, index=False)
    with running_stack(tmp_path, model_name=name) as dl:
        schema = tmp_path / "schema.yaml"
        inferred = dl.run("schema", "infer", "--data", str(reference), "--target", "y", "--out", str(schema))
        assert f"target 'y' ({kind})" in inferred.stdout
        trained = dl.run("train", "--data", str(reference), "--schema", str(schema), "--estimator", estimator).stdout
        assert f"{name} v1: promoted to champion" in trained
        assert primary in trained
        base = server_url(dl)
        wait_for("the server to serve v1", lambda: _served(base) == "1", 60)
        _answers_on_every_protocol(base, name, kind, world(20, seed=2, kind=kind, shifted=False))

        started = datetime.now(UTC)
        shifted = world(700, seed=3, kind=kind, shifted=True)
        replay(dl, shifted, target="y", labels=True)
        wait_logged(dl, 700 + 1 + 20 * 4)  # the shifted rows and those of the protocol calls
        check = dl.run("drift-check").stdout
        # One of five features moved (Evidently's rule needs half for dataset drift); the labels say the model is wrong.
        assert "drifted  x1" in check, check
        assert "labels   degraded" in check, check
        assert "event emitted" in check, check
        (event,) = wait_for("the drift event", lambda: drift_events(dl, started), 60)
        assert "x1" in event["payload"]["drifted_columns"]
        (run,) = finished_runs(dl, "retrain-model", 1, timeout=400)
        assert run["state_type"] == "COMPLETED", run

        registry = ModelRegistry(name, dl.tracking_uri)
        retrained = registry.get_version("2")
        assert retrained.tags[lineage.GATE] == "promote", retrained.tags[lineage.GATE_REASON]
        assert retrained.tags[lineage.GATE_REASON].startswith(f"significantly better on recent ({primary}")
        assert retrained.tags[lineage.ESTIMATOR] == estimator
        assert str(registry.champion().version) == "2"
        wait_for("the server to swap to v2", lambda: _served(base) == "2", 60)
        models = dl.run("models").stdout
        assert primary in models
