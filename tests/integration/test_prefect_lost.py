"""The Prefect server dies while `driftloop train` runs: the command ends, and nothing is left open or half-done.

Everything here is real: a `prefect server start` process killed with SIGKILL (its whole process group) once the
flow's `fit-candidate` task began, the real console script, a real MLflow store; then the server started again on
the same port and database, where the heartbeat automation marks the orphaned flow run Crashed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from driftloop.core import lineage
from driftloop.io import services
from driftloop.io.unresponsive_runs import AUTOMATION_NAME, MISSED_HEARTBEATS
from driftloop.settings import FLOW_HEARTBEAT_SECONDS, Settings
from tests.support import prefect_db
from tests.support.cli import PrefectServer, make_driftloop
from tests.support.host import VENV_BIN, free_port

pytestmark = pytest.mark.integration

PATIENCE = 10  # DRIFTLOOP_PREFECT_PATIENCE for this run: the CLI gives up 10 s after the API stops answering
HANG = 300  # seconds after the kill at which the command counts as hung (Prefect's own retries took > 5 min)


@pytest.fixture
def prefect(tmp_path: Path) -> Iterator[tuple[services.ServiceSpec, PrefectServer]]:
    """A Prefect server of this test's own: it is killed and started again."""
    settings = Settings(home=tmp_path / "prefect", prefect_port=free_port())
    prefect_db.seed(settings.prefect_home)
    spec = services.prefect_server_spec(settings)
    services.start_all([spec], timeout=180)
    try:
        yield spec, PrefectServer(api_url=settings.prefect_api, home=settings.home)
    finally:
        services.stop(spec)


def _kill_process_group(spec: services.ServiceSpec) -> None:
    os.killpg(int(spec.pid_path.read_text()), signal.SIGKILL)


def test_training_ends_in_bounded_time_when_prefect_dies_and_its_run_is_crashed_once_prefect_is_back(
    prefect: tuple[services.ServiceSpec, PrefectServer], tmp_path: Path
) -> None:
    spec, server = prefect
    dl = make_driftloop(tmp_path, server, prefect_patience=str(PATIENCE))
    command = subprocess.Popen(
        [str(VENV_BIN / "driftloop"), "train"],
        env=dl.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert command.stdout is not None
    lines: list[str] = []
    killed = threading.Event()

    def read() -> None:
        assert command.stdout is not None
        for line in command.stdout:
            lines.append(line.rstrip("\n"))
            if not killed.is_set() and "fit-candidate" in line:
                _kill_process_group(spec)
                killed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert killed.wait(600), "the flow never reached fit-candidate:\n" + "\n".join(lines[-40:])
        rc = command.wait(timeout=HANG)
    except subprocess.TimeoutExpired:
        command.kill()
        pytest.fail(f"driftloop train still running {HANG} s after its Prefect server died:\n" + "\n".join(lines[-30:]))
    reader.join(timeout=10)
    command.stdout.close()

    output = "\n".join(lines)
    assert rc == 1, output[-3000:]
    last = [line for line in lines if line.strip()][-1]
    assert last.startswith(f"error: the Prefect server at {server.api_url} stopped answering for "), output[-3000:]
    assert "closed FAILED" in last
    assert "Crashed" in last

    # The MLflow run was closed by the CLI as it gave up, saying why; nothing was registered.
    client = MlflowClient(dl.tracking_uri)
    every_run = client.search_runs([e.experiment_id for e in client.search_experiments()])
    runs = [run for run in every_run if run.info.run_name.startswith("train-")]
    assert [run.info.status for run in runs] == ["FAILED"], [(r.info.run_name, r.info.status) for r in every_run]
    assert "stopped answering" in runs[0].data.tags[lineage.CLOSED_LATE]
    flow_run_id = runs[0].data.tags[lineage.FLOW_RUN_ID]
    assert client.search_model_versions() == []

    # Back on the same database: the run stays "Running" until its heartbeats are missed, then is Crashed.
    services.start_all([spec], timeout=180)
    with server.client() as api:
        automations = api.post("/automations/filter", json={}).json()
        assert AUTOMATION_NAME in [automation["name"] for automation in automations]
        silence = FLOW_HEARTBEAT_SECONDS * MISSED_HEARTBEATS
        deadline = time.monotonic() + silence + 180
        state = None
        while time.monotonic() < deadline:
            state = api.get(f"/flow_runs/{flow_run_id}").json()["state"]
            if state["type"] == "CRASHED":
                break
            time.sleep(3)
        assert state is not None
        assert state["type"] == "CRASHED", state
        assert "no heartbeat" in state["message"]


QUIET_FLOW = """
import sys, time
from prefect import flow
from driftloop.io.unresponsive_runs import ensure_crash_automation

@flow(name="quiet-but-alive")
def quiet_but_alive(seconds: float) -> None:
    time.sleep(seconds)

ensure_crash_automation()
quiet_but_alive(float(sys.argv[1]))
"""


def test_a_live_flow_run_longer_than_the_silence_window_is_never_crashed(
    prefect: tuple[services.ServiceSpec, PrefectServer], tmp_path: Path
) -> None:
    """Its heartbeats keep it alive: the automation leaves a run alone while they come (the other direction)."""
    _, server = prefect
    settings = Settings(home=tmp_path / "home", prefect_api_url=server.api_url)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFTLOOP_", "PREFECT_"))}
    env |= settings.process_env()
    lasting = FLOW_HEARTBEAT_SECONDS * MISSED_HEARTBEATS + FLOW_HEARTBEAT_SECONDS
    subprocess.run(
        [str(VENV_BIN / "python"), "-c", QUIET_FLOW, str(lasting)], env=env, check=True, timeout=lasting + 300
    )
    with server.client() as api:
        (run,) = api.post("/flow_runs/filter", json={}).json()
        time.sleep(10)  # the trigger service's periodic look at expired windows has had its turn
        states = api.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
        assert [state["type"] for state in states][-1] == "COMPLETED"
        assert "CRASHED" not in [state["type"] for state in states]
        heartbeats = api.post(
            "/events/filter",
            json={
                "filter": {
                    "event": {"name": ["prefect.flow-run.heartbeat"]},
                    "resource": {"id": [f"prefect.flow-run.{run['id']}"]},
                }
            },
        ).json()
        assert len(heartbeats["events"]) >= MISSED_HEARTBEATS  # it did send them: the check above could have failed
