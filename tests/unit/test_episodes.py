from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftloop.core.episodes import Episode, decide_retrain, drift_action

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
OPEN = Episode.start("churn", "3", NOW - timedelta(minutes=5))


@pytest.mark.parametrize(
    ("drifted", "insufficient", "episode", "action"),
    [
        (True, False, None, "emit"),
        (True, False, OPEN, "already_open"),
        (False, False, OPEN, "close"),
        (False, False, None, "none"),
        (True, True, None, "none"),
        (False, True, OPEN, "none"),
    ],
)
def test_drift_action(drifted: bool, insufficient: bool, episode: Episode | None, action: str) -> None:
    assert drift_action(drifted, insufficient, episode) == action


def test_episode_key_names_model_version_and_start() -> None:
    assert OPEN.key == "churn-v3-20261125T025500Z"


def test_one_retrain_per_episode() -> None:
    decision = decide_retrain(OPEN.key, OPEN.key, None, NOW, cooldown_seconds=0)
    assert not decision.run
    assert "already retrained" in decision.reason


def test_cooldown_blocks_a_new_episode_too_soon() -> None:
    decision = decide_retrain(OPEN.key, "older", NOW - timedelta(seconds=30), NOW, cooldown_seconds=120)
    assert not decision.run
    assert "30s ago" in decision.reason


def test_retrain_runs_after_cooldown_for_a_new_episode() -> None:
    assert decide_retrain(OPEN.key, "older", NOW - timedelta(seconds=121), NOW, cooldown_seconds=120).run
    assert decide_retrain(OPEN.key, None, None, NOW, cooldown_seconds=120).run
