"""The promotion lock against a real Prefect server, and pin/unpin/history through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from driftloop.core import lineage
from driftloop.io.prefect_concurrency import promotion_limit_name
from driftloop.io.registry import ModelRegistry
from driftloop.settings import TELEMETRY_OFF
from tests.support.cli import Driftloop, PrefectServer
from tests.support.host import free_port

pytestmark = pytest.mark.integration

# Holds the lock in its own process: waits for its go file after its imports, so holders can ask at one moment.
HOLDER = """
import json, sys, time
from pathlib import Path
from driftloop.io.prefect_concurrency import promotion_lock

model, hold, timeout, workdir = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
name, others = sys.argv[5], [n for n in sys.argv[6].split(",") if n != sys.argv[5]]
(workdir / f"{name}.ready").touch()
while not (workdir / f"{name}.go").exists():
    time.sleep(0.01)
asked = time.time()
try:
    with promotion_lock(model, timeout_seconds=timeout):
        start = time.time()
        (workdir / f"{name}.holding").touch()
        # Held for `hold` seconds, or until every other holder has its result: a waiter that times out on a busy
        # machine may only ask seconds after this one took the lock.
        while time.time() - start < hold and not all((workdir / f"{n}.json").exists() for n in others):
            time.sleep(0.02)
        end = time.time()
    result = {"asked": asked, "start": start, "end": end}
except Exception as exc:
    result = {"asked": asked, "error": f"{type(exc).__name__}: {exc}"}
(workdir / f"{name}.json").write_text(json.dumps(result))
"""


def _env(prefect: PrefectServer, home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))}
    return {**env, **TELEMETRY_OFF, "PREFECT_API_URL": prefect.api_url, "PREFECT_HOME": str(home)}


def _wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def _hold_together(
    prefect: PrefectServer, tmp_path: Path, model: str, holders: dict[str, tuple[float, float]], staggered: bool = False
) -> dict[str, dict[str, float | str]]:
    """One process per holder (name → (hold seconds, timeout)); results by name.

    All ask for the lock at the same moment, or with ``staggered`` each only once the one before holds it.
    """
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = _env(prefect, tmp_path / "prefect-home")
    procs = [
        subprocess.Popen(  # noqa: S603 (our own script)
            [sys.executable, str(script), model, str(hold), str(timeout), str(tmp_path), name, ",".join(holders)],
            env=env,
            cwd=tmp_path,
        )
        for name, (hold, timeout) in holders.items()
    ]
    try:
        for name in holders:
            _wait_for(tmp_path / f"{name}.ready")
        names = list(holders)
        for number, name in enumerate(names, 1):
            (tmp_path / f"{name}.go").touch()
            if staggered and number < len(names):
                _wait_for(tmp_path / f"{name}.holding")
        for proc in procs:
            assert proc.wait(timeout=180) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in holders}


def _limit(prefect: PrefectServer, name: str) -> dict[str, object] | None:
    with prefect.client() as client:
        response = client.get(f"/v2/concurrency_limits/{name}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return dict(response.json())


def test_promotion_lock_serializes_two_processes_and_creates_its_limit(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    model = f"lock-{uuid.uuid4().hex[:8]}"
    name = promotion_limit_name(model)
    assert _limit(prefect_server, name) is None

    results = _hold_together(prefect_server, tmp_path, model, {"a": (1.5, 60), "b": (1.5, 60)})

    first, second = sorted(results.values(), key=lambda r: float(r["start"]))
    assert "error" not in first
    assert "error" not in second
    # Both asked before the first let go, yet the second held it only after.
    assert float(second["asked"]) < float(first["end"])
    assert float(second["start"]) >= float(first["end"])
    limit = _limit(prefect_server, name)
    assert limit is not None
    assert (limit["limit"], limit["active"], limit["active_slots"]) == (1, True, 0)


def test_promotion_lock_times_out_with_a_clear_error_and_repairs_a_wrong_limit(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    model = f"lock-{uuid.uuid4().hex[:8]}"
    name = promotion_limit_name(model)
    with prefect_server.client() as client:
        client.post("/v2/concurrency_limits/", json={"name": name, "limit": 5, "active": False}).raise_for_status()

    results = _hold_together(prefect_server, tmp_path, model, {"holder": (300, 60), "waiter": (0, 1)}, staggered=True)

    assert "error" not in results["holder"]
    error = str(results["waiter"]["error"])
    assert error.startswith(f"RegistryError: another move of the champion of '{model}' held the Prefect concurrency")
    assert f"`prefect gcl inspect {name}`" in error
    limit = _limit(prefect_server, name)
    assert limit is not None
    assert (limit["limit"], limit["active"]) == (1, True)


def _register(dl: Driftloop, versions: int = 2) -> None:
    """Versions whose parity passed, straight into the data directory's store (what `train` would leave)."""
    dl.home.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=dl.tracking_uri, registry_uri=dl.tracking_uri)
    client.create_registered_model("churn")
    for _ in range(versions):
        client.create_model_version("churn", source=str(dl.home / "no-model"), tags={lineage.PARITY: lineage.PASSED})


def test_pin_unpin_and_history_through_the_cli(driftloop: Driftloop, prefect_server: PrefectServer) -> None:
    _register(driftloop)
    driftloop.run("promote", "1", "--reason", "first model")

    pinned = driftloop.run("pin", "2", "--reason", "holiday freeze")
    assert "champion: v1 → v2 (to pin it: holiday freeze)" in pinned.stdout
    assert "champion pinned at v2 (holiday freeze): automatic promotions are refused until `driftloop unpin`" in (
        pinned.stdout
    )
    # The CLI took the flows' promotion lock: its limit now exists.
    assert _limit(prefect_server, promotion_limit_name("churn")) is not None

    history = driftloop.run("history").stdout
    pin_row = next(line for line in history.splitlines() if " pin " in line)
    assert "holiday freeze" in pin_row
    assert "driftloop pin" in pin_row  # the actor: user@host via driftloop pin
    assert "warning" not in history
    models = driftloop.run("models").stdout
    assert "champion pinned at v2 by " in models
    assert ": holiday freeze" in models

    # A person's promote still works while pinned; the pin follows it.
    moved = driftloop.run("promote", "1", "--reason", "hotfix")
    assert "(hotfix (the pin by " in moved.stdout
    assert ModelRegistry("churn", driftloop.tracking_uri).pinned().version == "1"  # type: ignore[union-attr]

    unpinned = driftloop.run("unpin", "--reason", "freeze over")
    assert "champion unpinned (was pinned at v1; freeze over)" in unpinned.stdout
    again = driftloop.run("unpin", "--reason", "again", check=False)
    assert again.returncode == 1
    assert again.stderr.splitlines() == ["error: the champion of 'churn' is not pinned: nothing to unpin"]
    assert " unpin " in driftloop.run("history").stdout


def test_history_warns_about_a_malformed_entry_and_exits_0(driftloop: Driftloop) -> None:
    _register(driftloop)
    for version in ("1", "2"):
        driftloop.run("promote", version, "--reason", f"v{version}")
    client = MlflowClient(tracking_uri=driftloop.tracking_uri, registry_uri=driftloop.tracking_uri)
    experiment = client.get_experiment_by_name(lineage.HISTORY_EXPERIMENT)
    assert experiment is not None
    (first,) = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{lineage.HISTORY_SEQ}` = '1'")
    client.set_tag(first.info.run_id, lineage.HISTORY_ENTRY, '{"edited": true}')
    client.set_registered_model_tag("churn", lineage.HISTORY_PREFIX + "manual", "hello")

    result = driftloop.run("history")
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: registered-model tag 'driftloop.history.manual' of 'churn' is not a driftloop history entry "
        "('hello'): skipped",
        "warning: history entry seq 1 of 'churn' is malformed (no seq or prev): skipped",
    ]
    assert result.stdout.index("champion history of churn") < result.stdout.index("warning: ")
    # The valid entries still drive a rollback (v1's promote is gone, so promote v1 again first).
    driftloop.run("promote", "1", "--reason", "back to v1")
    rolled = driftloop.run("rollback", "--reason", "v1 misbehaves")
    assert "v1 → v2" in rolled.stdout


def test_docker_mode_refuses_a_pin_that_moves_the_alias(driftloop: Driftloop) -> None:
    _register(driftloop)
    driftloop.run("promote", "1", "--reason", "first")
    docker = Driftloop(home=driftloop.home, env={**driftloop.env, "DRIFTLOOP_DEPLOY": "docker"})
    refused = docker.run("pin", "2", "--reason", "freeze", check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: DRIFTLOOP_DEPLOY=docker: the champion is the version that serves")
    assert len(refused.stderr.strip().splitlines()) == 1
    # Pinning what serves does not move it, and lifting a pin never does.
    docker.run("pin", "1", "--reason", "freeze")
    docker.run("unpin", "--reason", "thaw")


def test_cli_moves_go_ahead_without_a_prefect_server(driftloop: Driftloop) -> None:
    _register(driftloop)
    port = free_port()
    offline = Driftloop(home=driftloop.home, env={**driftloop.env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    result = offline.run("promote", "1", "--reason", "no Prefect here")
    assert "champion: none → v1 (no Prefect here)" in result.stdout
    assert "Prefect is not running" in result.stdout
    offline.run("pin", "1", "--reason", "freeze")
    offline.run("unpin", "--reason", "thaw")
    # Nothing was started for it.
    assert (
        subprocess.run(  # noqa: S603
            [sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"],
            capture_output=True,
        ).returncode
        != 0
    )
