"""Performance estimated without labels, through the real loop: train, `driftloop serve`, /predict, drift-check.

The world: ``P(y = 1) = sigmoid(3·x1)``; ``x2``..``x5`` are noise. The model is trained where ``x1`` is spread
wide (mostly sure, mostly right). Traffic spread wider still is a shift that does not hurt: no episode. Traffic
squeezed near the boundary hurts: 1 of 5 columns drifted (no drift by the share), no label has come back, and the
estimate alone opens the episode. The labels then arrive late through /feedback, and the label check confirms it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.io.datasets import schema_yaml
from tests.support.cli import PrefectServer, make_driftloop
from tests.support.serving import driftloop_serve
from tests.support.stack import replay, wait_logged

pytestmark = pytest.mark.integration

FEATURES = ("x1", "x2", "x3", "x4", "x5")
WINDOW = 600


def _world(rows: int, seed: int, spread: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in FEATURES})
    frame["x1"] *= spread
    frame["y"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-3.0 * frame["x1"])), "yes", "no")
    return frame


def test_a_harmful_shift_is_estimated_before_labels_open_an_episode_and_labels_confirm_it(
    tmp_path: Path, prefect_server: PrefectServer
) -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "boundary",
            "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
            "features": [{"name": name, "kind": "numeric"} for name in FEATURES],
        }
    )
    data, schema_file = tmp_path / "boundary.csv", tmp_path / "boundary.yaml"
    _world(4000, seed=1, spread=2.0).to_csv(data, index=False)
    schema_file.write_text(schema_yaml(schema))
    dl = make_driftloop(
        tmp_path,
        prefect_server,
        model_name="boundary",
        drift_window_rows=str(WINDOW),
        drift_min_rows="200",
        label_min_rows="200",
    )
    dl.run("train", "--data", str(data), "--schema", str(schema_file))

    with driftloop_serve(dl, tmp_path) as url:
        replay(dl, _world(WINDOW, seed=2, spread=3.0), target="y", labels=False)
        wait_logged(dl, WINDOW)
        easy = dl.run("drift-check", "--model-name", "boundary")
        assert "verdict  no drift" in easy.stdout, easy.stdout
        assert "estimate ok  (label-free, from the model's confidence: accuracy " in easy.stdout
        assert "event emitted" not in easy.stdout

        hard = _world(WINDOW, seed=3, spread=0.3)
        ids = replay(dl, hard, target="y", labels=False)
        wait_logged(dl, 2 * WINDOW)
        # A policy where only the labels open an episode: the same estimate is reported and opens nothing.
        dl.env["DRIFTLOOP_DRIFT_OPENS_EPISODE"] = "labels"
        labels_only = dl.run("drift-check", "--model-name", "boundary")
        assert "estimate degraded" in labels_only.stdout, labels_only.stdout
        assert "episode  may be opened by labels (none fired)" in labels_only.stdout
        assert "event emitted" not in labels_only.stdout
        del dl.env["DRIFTLOOP_DRIFT_OPENS_EPISODE"]
        estimated = dl.run("drift-check", "--model-name", "boundary")
        assert "episode  may be opened by features, labels, estimate (fired: estimate)" in estimated.stdout
        assert "verdict  no drift" in estimated.stdout, estimated.stdout
        assert "labels   insufficient labels" in estimated.stdout
        assert "estimate degraded  (label-free, from the model's confidence: accuracy " in estimated.stdout
        assert "drift episode opened; event emitted" in estimated.stdout

        with httpx.Client(base_url=url, timeout=30) as client:
            for request_id, label in zip(ids, hard["y"], strict=True):
                sent = client.post("/feedback", json={"request_id": request_id, "label": str(label)})
                assert sent.status_code == 202, sent.text
        confirmed = dl.run("drift-check", "--model-name", "boundary")
        assert "labels   degraded" in confirmed.stdout, confirmed.stdout
        assert "estimate degraded" in confirmed.stdout
        # The classes still come back half and half, as in training: the model got worse, the target did not move.
        assert "targets  no drift (the labels that came back vs training: Jensen-Shannon distance" in confirmed.stdout
