"""Performance estimated without labels, through the real loop: train, `driftloop serve`, /predict, drift-check.

The world: ``P(y = 1) = sigmoid(3·x1)``; ``x2``..``x5`` are noise. The model is trained where ``x1`` is spread
wide (mostly sure, mostly right). Traffic spread wider still is a shift that does not hurt: no episode. Traffic
squeezed near the boundary hurts: 1 of 5 columns drifted (no drift by the share), no label has come back, and the
estimate alone opens the episode. The labels then arrive late through /feedback, and the label check confirms it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.io.datasets import schema_yaml
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.host import VENV_BIN, free_port
from tests.support.serving import wait_until
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


@contextmanager
def _serving(dl: Driftloop, tmp_path: Path) -> Iterator[None]:
    """`driftloop serve` following the champion, logging predictions to the data directory's log."""
    port = free_port()
    dl.env["DRIFTLOOP_SERVE_PORT"] = str(port)
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen([str(VENV_BIN / "driftloop"), "serve"], env=dl.env, stdout=log, stderr=log)
    try:
        ready = f"http://127.0.0.1:{port}/ready"
        wait_until("the model server", lambda: _answers(ready) or server.poll() is not None, timeout=120, every=0.5)
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        yield
    finally:
        server.terminate()
        server.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


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

    with _serving(dl, tmp_path):
        replay(dl, _world(WINDOW, seed=2, spread=3.0), target="y", labels=False)
        wait_logged(dl, WINDOW)
        easy = dl.run("drift-check", "--model-name", "boundary")
        assert "verdict  no drift" in easy.stdout, easy.stdout
        assert "estimate ok  (no labels: accuracy " in easy.stdout
        assert "event emitted" not in easy.stdout

        hard = _world(WINDOW, seed=3, spread=0.3)
        ids = replay(dl, hard, target="y", labels=False)
        wait_logged(dl, 2 * WINDOW)
        estimated = dl.run("drift-check", "--model-name", "boundary")
        assert "verdict  no drift" in estimated.stdout, estimated.stdout
        assert "labels   insufficient labels" in estimated.stdout
        assert "estimate degraded  (no labels: accuracy " in estimated.stdout
        assert "drift episode opened; event emitted" in estimated.stdout

        with httpx.Client(base_url=f"http://127.0.0.1:{dl.env['DRIFTLOOP_SERVE_PORT']}", timeout=30) as client:
            for request_id, label in zip(ids, hard["y"], strict=True):
                sent = client.post("/feedback", json={"request_id": request_id, "label": str(label)})
                assert sent.status_code == 202, sent.text
        confirmed = dl.run("drift-check", "--model-name", "boundary")
        assert "labels   degraded" in confirmed.stdout, confirmed.stdout
        assert "estimate degraded" in confirmed.stdout
