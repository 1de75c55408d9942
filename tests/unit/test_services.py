"""Starting local services: the start lock, and a pid file that names the process that serves.

Real processes throughout: a tiny HTTP service (``SERVICE`` below) that can wait before it binds, started through
``services.start_all`` by this process and by child interpreters at the same moment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.errors import ServiceError
from driftloop.io import services

# argv: port, seconds to wait before binding. Prints its pid first, so the log counts launches.
SERVICE = """
import http.server, os, sys, time

print(f"launched {os.getpid()}", flush=True)
time.sleep(float(sys.argv[2]))

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""

# argv: run dir, spec as JSON. Starts the service like the CLI does and prints the status as JSON.
START = """
import dataclasses, json, sys
from pathlib import Path
from driftloop.io import services

fields = json.loads(sys.argv[2])
spec = services.ServiceSpec(**{**fields, "argv": tuple(fields["argv"]), "run_dir": Path(sys.argv[1])})
(status,) = services.start_all([spec], timeout=20)
print(json.dumps(dataclasses.asdict(status)), flush=True)
"""

# argv: run dir. Takes the start lock, says so, and keeps it until killed.
HOLD = """
import sys, time
from pathlib import Path
from driftloop.io import services

with services.start_lock(Path(sys.argv[1]), timeout=5):
    print("held", flush=True)
    time.sleep(120)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_spec(tmp_path: Path, port: int, boot_seconds: float) -> services.ServiceSpec:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    return services.ServiceSpec(
        name="toy",
        argv=(sys.executable, str(script), str(port), str(boot_seconds)),
        health_url=f"http://127.0.0.1:{port}/health",
        listen_url=f"http://127.0.0.1:{port}",
        env={},
        run_dir=tmp_path / "run",
    )


def launches(spec: services.ServiceSpec) -> list[int]:
    """The pid of every process launched for ``spec`` (each logs one line as it starts)."""
    if not spec.log_path.exists():
        return []
    return [int(line.split()[1]) for line in spec.log_path.read_text().splitlines() if line.startswith("launched ")]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"  # an orphan nobody reaped yet


@pytest.fixture
def cleanup() -> Iterator[list[services.ServiceSpec]]:
    """Specs to stop (by their pid files) after the test, and any process launched for them."""
    specs: list[services.ServiceSpec] = []
    yield specs
    for spec in specs:
        services.stop(spec, grace=2.0)
        for pid in launches(spec):
            if not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, 9)


class Foreign:
    """An HTTP server in this process (so not one the spec launches) whose /health fails until ``ready_after``."""

    def __init__(self, port: int, ready_after: float) -> None:
        ready_at = time.monotonic() + ready_after

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if time.monotonic() >= ready_at else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
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
        holder.wait(timeout=10)


def test_two_processes_starting_at_once_launch_one_service_and_the_pid_file_names_it(
    tmp_path: Path, cleanup: list[services.ServiceSpec]
) -> None:
    port = free_port()
    spec = make_spec(tmp_path, port, boot_seconds=1.5)  # both would see "not answering" without the lock
    cleanup.append(spec)
    fields = json.dumps({"name": spec.name, "argv": spec.argv, "health_url": spec.health_url,
                         "listen_url": spec.listen_url, "env": {}})  # fmt: skip
    starters = [
        subprocess.Popen([sys.executable, "-c", START, str(spec.run_dir), fields], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [starter.communicate(timeout=60)[0] for starter in starters]
    assert [starter.returncode for starter in starters] == [0, 0], outputs
    statuses = [json.loads(output) for output in outputs]

    (launched,) = launches(spec)
    assert sorted(status["started_now"] for status in statuses) == [False, True]
    assert {status["pid"] for status in statuses} == {launched}
    assert int(spec.pid_path.read_text()) == launched
    assert not gone(launched)
    assert services.status(spec).healthy

    assert services.stop(spec)
    assert gone(launched)
    assert not services.is_healthy(spec.health_url)
    assert not spec.pid_path.exists()


def test_a_start_left_booting_is_waited_for_not_launched_again(
    tmp_path: Path, cleanup: list[services.ServiceSpec]
) -> None:
    spec = make_spec(tmp_path, free_port(), boot_seconds=1.5)
    cleanup.append(spec)
    earlier = services.launch(spec)  # as a CLI interrupted while the service booted leaves it
    assert earlier is not None

    (status,) = services.start_all([spec], timeout=20)

    assert launches(spec) == [earlier]
    assert (status.healthy, status.pid, status.started_now) == (True, earlier, False)
    assert int(spec.pid_path.read_text()) == earlier


@pytest.mark.parametrize("boot_seconds", [0.0, 3.0], ids=["ours-exits-first", "other-answers-first"])
def test_a_port_served_by_another_process_is_reused_and_ours_keeps_no_pid_file(
    tmp_path: Path, cleanup: list[services.ServiceSpec], boot_seconds: float
) -> None:
    port = free_port()
    spec = make_spec(tmp_path, port, boot_seconds)
    cleanup.append(spec)
    other = Foreign(port, ready_after=1.0)  # holds the port; answers /health a second later
    try:
        (status,) = services.start_all([spec], timeout=20)
    finally:
        other.close()

    (launched,) = launches(spec)
    assert (status.healthy, status.pid, status.started_now) == (True, None, False)
    assert f"port {port} is served by another process" in status.note
    assert not spec.pid_path.exists()
    assert gone(launched)  # never serves: it exited, or was stopped once the other answered


def test_a_port_held_by_a_process_that_never_answers_is_an_error_naming_port_and_log(
    tmp_path: Path, cleanup: list[services.ServiceSpec]
) -> None:
    port = free_port()
    spec = make_spec(tmp_path, port, boot_seconds=0.0)
    cleanup.append(spec)
    other = Foreign(port, ready_after=3600)
    try:
        with pytest.raises(ServiceError) as failed:
            services.start_all([spec], timeout=3)
    finally:
        other.close()

    assert f"port {port} is served by another process" in str(failed.value)
    assert str(spec.log_path) in str(failed.value)
    assert not spec.pid_path.exists()
    assert gone(launches(spec)[0])


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
