"""Starting local services: the start lock, and a pid file that names the process that serves.

Real processes: a tiny HTTP service (tests/support/toy_service.py) started through ``services.start_all``, and a
child interpreter holding the lock. Races between processes starting at once, a slow boot and a port another
process holds take seconds of real waiting each: they are integration tests (tests/integration/test_service_starts.py).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.errors import ServiceError
from driftloop.io import services
from tests.support.host import free_port
from tests.support.toy_service import make_spec, stop_launched

# argv: run dir. Takes the start lock, says so, and keeps it until killed.
HOLD = """
import sys, time
from pathlib import Path
from driftloop.io import services

with services.start_lock(Path(sys.argv[1]), timeout=5):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def cleanup() -> Iterator[list[services.ServiceSpec]]:
    """Specs to stop (by their pid files) after the test, and any process launched for them."""
    specs: list[services.ServiceSpec] = []
    yield specs
    stop_launched(specs)


def test_lock_makes_the_second_thread_wait_then_see_the_first_ones_result(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = tmp_path / "result"
    first_holds = threading.Event()
    seen: dict[str, object] = {}

    def first() -> None:
        with services.start_lock(run_dir, timeout=5):
            first_holds.set()
            time.sleep(0.5)
            result.write_text("started by the first")

    def second() -> None:
        first_holds.wait()
        began = time.monotonic()
        with services.start_lock(run_dir, timeout=5) as path:
            seen["waited"] = time.monotonic() - began
            seen["result"] = result.read_text() if result.exists() else None
            seen["path"] = path

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen["result"] == "started by the first"
    assert seen["waited"] >= 0.4  # type: ignore[operator]
    assert seen["path"] == run_dir / "services.lock"


def test_lock_wait_is_bounded_names_the_file_and_ends_when_the_holder_dies(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # As a context manager, so its stdout pipe is closed (and it is waited for) whatever happens.
    with subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            began = time.monotonic()
            with pytest.raises(ServiceError) as refused, services.start_lock(run_dir, timeout=0.5):
                pass
            assert 0.5 <= time.monotonic() - began < 3
            assert str(run_dir / "services.lock") in str(refused.value)
            assert f"pid {holder.pid}" in str(refused.value)
            holder.kill()  # SIGKILL: no clean-up runs; the kernel lets go of the flock
            holder.wait(timeout=10)
            began = time.monotonic()
            with services.start_lock(run_dir, timeout=5):
                assert time.monotonic() - began < 1
        finally:
            holder.kill()


def test_a_service_that_crashes_with_the_port_free_says_so_and_keeps_no_pid_file(
    tmp_path: Path, cleanup: list[services.ServiceSpec]
) -> None:
    spec = make_spec(tmp_path, port=70000, boot_seconds=0.0)  # not a port: the service dies at once
    cleanup.append(spec)
    spec = dataclasses.replace(spec, health_url=f"http://127.0.0.1:{free_port()}/health")

    with pytest.raises(ServiceError, match="toy exited while starting") as failed:
        services.start_all([spec], timeout=20)

    assert str(spec.log_path) in str(failed.value)
    assert "OverflowError" in str(failed.value)  # the log's tail
    assert not spec.pid_path.exists()


def test_the_lock_is_not_held_by_the_service_it_started(tmp_path: Path, cleanup: list[services.ServiceSpec]) -> None:
    spec = make_spec(tmp_path, free_port(), boot_seconds=0.0)
    cleanup.append(spec)
    services.start_all([spec], timeout=20)

    with services.start_lock(spec.run_dir, timeout=0.5):  # the service lives on; the lock is free
        assert services.status(spec).healthy


def test_the_local_mlflow_server_starts_without_its_job_runner(tmp_path: Path) -> None:
    from driftloop.settings import Settings

    spec = services.mlflow_ui_spec(Settings(home=tmp_path))
    assert spec.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert spec.env["MLFLOW_TRACKING_URI"].startswith("sqlite:")


def test_a_service_just_launched_is_known_as_ours_while_its_exec_completes(
    tmp_path: Path, cleanup: list[services.ServiceSpec]
) -> None:
    """Right after Popen returns, /proc/PID/cmdline is often still empty (the exec has not set it up yet).

    A start that read it then took the earlier launch for a stranger's process and launched a second copy (CI 59).
    Each launch here is checked at once, as the next CLI's start does; it was empty for a quarter of reads on an
    idle machine and nearly all under load.
    """
    spec = make_spec(tmp_path, free_port(), boot_seconds=30)
    cleanup.append(spec)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for _ in range(20):
            pid = services.launch(spec)
            assert pid is not None
            assert services._runs(spec, pid)
            services.stop(spec, grace=1.0)
        assert not services._runs(dataclasses.replace(spec, argv=("not-python", *spec.argv[1:])), stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()
