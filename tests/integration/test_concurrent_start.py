"""Several `driftloop` commands starting the local Prefect server at the same moment, on one fresh data directory.

Before the start lock each launched its own `prefect server start`; all but one failed to bind, and the pid file
kept whichever was written last, so `driftloop down` could miss the live server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from driftloop.settings import TELEMETRY_OFF
from tests.support.cli import Driftloop
from tests.support.host import VENV_BIN, free_port

pytestmark = pytest.mark.integration

CLIS = 3  # with the old code the pid file named the server only when the last writer happened to win the bind


def listening_pids(port: int) -> set[int]:
    """Every process with a listening TCP socket on ``port`` (from /proc/net/tcp* and /proc/*/fd)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):  # noqa: PTH115
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def cmdline(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def prefect_servers(port: int) -> list[int]:
    """Live `prefect server start ... --port <port>` processes (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        args = cmdline(int(proc.name))
        if "server" in args and "start" in args and str(port) in args and any(a.endswith("prefect") for a in args):
            found.append(int(proc.name))
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Driftloop]:
    """A fresh data directory with its own Prefect server port (nothing shared with the session's server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))}
    env.update(TELEMETRY_OFF)
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DRIFTLOOP_HOME": str(tmp_path / "home"),
            "DRIFTLOOP_PREFECT_PORT": str(free_port()),
            "DRIFTLOOP_START_MLFLOW_UI": "false",
            "COLUMNS": "200",
        }
    )
    dl = Driftloop(home=tmp_path / "home", env=env)
    yield dl
    dl.run("down", check=False, timeout=120)
    for pid in prefect_servers(int(env["DRIFTLOOP_PREFECT_PORT"])):  # only ever ours: the port is this test's
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, 9)


def test_clis_starting_at_once_share_one_prefect_server_that_down_stops(home: Driftloop) -> None:
    port = int(home.env["DRIFTLOOP_PREFECT_PORT"])
    health = f"http://127.0.0.1:{port}/api/health"

    # `drift-check` starts the services, then runs a real flow against the server (skipped: no champion yet).
    clis = [
        subprocess.Popen(
            [str(VENV_BIN / "driftloop"), "drift-check"],
            env=home.env,
            cwd=home.home.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(CLIS)
    ]
    outputs = []
    for cli in clis:
        try:
            outputs.append(cli.communicate(timeout=400)[0])
        except subprocess.TimeoutExpired:
            cli.kill()
            outputs.append(cli.communicate()[0])
    report = "\n".join(f"--- driftloop drift-check #{n} exited {c.returncode} ---\n{o[-3000:]}"
                       for n, (c, o) in enumerate(zip(clis, outputs, strict=True)))  # fmt: skip
    assert [cli.returncode for cli in clis] == [0] * CLIS, report
    assert all("model 'churn' has no champion yet: nothing to check" in output for output in outputs), report

    # One of them launched the server; the others waited for it and reused it.
    server_lines = [line for output in outputs for line in output.splitlines() if line.strip().startswith("prefect")]
    assert sum("started in" in line for line in server_lines) == 1, report
    assert sum("already running" in line for line in server_lines) == CLIS - 1, report
    log = (home.home / "run" / "prefect-server.log").read_text()
    assert log.count("Configure Prefect to communicate with the server") == 1, log[-3000:]
    assert "already in use" not in log, log[-3000:]

    # Exactly one `prefect server` serves the port, and the pid file names it.
    (server,) = prefect_servers(port)
    assert listening_pids(port) == {server}
    assert int((home.home / "run" / "prefect-server.pid").read_text()) == server
    assert str(port) in cmdline(server)
    assert httpx.get(health, timeout=10).status_code == 200

    # So `driftloop down` stops the live server.
    down = home.run("down", timeout=120)
    assert "prefect-server  stopped" in down.stdout, down.stdout
    deadline = time.monotonic() + 10
    while prefect_servers(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert prefect_servers(port) == []
    assert listening_pids(port) == set()
    with pytest.raises(httpx.TransportError):
        httpx.get(health, timeout=5)
    assert not (home.home / "run" / "prefect-server.pid").exists()
