"""A model whose categories were learned from its snapshot, served: a value outside the learned list is answered
as the schema says, the other bucket's prediction (``unseen: other``) or a 422 naming it (``unseen: error``), on
the one-row path and on the vectorised batch path alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from driftloop.core.categories import learn_categories
from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import OTHER_CATEGORY
from driftloop.io.onnx_export import export_onnx, proven_grouped_onnx
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.prediction_store import open_prediction_log
from driftloop.serving.app import create_app
from driftloop.serving.source import FileModelSource
from driftloop.settings import Settings
from tests.support.bundles import TrainedModel, write_bundle
from tests.support.serving import serving_settings
from tests.support.worlds import shop_schema, shops

NEVER_SEEN = "a-shop-opened-yesterday"


def _trained(unseen: str) -> TrainedModel:
    train, raw_holdout = shops(2000, 0), shops(200, 1)
    schema = learn_categories(shop_schema(categories="learn", max_categories=8, unseen=unseen), train)
    pipeline = build_pipeline(schema, "logistic_regression", seed=0).fit(
        to_model_frame(train, schema), encode_target(train["y"], schema)
    )
    onnx_bytes = export_onnx(pipeline, schema)
    holdout = to_model_frame(raw_holdout, schema)
    labels, probabilities = OnnxModel.from_bytes(onnx_bytes, schema).predict(holdout)
    return TrainedModel(schema, onnx_bytes, proven_grouped_onnx(onnx_bytes, schema, holdout), raw_holdout, holdout,
                        labels, probabilities)  # fmt: skip


@pytest.fixture(scope="module", params=["other", "error"])
def model(request: pytest.FixtureRequest) -> TrainedModel:
    return _trained(request.param)


def _client(tmp_path: Path, model: TrainedModel) -> TestClient:
    bundle = write_bundle(tmp_path / "v1", model, "1", name="shops")
    return TestClient(create_app(_settings(tmp_path), source=FileModelSource(bundle)))


def _settings(tmp_path: Path) -> Settings:
    return serving_settings(tmp_path / "server", model_name="shops", max_batch_rows=100)


def _logged_shops(tmp_path: Path) -> list[str]:
    store = open_prediction_log(_settings(tmp_path).predictions_url)
    try:
        return [str(shop) for shop in store.read_window("shops")["shop"]]
    finally:
        store.close()


def test_an_unseen_value_is_answered_as_the_schema_says(tmp_path: Path, model: TrainedModel) -> None:
    learned = model.schema.feature("shop")
    assert learned.categories is not None
    assert OTHER_CATEGORY in learned.categories  # the long tail was bucketed in training
    frequent = learned.categories[0]
    rows = [{"x": 0.3, "shop": frequent}, {"x": 0.3, "shop": NEVER_SEEN}, {"x": 0.3, "shop": OTHER_CATEGORY}]
    with _client(tmp_path, model) as client:
        one = client.post("/predict", json={"features": rows[1]})
        batch = client.post("/predict/batch", json={"instances": rows})
        columns = client.post(
            "/invocations",
            json={"dataframe_split": {"columns": ["x", "shop"], "data": [list(r.values()) for r in rows]}},
        )
        known = client.post("/predict", json={"features": rows[0]})
    assert known.status_code == 200
    if learned.unseen == "error":
        for refused in (one, batch):
            assert refused.status_code == 422, refused.text
            assert refused.json()["reason"] == "unknown_category"
            assert f"unknown category '{NEVER_SEEN}'" in refused.json()["detail"]
        assert columns.status_code == 400  # MLflow's protocol, MLflow's error body
        assert f"unknown category '{NEVER_SEEN}'" in columns.json()["message"]
        return
    for answered in (one, batch, columns):
        assert answered.status_code == 200, answered.text
    expected = OnnxModel.from_bytes(model.onnx_bytes, model.schema).predict(
        to_model_frame(pd.DataFrame(rows), model.schema)
    )[1]
    assert expected is not None
    other = expected[2, 1]
    assert one.json()["probability"][1] == pytest.approx(other, abs=1e-6)
    scored = np.array(batch.json()["probabilities"])
    np.testing.assert_allclose(scored, expected, atol=1e-6)
    np.testing.assert_allclose(columns.json()["predictions"]["probabilities"], expected, atol=1e-6)
    assert scored[1, 1] == pytest.approx(other, abs=1e-6)
    assert abs(scored[0, 1] - other) > 0.1  # a learned shop is scored as itself (the good shops score high)
    # The log keeps what was sent: a drift check sees the new shop, and a retrain can learn it.
    logged = _logged_shops(tmp_path)
    assert logged.count(NEVER_SEEN) == 3
    assert logged.count(OTHER_CATEGORY) == 2  # the rows sent as the bucket itself


def test_a_server_told_to_ignore_unknown_values_scores_them_in_the_bucket_training_made(tmp_path: Path) -> None:
    model = _trained("error")
    bundle = write_bundle(tmp_path / "v1", model, "1", name="shops")
    settings = _settings(tmp_path).model_copy(update={"unknown_categories": "ignore"})
    rows = [{"x": 0.3, "shop": NEVER_SEEN}, {"x": 0.3, "shop": OTHER_CATEGORY}]
    with TestClient(create_app(settings, source=FileModelSource(bundle))) as client:
        answered = client.post("/predict/batch", json={"instances": rows})
    assert answered.status_code == 200, answered.text
    scored = answered.json()["probabilities"]
    np.testing.assert_allclose(scored[0], scored[1], atol=1e-6)
