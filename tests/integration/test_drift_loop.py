"""The closed loop on real services: `driftloop up` (its own Prefect server, deployments, worker, model server),
drift checks, the event → automation → retrain path, episode dedupe, the label check, and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop.core import lineage, scenarios
from driftloop.io.prediction_store import Feedback, PredictionEvent, open_prediction_log
from driftloop.io.registry import ModelRegistry
from driftloop.settings import BUNDLED_DATA, TELEMETRY_OFF
from tests.support.cli import Driftloop
from tests.support.host import VENV_BIN
from tests.support.stack import DRIFT_EVENT, alerts, drift_events, flow_runs, replay, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Driftloop]:
    with running_stack(tmp_path) as dl:
        yield dl


def test_drift_checks_events_and_one_retrain_per_episode(stack: Driftloop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    full = pd.read_csv(BUNDLED_DATA)
    reference = tmp_path / "reference.csv"
    scenarios.longer_tenure_reference(full, seed=3).to_csv(reference, index=False)
    stack.run("train", "--data", str(reference))
    started = datetime.now(UTC)

    # No traffic yet: insufficient data, never drift, no event.
    empty = stack.run("drift-check")
    assert "insufficient data" in empty.stdout

    # Traffic like the reference: no drift, no event.
    replay(stack, scenarios.normal_traffic(pd.read_csv(reference), 300, seed=4))
    normal = stack.run("drift-check")
    assert "verdict  no drift" in normal.stdout
    assert drift_events(stack, started) == []

    # New customers: drift. The check fires five times; one event, one retrain.
    replay(stack, scenarios.new_customers(full, 600, seed=5))
    outputs = [stack.run("drift-check").stdout for _ in range(5)]
    assert all("verdict  drift" in out for out in outputs)
    assert "event emitted" in outputs[0]
    assert all("no new event" in out for out in outputs[1:])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not drift_events(stack, started):
        time.sleep(1)  # the server persists events asynchronously
    events = drift_events(stack, started)
    assert len(events) == 1
    payload = events[0]["payload"]
    assert payload["model"] == "churn"
    assert payload["version"] == "1"
    assert "tenure" in payload["drifted_columns"]
    assert payload["episode"].startswith("churn-v1-")

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = flow_runs(stack, "retrain-model")
        if runs and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED") for r in runs):
            break
        time.sleep(2)
    time.sleep(6)  # a duplicate would have been created by now
    runs = flow_runs(stack, "retrain-model")
    assert len(runs) == 1, [(r["name"], r["state_type"]) for r in runs]
    assert runs[0]["state_type"] == "COMPLETED"
    assert runs[0]["parameters"]["episode"] == payload["episode"]

    # The retrained logistic regression is not significantly better on the recent rows: refused, with the
    # rule and the per-segment comparison recorded; the episode knows its retrain was refused.
    registry = ModelRegistry("churn", stack.tracking_uri)
    retrained = registry.get_version("2")
    assert retrained.tags[lineage.GATE] == "refuse"
    assert "no significant improvement on recent" in retrained.tags[lineage.GATE_REASON]
    assert retrained.tags[lineage.GATE_RULE].startswith("retrain: significantly better on recent")
    assert [s["segment"] for s in json.loads(retrained.tags[lineage.GATE_SEGMENTS])] == ["reference", "recent", "all"]
    assert str(registry.champion().version) == "1"
    episode = json.loads(registry.get_version("1").tags[lineage.DRIFT_EPISODE])
    assert (episode["key"], episode["retrain"], episode["claimed_attempt"]) == (payload["episode"], "refused", 1)
    assert "v2 refused" in registry.get_version("1").tags[lineage.RETRAIN_DECISION]
    # No new labels since: the next check stays quiet.
    assert "waiting for labels (0 new since the last retrain" in stack.run("drift-check").stdout

    # The alert automation posted the drift event to the webhook, once.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not alerts(stack):
        time.sleep(1)
    received = alerts(stack)
    assert len(received) == 1
    assert "driftloop.drift.detected" in received[0]["subject"]
    assert payload["episode"] in received[0]["body"]


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
    # The server persists events asynchronously: poll for it.
    body = {"filter": {"event": {"name": [DRIFT_EVENT]}, "occurred": {"since": started.isoformat()}}}
    deadline = time.monotonic() + 60
    kinds: list[str] = []
    with httpx.Client(base_url=prefect_server.api_url, timeout=30) as client:
        while time.monotonic() < deadline and not kinds:
            events = client.post("/events/filter", json=body).json()["events"]
            kinds = [e["payload"]["kind"] for e in events if e["payload"]["episode"].startswith("churn-v1")]
            time.sleep(1)
    assert kinds == ["concept"]


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
