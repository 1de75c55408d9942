"""Models of every task through the whole loop, as a user with their own CSV would run them.

`driftloop schema infer` drafts the schema, `driftloop train` trains and registers, the server answers every
protocol with the task's outputs, traffic from a shifted world arrives with its labels, `driftloop drift-check`
finds the drift, the Prefect automation retrains on the new labelled rows, the gate promotes the retrained
version because it is significantly better on them, and the server swaps to it. Three cases:

* multiclass, LightGBM by name (the boosting extra), with a ``shop`` column of hundreds of values: schema infer
  declares its categories ``learn``, training keeps the most frequent, and the shops the shifted world opens,
  never seen in training, are answered through the other bucket;
* regression, the user's own Pipeline (a ColumnTransformer and ExtraTrees) from a file next to their data;
* the well-known tutorial's case: ``make_classification(n_features=20)`` and a random forest.

The data is generated, so the truth is known: in the shifted world the features moved and the target follows
another rule, which only a model that saw the new rows can learn.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from driftloop.core import lineage
from driftloop.core.schema import OTHER_CATEGORY
from driftloop.core.task import Task, TaskKind
from driftloop.io.datasets import load_schema
from driftloop.io.registry import ModelRegistry
from tests.support.stack import (
    drift_events,
    finished_runs,
    flow_run_logs,
    replay,
    running_stack,
    server_url,
    wait_for,
    wait_logged,
)
from tests.support.worlds import CLASSES, shops, world

pytestmark = pytest.mark.integration

USER_PIPELINE = """
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def pipeline():
    prepare = ColumnTransformer(
        [
            ("numbers", SimpleImputer(strategy="median"), ["x1", "x2", "x3", "x4"]),
            ("region", OneHotEncoder(handle_unknown="ignore"), ["region"]),
        ]
    )
    return Pipeline([("prepare", prepare), ("trees", ExtraTreesRegressor(n_estimators=60, min_samples_leaf=3))])
"""


def _tutorial(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    """The tutorial's data: 20 features; the shifted world is another draw of the generator, moved by 4."""
    x, y = make_classification(
        n_samples=rows, n_features=20, n_informative=8, random_state=7 if shifted else 0, shift=4.0 if shifted else 0.0
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    frame["y"] = y
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _multiclass_with_shops(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    """The multiclass world with a ``shop`` column; the shifted world has twice as many shops, half of them new."""
    frame = world(rows, seed, "multiclass", shifted)
    frame.insert(5, "shop", shops(rows, seed + 100 if shifted else seed, distinct=600 if shifted else 300)["shop"])
    return frame


@dataclass(frozen=True)
class Case:
    kind: str
    classes: tuple[str, ...]  # empty for a regressor
    primary: str
    rows: Callable[[int, int, bool], pd.DataFrame]  # rows, seed, shifted
    model: Callable[[Path], list[str]]  # the train command's model options, given the test's directory
    learned: tuple[str, ...] = ()  # the columns schema infer declares ``categories: learn``


def _user_pipeline(directory: Path) -> list[str]:
    models = directory / "my_models.py"
    models.write_text(USER_PIPELINE)
    return ["--model", f"{models}:pipeline"]


CASES = {
    "multiclass-lightgbm": Case(
        "multiclass", CLASSES, "roc_auc_ovr", _multiclass_with_shops, lambda _: ["--estimator", "lightgbm"],
        learned=("shop",),
    ),
    "regression-user-pipeline": Case(
        "regression", (), "r2", lambda n, s, shifted: world(n, s, "regression", shifted), _user_pipeline
    ),
    "tutorial-random-forest": Case(
        "binary", ("0", "1"), "roc_auc", _tutorial, lambda _: ["--estimator", "random_forest"]
    ),
}  # fmt: skip


def _post(client: httpx.Client, path: str, **kwargs: object) -> dict[str, object]:
    response = client.post(path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, (path, response.status_code, response.text)
    body: dict[str, object] = response.json()
    return body


def _answers_on_every_protocol(base: str, name: str, classes: tuple[str, ...], rows: pd.DataFrame) -> None:
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
                        "datatype": "BYTES" if features[column].dtype == object else "FP32",
                        "data": features[column].tolist(),
                    }
                    for column in features.columns
                ]
            },
        )
        metadata = client.get(f"/v2/models/{name}").json()
        metrics = client.get("/metrics").text
    outputs = {tensor["name"]: tensor for tensor in v2["outputs"]}  # type: ignore[attr-defined]
    if not classes:
        values = batch["predictions"]
        assert isinstance(values, list)
        assert all(isinstance(v, float) for v in values)
        assert one["prediction"] == pytest.approx(values[0])
        assert set(one) == {"prediction", "model_version"}
        assert mlflow == mlflow_csv == {"predictions": values}
        assert outputs["prediction"]["shape"] == [len(rows), 1]
        assert outputs["prediction"]["data"] == pytest.approx(values)
        assert metadata["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}]
        assert f'driftloop_predicted_value_bucket{{le="+Inf",model="{name}",model_version="1"}}' in metrics
        assert f'driftloop_predictions_total{{label="value",model="{name}",model_version="1"}}' in metrics
        return
    probabilities = batch["probabilities"]
    assert isinstance(probabilities, list)
    assert all(len(p) == len(classes) for p in probabilities)
    assert all(sum(p) == pytest.approx(1.0, abs=1e-5) for p in probabilities)
    assert set(batch["labels"]) <= set(classes)  # type: ignore[arg-type]
    assert one["label"] == batch["labels"][0]  # type: ignore[index]
    assert set(one["probabilities"]) == set(classes)  # type: ignore[arg-type]
    assert mlflow == mlflow_csv
    assert mlflow["predictions"]["label"] == batch["predictions"]  # type: ignore[index]
    assert outputs["probabilities"]["shape"] == [len(rows), len(classes)]
    assert outputs["label"]["data"] == batch["predictions"]
    assert metadata["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classes)]}
    counted = [line for line in metrics.splitlines() if line.startswith("driftloop_predictions_total{")]
    assert counted
    assert all(any(f'label="{c}"' in line for c in classes) for line in counted)


def _served(base: str) -> str | None:
    response = httpx.get(f"{base}/ready", timeout=10)
    return str(response.json().get("model_version")) if response.status_code == 200 else None


@pytest.mark.parametrize("case", list(CASES))
def test_a_users_model_goes_round_the_whole_loop(tmp_path: Path, case: str) -> None:
    spec = CASES[case]
    name = case
    reference = tmp_path / "reference.csv"
    spec.rows(1500, 1, False).to_csv(reference, index=False)
    model = spec.model(tmp_path)
    with running_stack(tmp_path, model_name=name) as dl:
        schema = tmp_path / "schema.yaml"
        inferred = dl.run("schema", "infer", "--data", str(reference), "--target", "y", "--out", str(schema))
        assert f"target 'y' ({spec.kind})" in inferred.stdout
        declared = load_schema(schema)
        assert tuple(f.name for f in declared.features if f.learn and f.categories is None) == spec.learned
        trained = dl.run("train", "--data", str(reference), "--schema", str(schema), *model).stdout
        assert f"{name} v1: promoted to champion" in trained, trained
        assert spec.primary in trained
        base = server_url(dl)
        wait_for("the server to serve v1", lambda: _served(base) == "1", 60)
        _answers_on_every_protocol(base, name, spec.classes, spec.rows(20, 2, False))

        started = datetime.now(UTC)
        replay(dl, spec.rows(700, 3, True), target="y", labels=True)
        wait_logged(dl, 700 + 1 + 20 * 4)  # the shifted rows and those of the protocol calls
        check = dl.run("drift-check").stdout
        assert "labels   degraded" in check, check  # the rule changed: the model is wrong on the new rows
        assert "event emitted" in check, check
        assert "no retrain deployment" not in check, check  # `driftloop up` deployed this model's
        (event,) = wait_for("the drift event", lambda: drift_events(dl, started), 60)
        moved = ["x1"] if spec.kind != "binary" else [f"f{i}" for i in range(20)]
        assert set(event["payload"]["drifted_columns"]) & set(moved), event["payload"]
        (run,) = finished_runs(dl, "retrain-model", 1, timeout=400)
        assert run["state_type"] == "COMPLETED", flow_run_logs(dl, run["id"])[-4000:]

        registry = ModelRegistry(name, dl.tracking_uri)
        first, retrained = registry.get_version("1"), registry.get_version("2")
        assert retrained.tags[lineage.GATE] == "promote", retrained.tags[lineage.GATE_REASON]
        reason = retrained.tags[lineage.GATE_REASON]
        assert reason.startswith("significantly better on recent (")
        assert f" rows): {spec.primary} " in reason.split(";")[0]
        assert retrained.tags[lineage.ESTIMATOR] == first.tags[lineage.ESTIMATOR]  # the same model, rebuilt
        # schema infer lists classes in sorted order; the model's outputs follow it
        assert Task.from_record(first.tags[lineage.TASK]) == Task(TaskKind(spec.kind), tuple(sorted(spec.classes)))
        assert str(registry.champion().version) == "2"
        for column in spec.learned:  # learned from each version's own snapshot, the long tail in the bucket
            kept = [registry.schema_of(v).feature(column).categories or () for v in ("1", "2")]
            assert all(OTHER_CATEGORY in categories for categories in kept), kept
            assert set(kept[1]) - set(kept[0]), "the retrain learned no shop of the shifted world"
        wait_for("the server to swap to v2", lambda: _served(base) == "2", 60)
        assert spec.primary in dl.run("models").stdout
