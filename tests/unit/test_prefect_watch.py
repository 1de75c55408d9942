"""The watch on the Prefect API, against a real HTTP health endpoint that is stopped and started again."""

from __future__ import annotations

import time

from driftloop.io.prefect_watch import watch_prefect_api
from tests.support.health_server import HealthServer

PROBE_SECONDS = 0.2  # the watch's interval here (2 s in the CLI)


def test_a_server_gone_for_the_patience_is_given_up(health: HealthServer) -> None:
    lost: list[float] = []
    patience = 1.0
    with watch_prefect_api(health.url, patience, lost.append, PROBE_SECONDS):
        time.sleep(PROBE_SECONDS * 1.5)
        assert lost == []  # answering: nothing happens
        health.stop()
        deadline = time.monotonic() + patience + 30  # a loaded machine may run the watcher late; never this late
        while not lost and time.monotonic() < deadline:
            time.sleep(PROBE_SECONDS)
    assert len(lost) == 1
    assert lost[0] >= patience


def test_a_server_back_within_the_patience_costs_the_run_nothing(health: HealthServer) -> None:
    lost: list[float] = []
    patience = 20 * PROBE_SECONDS
    with watch_prefect_api(health.url, patience, lost.append, PROBE_SECONDS):
        for _ in range(2):  # twice gone for less than the patience, answering in between
            health.stop()
            time.sleep(6 * PROBE_SECONDS)
            health.start()
            time.sleep(2 * PROBE_SECONDS)
    assert lost == []


def test_a_watch_that_ended_never_calls_back(health: HealthServer) -> None:
    lost: list[float] = []
    with watch_prefect_api(health.url, 1.0, lost.append, PROBE_SECONDS):
        pass
    health.stop()
    time.sleep(1.0 + 4 * PROBE_SECONDS)
    assert lost == []
