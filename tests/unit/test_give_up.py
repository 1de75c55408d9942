"""The CLI giving up on a flow when the Prefect API is gone: a rollout under way rolls back first; nothing else waits.

Each case runs in a process of its own (the give-up ends it with os._exit), watching a real HTTP health endpoint
that the test stops. The "rollout" is the real ``deploy.rollout.UNDERWAY`` marker around a stand-in for the rollout's
own ``except BaseException`` path: the part under test is that the give-up interrupts it and waits for it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.health_server import HealthServer
from tests.support.host import VENV_BIN

WORK = """
import sys, time
from driftloop.cli import _give_up, _hold_while_giving_up
from driftloop.deploy.rollout import UNDERWAY
from driftloop.io.prefect_watch import watch_prefect_api
from driftloop.settings import Settings

health, mode, home = sys.argv[1], sys.argv[2], sys.argv[3]
settings = Settings(home=home, prefect_api_url="http://127.0.0.1:9/api")
try:
    with watch_prefect_api(health, 1.0, _give_up(settings), interval=0.2):
        print("working", flush=True)
        if mode == "rollout":
            with UNDERWAY.running():
                try:
                    time.sleep(600)  # a canary step waiting: the interrupt must end the sleep
                except BaseException as interrupted:
                    print(f"rolling back after {type(interrupted).__name__}", flush=True)
                    time.sleep(1.0)
                    print("rolled back", flush=True)
                    raise
        else:
            try:
                time.sleep(600)  # a fit: nothing to undo, so nothing waits for it
            except BaseException:
                print("interrupted", flush=True)
                raise
finally:
    _hold_while_giving_up()  # as driftloop.cli.main does
"""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_until_given_up(health: HealthServer, mode: str, home: Path) -> tuple[int, list[str]]:
    """Run ``WORK``; as under nohup, cron or a shell's ``&``, the process starts with SIGINT ignored."""
    process = subprocess.Popen(
        [str(VENV_BIN / "python"), "-c", WORK, health.url, mode, str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,  # noqa: PLW1509 (no threads run between fork and exec here)
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "working"
    health.stop()
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the process did not give up within 120 s")
    return process.returncode, [line for line in output.splitlines() if line.strip()]


def test_a_rollout_under_way_is_interrupted_and_rolls_back_before_the_command_ends(
    health: HealthServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    code, lines = _run_until_given_up(health, "rollout", tmp_path)
    assert code == 1, lines
    assert "rolling back after KeyboardInterrupt" in lines
    error = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert lines.index("rolled back") < error
    assert "The rollout under way was rolled back." in lines[error]
    assert lines[-1] == lines[error]
    assert time.monotonic() - started < 100  # a hang guard: 600 s of sleep was cut short


def test_without_a_rollout_nothing_is_interrupted_or_waited_for(health: HealthServer, tmp_path: Path) -> None:
    code, lines = _run_until_given_up(health, "fit", tmp_path)
    assert code == 1, lines
    assert "interrupted" not in lines
    assert lines[-1].startswith("error: the Prefect server at http://127.0.0.1:9/api stopped answering for ")
    assert "rollout" not in lines[-1]
    assert "MLflow run" not in lines[-1]  # it opened none
