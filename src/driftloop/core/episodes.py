"""Drift episodes: when a drift check raises the alarm, when a retrain may run, and what happened to it.

An episode starts when a check first finds drift on the champion version and ends when a check finds none. The
drift flow emits one event per retrain *attempt*, and each attempt runs at most once and never within the
cooldown after the previous retrain, so a check firing every minute cannot start a retrain every minute.

An attempt is not handled until the retrain says how it ended. If it failed, or its flow run died without
saying, the next drifting check (after the cooldown) emits again. If it was promoted and later rolled back (the
version is the champion again), no check of that episode emits again: the rollback stands. If it was refused, or
skipped because there were no new labels, the check emits again once enough new labels have arrived (and the
cooldown has passed). If no retrain ever claimed it (no retrain deployment for the model, no worker, the event
lost) within the retrain timeout, the next drifting check emits again rather than wait forever.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

DriftAction = Literal["emit", "re_emit", "already_open", "close", "none"]
RetrainState = Literal["pending", "running", "promoted", "refused", "failed", "deferred", "waiting_for_labels"]
RETRAIN_STATES: tuple[str, ...] = (
    "pending", "running", "promoted", "refused", "failed", "deferred", "waiting_for_labels",
)  # fmt: skip
MANUAL = "manual"  # the episode key of a retrain started by hand: no dedupe, no cooldown, no episode to update
# Prefect state types of a flow run that ended without the retrain recording an outcome.
ENDED_BADLY = frozenset({"FAILED", "CRASHED", "CANCELLED"})


@dataclass(frozen=True)
class Episode:
    """An open drift episode of one model version, with the state of its latest retrain attempt.

    Attributes:
        key: ``<model>-v<version>-<start time>``; events and retrains refer to it.
        started_at: When the first drifting check opened it.
        attempt: Events emitted so far; each event carries its attempt number.
        retrain: What became of the latest attempt (``pending``: emitted, no retrain has claimed it yet).
        claimed_attempt: The attempt number a retrain last claimed (0: none yet).
        attempt_at: When that retrain started (or, when deferred, the retrain it waits behind).
        flow_run_id: The Prefect flow run of that retrain.
        labels_seen: New labelled rows there were when the latest retrain decided.
        requested_at: When the latest event was emitted (None in episodes recorded before it was kept).
    """

    key: str
    started_at: datetime
    attempt: int = 1
    retrain: RetrainState = "pending"
    claimed_attempt: int = 0
    attempt_at: datetime | None = None
    flow_run_id: str | None = None
    labels_seen: int = 0
    requested_at: datetime | None = None

    @staticmethod
    def start(model_name: str, version: str, at: datetime) -> Episode:
        return Episode(key=f"{model_name}-v{version}-{at.strftime('%Y%m%dT%H%M%SZ')}", started_at=at, requested_at=at)

    def asked_again(self, at: datetime) -> Episode:
        """The next attempt, requested at ``at``."""
        return replace(self, attempt=self.attempt + 1, retrain="pending", requested_at=at)

    def requested(self) -> datetime | None:
        """When the pending attempt was requested: recorded, or (first attempt, older records) the episode's start."""
        return self.requested_at or (self.started_at if self.attempt == 1 else None)

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["attempt_at"] = self.attempt_at.isoformat() if self.attempt_at else None
        data["requested_at"] = self.requested_at.isoformat() if self.requested_at else None
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, legacy_retrained_episode: str | None = None) -> Episode:
        """Parse ``to_json``, or the ``key@started_at`` form older versions wrote.

        For the older form, ``legacy_retrained_episode`` (the old ``retrained_episode`` tag) tells whether its one
        retrain already ran.

        Raises:
            ValueError: ``text`` is neither.
        """
        if not text.startswith("{"):
            key, _, started = text.partition("@")
            ran = legacy_retrained_episode == key
            return cls(key=key, started_at=datetime.fromisoformat(started), claimed_attempt=1 if ran else 0,
                       retrain="refused" if ran else "pending")  # fmt: skip
        data = json.loads(text)
        if data.get("retrain") not in RETRAIN_STATES:
            raise ValueError(f"unknown retrain state {data.get('retrain')!r} in drift episode {text[:200]!r}")
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        data["attempt_at"] = datetime.fromisoformat(data["attempt_at"]) if data.get("attempt_at") else None
        data["requested_at"] = datetime.fromisoformat(data["requested_at"]) if data.get("requested_at") else None
        return cls(**data)

    def running_ended(self, run_state: str | None, now: datetime, timeout_seconds: float) -> Episode:
        """A ``running`` attempt whose flow run ended without an outcome (or outlived the timeout) has failed.

        ``run_state`` is the Prefect state type of ``flow_run_id`` (None: no such run).
        """
        if self.retrain != "running":
            return self
        overdue = self.attempt_at is not None and (now - self.attempt_at).total_seconds() > timeout_seconds
        if run_state is None or run_state in ENDED_BADLY or overdue:
            return replace(self, retrain="failed")
        return self


@dataclass(frozen=True)
class DriftDecision:
    action: DriftAction
    note: str


NO_RETRAIN = (
    "no retrain deployment on this Prefect server takes this model's events, so none will run: add the model to the "
    "project file (driftloop.yaml) and run driftloop up"
)


def drift_action(
    drifted: bool,
    insufficient: bool,
    episode: Episode | None,
    *,
    now: datetime,
    cooldown_seconds: float,
    new_labels: int,
    min_new_labels: int,
    claim_timeout_seconds: float = float("inf"),
    last_retrain_at: datetime | None = None,
    retrain_deployed: bool = True,
    retrain_deployed_at: datetime | None = None,
) -> DriftDecision:
    """What the drift flow does with a verdict, given the version's open episode (if any).

    Insufficient data never opens or closes an episode: it says nothing about the distribution.

    Args:
        drifted: The check found data or concept drift.
        insufficient: Too few rows to judge.
        episode: The version's open episode, with a dead ``running`` attempt already turned into ``failed``.
        now: The check's time.
        cooldown_seconds: No new attempt this soon after the previous one.
        new_labels: Labelled rows the champion has not been trained on.
        min_new_labels: New labels (since the last attempt) that justify another attempt after a refusal or a
            skip for lack of labels.
        claim_timeout_seconds: A requested attempt no retrain has claimed after this long is asked for again.
        last_retrain_at: When the model's last retrain started (any version's): an episode opened within the
            cooldown after it still emits its event (alerts take it), but says the retrain will wait.
        retrain_deployed: False when no retrain deployment takes the model's events: a requested retrain says
            none will run.
        retrain_deployed_at: When the first retrain deployment that takes the model's events was created (None:
            unknown). A retrain requested before it was heard by none (a trigger does not act on past events), so
            it is asked for again at once rather than after ``claim_timeout_seconds``.
    """
    if insufficient:
        return DriftDecision("none", "not judged: too few rows")
    if not drifted:
        if episode is None:
            return DriftDecision("none", "no episode open")
        return DriftDecision("close", f"no drift: episode {episode.key} closed")
    if episode is None:
        since_last = (now - last_retrain_at).total_seconds() if last_retrain_at else float("inf")
        if since_last < cooldown_seconds:
            # The retrain flow defers this attempt (decide_retrain); trial 12 read "event emitted" as a retrain.
            return DriftDecision(
                "emit",
                f"drift episode opened; event emitted, but the last retrain started {since_last:.0f}s ago, within "
                f"the cooldown: this retrain waits, and the first check after the cooldown "
                f"({cooldown_seconds - since_last:.0f}s left) asks again",
            )
        return DriftDecision("emit", "drift episode opened; event emitted")

    since = f"in episode {episode.key} (since {episode.started_at:%H:%M:%S})"
    waited = (now - episode.attempt_at).total_seconds() if episode.attempt_at else float("inf")
    cooled = waited >= cooldown_seconds
    wait_note = f"retry after the cooldown ({cooldown_seconds - waited:.0f}s left)"
    quiet = "no new event"
    if episode.retrain == "pending":
        requested = episode.requested()
        if requested is not None and (now - requested).total_seconds() > claim_timeout_seconds:
            return DriftDecision(
                "re_emit",
                f"drift persists {since}; the retrain requested at {requested:%Y-%m-%d %H:%M:%S} never started (is "
                "there a retrain deployment for this model, and a worker?): event emitted again",
            )
        if not retrain_deployed:  # "not started yet" read as if one were coming (trial 17)
            return DriftDecision(
                "already_open", f"drift persists {since}; a retrain was requested, but {NO_RETRAIN}; {quiet}"
            )
        if requested is not None and retrain_deployed_at is not None and requested < retrain_deployed_at:
            # Asked while nothing listened, then the model was deployed (`driftloop up`): waiting out the claim
            # timeout would leave the drift unanswered for hours.
            return DriftDecision(
                "re_emit",
                f"drift persists {since}; the retrain requested at {requested:%Y-%m-%d %H:%M:%S} came before any "
                f"retrain deployment took this model's events (the first was created at "
                f"{retrain_deployed_at:%Y-%m-%d %H:%M:%S}): event emitted again",
            )
        since_last = (now - last_retrain_at).total_seconds() if last_retrain_at else float("inf")
        if since_last < cooldown_seconds:  # the first check named the cooldown, the next ones did not (trial 18)
            return DriftDecision(
                "already_open",
                f"drift persists {since}; retrain requested, within the cooldown after the last retrain: it waits, "
                f"and the first check after the cooldown ({cooldown_seconds - since_last:.0f}s left) asks again; "
                f"{quiet}",
            )
        again = (
            f" (asked for again if none has started by {requested + timedelta(seconds=claim_timeout_seconds):%H:%M:%S})"
            if requested is not None and claim_timeout_seconds != float("inf")
            else ""
        )
        return DriftDecision(
            "already_open", f"drift persists {since}; retrain requested, not started yet{again}; {quiet}"
        )
    if episode.retrain == "running":
        return DriftDecision(
            "already_open", f"drift persists {since}; retrain running ({episode.flow_run_id}); {quiet}"
        )
    if episode.retrain == "promoted":
        # Checks run on the champion, so this version serves again: its retrain's version was rolled back (by a
        # person, or a failed rollout). Retraining the same recipe would undo that decision; it stands.
        return DriftDecision(
            "already_open",
            f"drift persists {since}; its retrain's version was promoted, then rolled back to this one: no "
            "automatic retrain in this episode, so as not to undo the rollback (a retrain run by hand from the "
            f"retrain-model deployment still can; pin to refuse every automatic promotion); {quiet}",
        )
    if episode.retrain in ("failed", "deferred"):
        if cooled:
            what = "failed" if episode.retrain == "failed" else "was deferred by the cooldown"
            return DriftDecision("re_emit", f"drift persists {since}; the last retrain {what}: event emitted again")
        return DriftDecision(
            "already_open", f"drift persists {since}; the last retrain {episode.retrain}: {wait_note}; {quiet}"
        )
    fresh = new_labels - episode.labels_seen
    outcome = "was refused" if episode.retrain == "refused" else "had no new labels"
    if fresh >= min_new_labels and cooled:
        return DriftDecision(
            "re_emit", f"drift persists {since}; {fresh} new labelled rows since the last retrain: event emitted again"
        )
    waiting = (
        f"waiting for labels ({max(fresh, 0)} new since the last retrain, need {min_new_labels})"
        if fresh < min_new_labels
        else wait_note
    )
    return DriftDecision("already_open", f"drift persists {since}; the last retrain {outcome}; {waiting}; {quiet}")


@dataclass(frozen=True)
class RetrainDecision:
    run: bool
    reason: str
    state: RetrainState | None = None  # what to record on the episode when the retrain does not run; None: nothing


def decide_retrain(
    episode_key: str,
    event_attempt: int,
    episode: Episode | None,
    last_retrain_at: datetime | None,
    now: datetime,
    cooldown_seconds: float,
) -> RetrainDecision:
    """May a retrain start for attempt ``event_attempt`` of ``episode_key``? Each attempt once; none in the cooldown."""
    if episode_key == MANUAL:
        return RetrainDecision(True, "retrain started by hand: no episode, no cooldown")
    if episode is None or episode.key != episode_key:
        return RetrainDecision(False, f"episode {episode_key} is over: the version has no such open episode")
    if episode.claimed_attempt >= event_attempt:
        return RetrainDecision(
            False, f"attempt {event_attempt} of episode {episode_key} was already taken ({episode.retrain})"
        )
    if episode.retrain == "running":
        return RetrainDecision(False, f"a retrain of episode {episode_key} is running ({episode.flow_run_id})")
    if last_retrain_at is not None:
        elapsed = (now - last_retrain_at).total_seconds()
        if elapsed < cooldown_seconds:
            return RetrainDecision(
                False,
                f"cooldown: the last retrain started {elapsed:.0f}s ago, less than {cooldown_seconds:.0f}s",
                state="deferred",
            )
    return RetrainDecision(True, f"drift episode {episode_key}, attempt {event_attempt}: retraining")
