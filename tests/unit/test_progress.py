"""The training steps' progress lines: a long step's heartbeat, and how long it took."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tasks.progress import elapsed, timed_step


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "driftloop.training"]


def _heartbeats_alive() -> bool:
    return any(t.name == "driftloop-heartbeat" for t in threading.enumerate())


def test_a_step_longer_than_the_interval_says_it_is_still_running_then_how_long_it_took(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="driftloop.training")
    with timed_step("fitting %s on %s rows", "forest", "1,000", every=0.02):
        time.sleep(0.3)
    lines = _lines(caplog)
    assert lines[0] == "fitting forest on 1,000 rows"
    beats = [line for line in lines if line.startswith("fitting forest on 1,000 rows: still running, ")]
    assert beats, lines
    assert lines[-1].startswith("fitting forest on 1,000 rows: done in ")
    assert lines[-1].endswith(" s")
    assert not _heartbeats_alive()


def test_a_step_that_can_say_how_far_along_it_is_says_it_in_each_heartbeat_and_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="driftloop.training")
    rounds: list[int] = []

    def so_far() -> str | None:
        return f"{len(rounds)} of 100 stages" if rounds else None  # None: nothing to say yet

    with timed_step("fitting boosting", every=0.02, done_so_far=so_far):
        time.sleep(0.1)
        rounds.extend(range(37))
        time.sleep(0.1)
    beats = [line for line in _lines(caplog) if "still running" in line]
    assert any(line.endswith(" s") for line in beats), beats  # before the first round: the time alone
    assert any(line.endswith(" s: 37 of 100 stages") for line in beats), beats
    assert _lines(caplog)[-1].startswith("fitting boosting: done in ")
    assert _lines(caplog)[-1].endswith(" s: 37 of 100 stages")


def test_a_step_shorter_than_the_interval_logs_no_heartbeat(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="driftloop.training")
    with timed_step("fitting quick", every=60):
        pass
    lines = _lines(caplog)
    assert lines[0] == "fitting quick"
    assert len(lines) == 2, lines
    assert lines[1].startswith("fitting quick: done in ")


def test_a_failing_step_stops_its_heartbeat_and_claims_no_completion(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="driftloop.training")

    def fit() -> None:
        with timed_step("fitting broken", every=0.01):
            time.sleep(0.05)
            raise ValueError("no samples")

    with pytest.raises(ValueError, match="no samples"):
        fit()
    assert not _heartbeats_alive()
    count = len(_lines(caplog))
    time.sleep(0.05)
    assert len(_lines(caplog)) == count, "the heartbeat went on after the step failed"
    assert not any("done in" in line for line in _lines(caplog))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (42.25, "42.2 s"),
        (59.9, "59.9 s"),
        (60, "1 min 00 s"),
        (185, "3 min 05 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 00 min"),
        (3725, "1 h 02 min"),
    ],  # fmt: skip
)
def test_elapsed_reads_as_seconds_minutes_or_hours(seconds: float, text: str) -> None:
    assert elapsed(seconds) == text
