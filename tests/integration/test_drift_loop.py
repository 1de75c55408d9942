"""The closed loop on real services: the label check catching concept drift, and the demo end to end.

No drift, drift, one event per episode and the retrain it starts are in test_decisions.py, on `driftloop up`."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from driftloop.core import scenarios
from driftloop.io.prediction_store import Feedback, PredictionEvent, open_prediction_log
from driftloop.io.prefect_http import prefect_api_client
from driftloop.settings import BUNDLED_DATA, TELEMETRY_OFF
from tests.support.host import VENV_BIN
from tests.support.stack import DRIFT_EVENT

pytestmark = pytest.mark.integration


def test_concept_drift_with_unchanged_features_is_caught_by_labels(tmp_path, prefect_server) -> None:  # type: ignore[no-untyped-def]
    from tests.support.cli import make_driftloop

    dl = make_driftloop(tmp_path, prefect_server)
    dl.env.update({"DRIFTLOOP_DRIFT_MIN_ROWS": "200", "DRIFTLOOP_LABEL_MIN_ROWS": "100"})
    dl.run("train")
    full = pd.read_csv(BUNDLED_DATA)
    window = scenarios.normal_traffic(full, 600, seed=9)
    truth = scenarios.concept_drift_labels(window, window["churn"], seed=9, flip=0.9)
    # Log predictions as the server would (the real store, the real ONNX outputs are not needed for the check:
    # the server's answer is recorded as the label column), then the later true classes as feedback.
    store = open_prediction_log(f"sqlite:///{dl.home / 'predictions.db'}")
    features = window.drop(columns=["churn"])
    columns = {
        name: (
            features[name].astype(object).where(features[name].notna(), "").to_numpy().reshape(-1, 1)
            if features[name].dtype == object
            else features[name].to_numpy(dtype=np.float32).reshape(-1, 1)
        )
        for name in features.columns
    }
    store.write(
        [
            PredictionEvent(
                ts=time.time(), request_id="concept", model_name="churn", model_version="1", features=columns,
                labels=window["churn"].to_numpy(dtype=object),
                probabilities=np.tile(np.array([[0.5, 0.5]], dtype=np.float32), (len(window), 1)),
            )
        ]
    )  # fmt: skip
    store.write_feedback("churn", [Feedback("concept", i, str(label)) for i, label in enumerate(truth)])
    started = datetime.now(UTC)
    result = dl.run("drift-check")
    assert "verdict  no drift" in result.stdout
    assert "labels   degraded" in result.stdout
    assert "event emitted" in result.stdout
    # Nothing was deployed on this Prefect server (no `driftloop up`): the check says no retrain will run.
    assert "no retrain deployment on this Prefect server takes this model's events, so none will run" in " ".join(
        result.stdout.split()
    ), result.stdout
    # The next check finds the episode's retrain still requested: it says again that none will run (trials 16, 17:
    # "retrain requested, not started yet" read as if one were coming).
    again = " ".join(dl.run("drift-check").stdout.split())
    assert "a retrain was requested, but no retrain deployment on this Prefect server takes this model's" in again, (
        again
    )
    assert "events, so none will run" in again, again
    assert "not started yet" not in again, again
    # The server persists events asynchronously: poll for it.
    body = {"filter": {"event": {"name": [DRIFT_EVENT]}, "occurred": {"since": started.isoformat()}}}
    deadline = time.monotonic() + 60
    kinds: list[str] = []
    with prefect_api_client(prefect_server.api_url) as client:
        while time.monotonic() < deadline and not kinds:
            events = client.post("/events/filter", json=body).json()["events"]
            kinds = [e["payload"]["kind"] for e in events if e["payload"]["episode"].startswith("churn-v1")]
            time.sleep(1)
    assert kinds == ["concept"]

    # The user deploys a retrain for the model (as `driftloop up` does; no worker here, so none starts): the
    # request came before anything listened, so the next check asks again at once, not after the claim timeout of
    # hours (trial 52), and the one after that waits for the new request.
    with prefect_api_client(prefect_server.api_url) as client:
        flow = client.post("/flows/", json={"name": "retrain-model"})
        flow.raise_for_status()
        deployment = client.post(
            "/deployments/", json={"name": "retrain-churn", "flow_id": flow.json()["id"], "tags": ["model:churn"]}
        )
        deployment.raise_for_status()
        try:
            heard = " ".join(dl.run("drift-check").stdout.split())
            assert "came before any retrain deployment took this model's events" in heard, heard
            assert "event emitted again" in heard, heard
            waits = " ".join(dl.run("drift-check").stdout.split())
            assert "retrain requested, not started yet (asked for again if none has started by" in waits, waits
        finally:
            client.delete(f"/deployments/{deployment.json()['id']}").raise_for_status()


def test_demo_runs_end_to_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))}
    env.update({**TELEMETRY_OFF, "DRIFTLOOP_HOME": str(tmp_path / "home"), "COLUMNS": "200"})
    result = subprocess.run(
        [str(VENV_BIN / "driftloop"), "demo"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    out = result.stdout
    assert "drift check: Drift check: no drift" in out
    assert "drift check: Drift check: drift" in out
    assert "retrain: Completed" in out
    assert "closed loop: drift detected → v2 serving in" in out or "keep champion" in out
    assert "prefect-server  stopped" in out
