"""A whole local loop for integration tests: `driftloop up` on free ports, with helpers to drive and watch it.

The data directory gets its own Prefect server, model server and worker; alerts go to the example receiver
(scripts/alert_receiver.py), which appends each one to a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from driftloop.events import DRIFT_DETECTED, model_resource
from driftloop.io.prefect_http import prefect_api_client
from driftloop.settings import TELEMETRY_OFF
from tests.support import prefect_db
from tests.support.cli import Driftloop
from tests.support.host import VENV_BIN, free_port
from tests.support.serving import wait_until

PROJECT_DIR = Path(__file__).resolve().parents[2]
DRIFT_EVENT = "driftloop.drift.detected"


def own_stack(tmp_path: Path, **settings: str) -> Driftloop:
    """A data directory with its own Prefect server, model server and worker on free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))}
    env.update(TELEMETRY_OFF)
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DRIFTLOOP_HOME": str(tmp_path / "home"),
            "DRIFTLOOP_PREFECT_PORT": str(free_port()),
            "DRIFTLOOP_SERVE_PORT": str(free_port()),
            "DRIFTLOOP_WORKER_PORT": str(free_port()),
            "DRIFTLOOP_START_MLFLOW_UI": "false",
            # The tests run every check themselves; a schedule firing mid-test would add checks.
            "DRIFTLOOP_DRIFT_CRON": "0 0 1 1 *",
            # Evidently's HTML report costs a drifting check about 13 s of CPU; the tests that read it ask for it.
            "DRIFTLOOP_DRIFT_REPORT": "false",
            # Logging the scikit-learn pipeline beside the ONNX model costs a training run about 2.3 s of CPU; the
            # tests that load it ask for it.
            "DRIFTLOOP_LOG_SKLEARN_MODEL": "false",
            "DRIFTLOOP_DRIFT_MIN_ROWS": "200",
            "DRIFTLOOP_DRIFT_WINDOW_ROWS": "500",
            "DRIFTLOOP_LABEL_MIN_ROWS": "100",
            "DRIFTLOOP_RETRAIN_COOLDOWN_SECONDS": "0",
            "DRIFTLOOP_RELOAD_INTERVAL": "0.5",
            "COLUMNS": "200",
        }
    )
    env.update({f"DRIFTLOOP_{key.upper()}": value for key, value in settings.items()})
    prefect_db.seed(tmp_path / "home" / "prefect")  # where `driftloop up` keeps its Prefect server's database
    return Driftloop(home=tmp_path / "home", env=env)


@contextmanager
def running_stack(tmp_path: Path, **settings: str) -> Iterator[Driftloop]:
    """`driftloop up` with alerts going to the example receiver; everything stopped afterwards."""
    dl = own_stack(tmp_path, **settings)
    port = free_port()
    receiver = subprocess.Popen(
        [str(VENV_BIN / "python"), "scripts/alert_receiver.py", "--port", str(port), "--out", str(alerts_file(dl))],
        cwd=PROJECT_DIR, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    dl.env["DRIFTLOOP_ALERT_WEBHOOK_URL"] = f"http://127.0.0.1:{port}/alerts"
    try:
        dl.run("up", timeout=400)
        yield dl
    finally:
        dl.run("down", check=False)
        receiver.terminate()
        receiver.wait(timeout=10)


def alerts_file(dl: Driftloop) -> Path:
    return dl.home.parent / "alerts.jsonl"


def alerts(dl: Driftloop) -> list[dict[str, Any]]:
    path = alerts_file(dl)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def api(dl: Driftloop) -> httpx.Client:
    return prefect_api_client(f"http://127.0.0.1:{dl.env['DRIFTLOOP_PREFECT_PORT']}/api")


def server_url(dl: Driftloop) -> str:
    return f"http://127.0.0.1:{dl.env['DRIFTLOOP_SERVE_PORT']}"


def forged_drift_event(model_name: str) -> dict[str, Any]:
    """A drift event about ``model_name`` as Prefect's REST API takes it (POST /api/events): what a caller who is
    not the drift check would send to start a retrain."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": "2026-12-03T00:00:00Z",
        "event": DRIFT_DETECTED,
        "resource": {"prefect.resource.id": model_resource(model_name)},
        "payload": {},
    }


def events(dl: Driftloop, name: str, since: datetime) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since.isoformat()}}, "limit": 50}
    with api(dl) as client:
        response = client.post("/events/filter", json=body)
        response.raise_for_status()
        return list(response.json()["events"])


def drift_events(dl: Driftloop, since: datetime) -> list[dict[str, Any]]:
    return events(dl, DRIFT_EVENT, since)


def flow_runs(dl: Driftloop, flow_name: str) -> list[dict[str, Any]]:
    with api(dl) as client:
        body = {"flows": {"name": {"any_": [flow_name]}}, "sort": "EXPECTED_START_TIME_ASC"}
        response = client.post("/flow_runs/filter", json=body)
        response.raise_for_status()
        return list(response.json())


def artifact(dl: Driftloop, flow_run_id: str, key: str) -> str:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}}
    with api(dl) as client:
        response = client.post("/artifacts/filter", json=body)
        response.raise_for_status()
        found = response.json()
    return str(found[-1]["data"]) if found else ""


def flow_run_logs(dl: Driftloop, flow_run_id: str) -> str:
    """A flow run's log lines (its subflows' are separate runs), for a failure's message."""
    with api(dl) as client:
        logs = client.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}}).json()
    return "\n".join(str(entry["message"]) for entry in logs)


def wait_for(what: str, condition: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    return wait_until(what, condition, timeout, every)


def finished_runs(dl: Driftloop, flow_name: str, count: int, timeout: float = 300) -> list[dict[str, Any]]:
    """Wait until at least ``count`` runs of the flow exist and all have reached a final state."""
    final = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

    def done() -> list[dict[str, Any]] | None:
        runs = flow_runs(dl, flow_name)
        return runs if len(runs) >= count and all(r["state_type"] in final for r in runs) else None

    return list(wait_for(f"{count} finished {flow_name} run(s)", done, timeout, every=2))


def replay(
    dl: Driftloop, frame: pd.DataFrame, target: str = "churn", labels: bool = True, model: str | None = None
) -> list[str]:
    """Send each row to /predict (and, with ``labels``, its true label to /feedback); returns the request ids.

    A float target is sent as a number (a regressor's label), anything else as text (a class name). With ``model``,
    to that model's routes (/models/NAME/predict, /models/NAME/feedback) instead of the default model's.
    """
    prefix = f"/models/{model}" if model else ""
    truth = frame[target].to_numpy()
    features = frame.drop(columns=[target])
    rows = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    ids = []
    with httpx.Client(base_url=server_url(dl), timeout=30) as client:
        for row, label in zip(rows, truth, strict=True):
            response = client.post(f"{prefix}/predict", json={"features": row})
            assert response.status_code == 200, response.text
            ids.append(response.headers["x-request-id"])
            if labels:
                given = float(label) if isinstance(label, float | np.floating) else str(label)
                sent = client.post(f"{prefix}/feedback", json={"request_id": ids[-1], "label": given})
                assert sent.status_code == 202, sent.text
    return ids


def wait_logged(dl: Driftloop, rows: int, timeout: float = 60, model: str | None = None) -> None:
    """The server writes the prediction log in the background: wait until ``rows`` rows (of ``model``) are in it."""
    from driftloop.io.prediction_store import open_prediction_log

    store = open_prediction_log(f"sqlite:///{dl.home / 'predictions.db'}")
    try:
        wait_for(f"{rows} logged predictions", lambda: store.count(model) >= rows, timeout, every=0.5)
    finally:
        store.close()
