"""Drift episodes: when a drift check raises the alarm, and when a retrain may run.

An episode starts when a check first finds drift on the champion version and ends when a check finds none. The
drift flow emits one event per episode, and the retrain flow runs at most once per episode and never within the
cooldown after the previous retrain, so a check firing every minute cannot start a retrain every minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

DriftAction = Literal["emit", "already_open", "close", "none"]


@dataclass(frozen=True)
class Episode:
    """An open drift episode of one model version."""

    key: str
    started_at: datetime

    @staticmethod
    def start(model_name: str, version: str, at: datetime) -> Episode:
        return Episode(key=f"{model_name}-v{version}-{at.strftime('%Y%m%dT%H%M%SZ')}", started_at=at)


def drift_action(drifted: bool, insufficient: bool, open_episode: Episode | None) -> DriftAction:
    """What the drift flow does with a verdict, given the version's open episode (if any).

    Insufficient data never opens or closes an episode: it says nothing about the distribution.
    """
    if insufficient:
        return "none"
    if drifted:
        return "already_open" if open_episode is not None else "emit"
    return "close" if open_episode is not None else "none"


@dataclass(frozen=True)
class RetrainDecision:
    run: bool
    reason: str


def decide_retrain(
    episode_key: str,
    retrained_episode: str | None,
    last_retrain_at: datetime | None,
    now: datetime,
    cooldown_seconds: float,
) -> RetrainDecision:
    """May a retrain start for ``episode_key``? One per episode, and none within the cooldown."""
    if retrained_episode == episode_key:
        return RetrainDecision(False, f"episode {episode_key} was already retrained for: one retrain per episode")
    if last_retrain_at is not None:
        elapsed = (now - last_retrain_at).total_seconds()
        if elapsed < cooldown_seconds:
            return RetrainDecision(
                False,
                f"cooldown: the last retrain started {elapsed:.0f}s ago, less than {cooldown_seconds:.0f}s",
            )
    return RetrainDecision(True, f"drift episode {episode_key}: retraining")
