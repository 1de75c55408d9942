"""Monitoring over time through the real loop: labels that arrive late from a file, and `driftloop monitor`.

The world: ``P(y = 1) = sigmoid(3·x1)``, the rest noise. Traffic squeezed near the decision boundary hurts the
model (its estimate drops before any label). The clients tag each request with their own id (X-Request-ID); the
true labels come back later as a CSV keyed by those ids, first 30% of them (below the label check's minimum: not
judged, coverage shown), then the rest (judged: degraded). Every check is kept in the monitoring store.
"""

from __future__ import annotations

import json
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

FEATURES = ("x1", "x2", "x3")
WINDOW = 500


def _world(rows: int, seed: int, spread: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in FEATURES})
    frame["x1"] *= spread
    frame["y"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-3.0 * frame["x1"])), "yes", "no")
    return frame


def _send(url: str, frame: pd.DataFrame, prefix: str) -> list[str]:
    """/predict each row with the client's own id; returns those ids."""
    ids = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for index, row in enumerate(frame[list(FEATURES)].to_dict(orient="records")):
            ids.append(f"{prefix}-{index}")
            answer = client.post("/predict", json={"features": row}, headers={"x-request-id": ids[-1]})
            assert answer.status_code == 200, answer.text
    return ids


def test_late_labels_from_a_file_fill_in_coverage_and_confirm_the_estimate_in_the_history(
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
    _world(4000, seed=11, spread=2.0).to_csv(data, index=False)
    schema_file.write_text(schema_yaml(schema))
    dl = make_driftloop(
        tmp_path,
        prefect_server,
        model_name="boundary",
        drift_window_rows=str(WINDOW),
        drift_min_rows="200",
        label_min_rows="200",
        drift_report="true",
    )
    dl.run("train", "--data", str(data), "--schema", str(schema_file))
    empty = dl.run("monitor")
    assert "no drift check of 'boundary' recorded yet" in empty.stdout, empty.stdout

    hard = _world(WINDOW, seed=12, spread=0.3)
    with driftloop_serve(dl, tmp_path) as url:
        ids = _send(url, hard, "order")
        wait_logged(dl, WINDOW)
        before = dl.run("drift-check")
        assert "estimate degraded" in before.stdout, before.stdout
        # Something to look at: the Evidently report, as a file a browser opens (MLflow only offers a download).
        (report_line,) = [line for line in before.stdout.splitlines() if line.startswith("report   file://")]
        report = Path(report_line.removeprefix("report   file://"))
        assert report.parent == dl.home / "reports" / "boundary", report
        html = report.read_text(encoding="utf-8")
        assert html.lstrip().lower().startswith("<html") or html.lstrip().lower().startswith("<!doctype html")
        assert "evidently" in html.lower()
        assert len(html) > 100_000

        labels = pd.DataFrame({"order_id": ids, "outcome": hard["y"]})
        early = int(0.3 * WINDOW)
        labels.iloc[:early].to_csv(tmp_path / "early.csv", index=False)
        first = dl.run("labels", "import", str(tmp_path / "early.csv"), "--id-column", "order_id",
                       "--label-column", "outcome")  # fmt: skip
        assert f"{early:,} row(s): {early:,} label(s) joined, 0 already labelled" in first.stdout, first.stdout
        partial = dl.run("drift-check")
        assert f"labels   insufficient labels  ({early} labelled row(s), need 200" in partial.stdout, partial.stdout

        # The rest, plus one id the server never saw and a row labelled already: counted, nothing replaced.
        rest = pd.concat([labels.iloc[early - 1 :], pd.DataFrame({"order_id": ["order-x"], "outcome": ["yes"]})])
        rest.to_parquet(tmp_path / "rest.parquet", index=False)
        second = dl.run("labels", "import", str(tmp_path / "rest.parquet"), "--id-column", "order_id",
                        "--label-column", "outcome")  # fmt: skip
        joined = WINDOW - early
        assert f"{joined:,} label(s) joined, 1 already labelled (kept)" in second.stdout, second.stdout
        assert "1 matching no prediction of 'boundary' (e.g. order-x#0)" in second.stdout
        confirmed = dl.run("drift-check")
        assert "labels   degraded" in confirmed.stdout, confirmed.stdout

    history = json.loads(dl.run("monitor", "--json").stdout)
    checks = history["checks"]
    assert [c["labelled_rows"] for c in checks] == [0, early, WINDOW]
    assert [c["label_coverage"] for c in checks] == [0.0, early / WINDOW, 1.0]
    assert [c["labels"] for c in checks] == ["insufficient labels", "insufficient labels", "degraded"]
    assert all(c["estimate"] == "degraded" for c in checks)
    assert checks[0]["action"] == "emit"
    assert checks[0]["episode"]
    realized = float(np.mean(_predicted(dl, ids) == hard["y"].to_numpy()))
    assert checks[2]["realized_metric"] == "accuracy"
    assert checks[2]["realized_value"] == pytest.approx(realized)
    # The estimate and the realized value side by side in the one window all of this traffic was served in.
    (window,) = history["windows"]
    assert (window["rows"], window["labelled"], window["coverage"]) == (WINDOW, WINDOW, 1.0)
    assert window["realized"] == pytest.approx(realized)
    assert abs(window["estimated_accuracy"] - realized) < 0.1, window

    table = dl.run("monitor").stdout
    assert "drift checks of boundary (newest last)" in table
    assert "performance of boundary by window" in table
    assert f"{early:,} (30%)" in table, table
    assert "windows of 1D by serving time" in table, table  # the length as written, not pandas' nanoseconds

    bad = pd.DataFrame({"order_id": ids[:2], "outcome": ["yes", "maybe"]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    refused = dl.run("labels", "import", str(tmp_path / "bad.csv"), "--id-column", "order_id",
                     "--label-column", "outcome", check=False)  # fmt: skip
    assert refused.returncode == 1
    assert "error: label column 'outcome': data row 2 is 'maybe', expected one of 'no', 'yes'" in refused.stderr


def _predicted(dl: object, client_ids: list[str]) -> np.ndarray:
    """What the server answered for each client id, from the prediction log."""
    import sqlalchemy as sa

    from driftloop.io.prediction_store import open_prediction_log, predictions

    store = open_prediction_log(f"sqlite:///{dl.home / 'predictions.db'}")  # type: ignore[attr-defined]
    try:
        with store.engine.connect() as connection:
            rows = dict(connection.execute(sa.select(predictions.c.client_request_id, predictions.c.label)).all())
    finally:
        store.close()
    return np.asarray([rows[i] for i in client_ids], dtype=object)


def _contracts(rows: int, seed: int, moved: str | None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    contract = rng.choice(["month", "year", "two-year"], rows, p=[0.55, 0.35, 0.10])
    frame = pd.DataFrame(
        {"tenure": rng.normal(30, 10, rows), "charges": rng.normal(70, 20, rows), "contract": contract}
    )
    if moved is not None:
        frame.loc[contract == moved, ["tenure", "charges"]] += [8.0, 16.0]
    frame["y"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-(frame["tenure"] - 30) / 5)), "yes", "no")
    return frame


def test_a_shift_confined_to_one_segment_is_reported_for_that_segment(
    tmp_path: Path, prefect_server: PrefectServer
) -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "contracts",
            "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
            "features": [
                {"name": "tenure", "kind": "numeric"},
                {"name": "charges", "kind": "numeric"},
                {"name": "contract", "kind": "categorical", "categories": ["month", "year", "two-year"]},
            ],
            "segments": ["contract"],
        }
    )
    data, schema_file = tmp_path / "contracts.csv", tmp_path / "contracts.yaml"
    _contracts(6000, seed=21, moved=None).to_csv(data, index=False)
    schema_file.write_text(schema_yaml(schema))
    rows = 1500
    dl = make_driftloop(tmp_path, prefect_server, model_name="contracts", drift_window_rows=str(rows),
                        drift_min_rows="100")  # fmt: skip
    dl.run("train", "--data", str(data), "--schema", str(schema_file))
    with driftloop_serve(dl, tmp_path) as url:
        _send_rows(url, _contracts(rows, seed=22, moved="two-year"))
        wait_logged(dl, rows)
        checked = dl.run("drift-check")
    out = checked.stdout
    assert "verdict  no drift" in out, out  # 10% of the rows moved: diluted below the share
    assert "segments contract=month: no drift" in out
    lines = {
        line.split(":")[0].removeprefix("segments").strip(): line for line in out.splitlines() if "contract=" in line
    }
    assert "contract=two-year: drift (drifted: " in lines["contract=two-year"]
    assert "contract=year: no drift" in lines["contract=year"]
    (check,) = json.loads(dl.run("monitor", "--json").stdout)["checks"]
    assert [s["segment"] for s in check["segments"] if s["verdict"] == "drift"] == ["contract=two-year"]


def _send_rows(url: str, frame: pd.DataFrame) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for row in frame.drop(columns=["y"]).to_dict(orient="records"):
            assert client.post("/predict", json={"features": row}).status_code == 200
