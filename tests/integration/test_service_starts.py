"""Starting local services when processes race: two starters at once, a start left booting, a port another process
holds (answering later, or never). Real processes and real waits (seconds each), so integration tests; the lock and
the quick cases are unit tests (tests/unit/test_services.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.errors import ServiceError
from driftloop.io import services
from tests.support.host import free_port
from tests.support.toy_service import START, Foreign, gone, launches, make_spec, stop_launched

pytestmark = pytest.mark.integration


@pytest.fixture
def cleanup() -> Iterator[list[services.ServiceSpec]]:
    """Specs to stop (by their pid files) after the test, and any process launched for them."""
    specs: list[services.ServiceSpec] = []
    yield specs
    stop_launched(specs)


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
