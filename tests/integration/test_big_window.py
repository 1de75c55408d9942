"""A window bigger than DRIFTLOOP_DRIFT_CHUNK_ROWS, through the real loop: streamed from the prediction log in
chunks, its columns spilled to disk and tested one at a time; the verdict is the in-memory one."""

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
from tests.support.stack import wait_logged

pytestmark = pytest.mark.integration

ROWS = 4_000


def _world(rows: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.normal(30 + 4 * shift, 10, rows),
            "charges": rng.normal(70, 20, rows),
            "contract": rng.choice(["month", "year"], rows, p=[0.6 + 0.2 * shift, 0.4 - 0.2 * shift]),
        }
    )
    frame["y"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-(frame["tenure"] - 30) / 5)), "yes", "no")
    return frame


def test_a_window_read_in_chunks_gets_the_in_memory_verdict(tmp_path: Path, prefect_server: PrefectServer) -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "big",
            "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
            "features": [
                {"name": "tenure", "kind": "numeric"},
                {"name": "charges", "kind": "numeric"},
                {"name": "contract", "kind": "categorical", "categories": ["month", "year"]},
            ],
        }
    )
    data, schema_file = tmp_path / "big.csv", tmp_path / "big.yaml"
    _world(5000, seed=31, shift=0.0).to_csv(data, index=False)
    schema_file.write_text(schema_yaml(schema))
    dl = make_driftloop(tmp_path, prefect_server, model_name="big", drift_window_rows=str(ROWS))
    dl.run("train", "--data", str(data), "--schema", str(schema_file))
    traffic = _world(ROWS, seed=32, shift=1.0)
    with driftloop_serve(dl, tmp_path) as url, httpx.Client(base_url=url, timeout=60) as client:
        records = traffic.drop(columns=["y"]).to_dict(orient="records")
        for start in range(0, ROWS, 500):
            sent = client.post("/predict/batch", json={"instances": records[start : start + 500]})
            assert sent.status_code == 200, sent.text
        wait_logged(dl, ROWS)
        in_memory = dl.run("drift-check").stdout
        dl.env["DRIFTLOOP_DRIFT_CHUNK_ROWS"] = "1000"
        chunked = dl.run("drift-check").stdout

    def line(out: str, start: str) -> str:
        (found,) = [text for text in out.splitlines() if text.startswith(start)]
        return found

    assert line(in_memory, "verdict  drift on 4000 rows: drifted share 0.67") == line(chunked, "verdict  ")
    assert line(in_memory, "drifted  ") == line(chunked, "drifted  ")
    assert line(in_memory, "outputs  ") == line(chunked, "outputs  ")
    assert "(the model's predictions vs its predictions at training: " in line(in_memory, "outputs  ")  # the test
    # The estimate is computed on the seeded sample of about DRIFTLOOP_DRIFT_CHUNK_ROWS rows, and says so.
    sampled = int(line(chunked, "estimate ").split(" on ")[1].split(" rows")[0].replace(",", ""))
    assert 700 < sampled < 1300, line(chunked, "estimate ")
    assert " on 4,000 rows" in line(in_memory, "estimate ")
