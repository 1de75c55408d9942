from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from driftloop.core.episodes import MANUAL, NO_RETRAIN, Episode, decide_retrain, drift_action

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OPEN = Episode(key="churn-v1-20261125T120000Z", started_at=T0)


def _act(
    drifted: bool, episode: Episode | None, *, now: datetime = T0, new_labels: int = 0, insufficient: bool = False
):  # type: ignore[no-untyped-def]
    return drift_action(
        drifted, insufficient, episode, now=now, cooldown_seconds=600, new_labels=new_labels, min_new_labels=100
    )


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
    assert _act(drifted, episode, insufficient=insufficient).action == action


def test_a_running_retrain_silences_the_check() -> None:
    running = replace(OPEN, retrain="running", claimed_attempt=1, attempt_at=T0, flow_run_id="abc")
    decision = _act(True, running, now=T0 + timedelta(hours=1), new_labels=10_000)
    assert decision.action == "already_open"
    assert "retrain running (abc)" in decision.note


def test_a_failed_retrain_is_asked_for_again_after_the_cooldown() -> None:
    failed = replace(OPEN, retrain="failed", claimed_attempt=1, attempt_at=T0)
    soon = _act(True, failed, now=T0 + timedelta(seconds=60))
    assert soon.action == "already_open"
    assert "retry after the cooldown (540s left)" in soon.note
    later = _act(True, failed, now=T0 + timedelta(seconds=601))
    assert later.action == "re_emit"
    assert "the last retrain failed" in later.note


def _waiting(episode: Episode, hours: float) -> object:
    return drift_action(
        True, False, episode, now=T0 + timedelta(hours=hours), cooldown_seconds=600, new_labels=0, min_new_labels=100,
        claim_timeout_seconds=7200,
    )  # fmt: skip


def test_a_requested_retrain_nobody_started_is_asked_for_again_after_the_retrain_timeout() -> None:
    """No retrain deployment for the model, or no worker: the event went nowhere; the episode must not wait forever."""
    requested = Episode.start("wine", "1", T0)
    assert requested.requested_at == T0
    waiting = _waiting(requested, 1.9)
    assert waiting.action == "already_open"  # a worker busy with another run may take a while
    assert "retrain requested, not started yet" in waiting.note
    lost = _waiting(requested, 2.1)
    assert lost.action == "re_emit"
    assert "the retrain requested at 2026-11-25 12:00:00 never started" in lost.note
    # The second request is timed from when it was made, not from the episode's start.
    again = requested.asked_again(T0 + timedelta(hours=2.1))
    assert (again.attempt, again.retrain, again.requested_at) == (2, "pending", T0 + timedelta(hours=2.1))
    assert _waiting(again, 3).action == "already_open"
    assert _waiting(again, 4.2).action == "re_emit"
    # An older record without requested_at: the first attempt counts from the start; a later one cannot be timed.
    assert _waiting(OPEN, 2.1).action == "re_emit"
    assert _waiting(replace(OPEN, attempt=2), 50).action == "already_open"


def test_a_claimed_retrain_is_never_asked_for_again_by_the_claim_timeout() -> None:
    claimed = replace(Episode.start("wine", "1", T0), retrain="running", claimed_attempt=1, attempt_at=T0)
    assert _waiting(claimed, 100).action == "already_open"


def test_a_failed_retrain_is_not_asked_for_when_the_drift_is_gone() -> None:
    failed = replace(OPEN, retrain="failed", claimed_attempt=1, attempt_at=T0)
    assert _act(False, failed, now=T0 + timedelta(hours=2)).action == "close"


@pytest.mark.parametrize("state", ["refused", "waiting_for_labels"])
def test_a_refused_or_label_starved_retrain_waits_for_enough_new_labels(state: str) -> None:
    waited = replace(OPEN, retrain=state, claimed_attempt=1, attempt_at=T0, labels_seen=40)  # type: ignore[arg-type]
    later = T0 + timedelta(hours=1)
    few = _act(True, waited, now=later, new_labels=139)
    assert few.action == "already_open"
    assert "waiting for labels (99 new since the last retrain, need 100)" in few.note
    assert _act(True, waited, now=later, new_labels=140).action == "re_emit"
    # Enough labels, but still within the cooldown.
    assert _act(True, waited, now=T0 + timedelta(seconds=30), new_labels=5_000).action == "already_open"


def test_a_promoted_retrain_that_was_rolled_back_is_not_retrained_again_in_its_episode() -> None:
    """Checks run on the champion: a drifting check on a version whose retrain was promoted means it serves again.

    Its retrain's version was rolled back (a person, a failed rollout); retraining the same recipe would undo that,
    so the episode stays quiet however long it lasts and however many labels arrive, and says why. A clean check
    still closes it, so the next drift opens a new episode that retrains as usual.
    """
    promoted = replace(OPEN, retrain="promoted", claimed_attempt=1, attempt_at=T0)
    for later in (timedelta(seconds=30), timedelta(days=1)):
        held = _act(True, promoted, now=T0 + later, new_labels=10_000)
        assert held.action == "already_open"
        assert "promoted, then rolled back to this one: no automatic retrain in this episode" in held.note
    assert _act(False, promoted, now=T0 + timedelta(hours=1)).action == "close"
    assert _act(True, None, now=T0 + timedelta(hours=2)).action == "emit"
    failed = replace(promoted, retrain="failed")  # the other direction: an attempt that did not land is retried
    assert _act(True, failed, now=T0 + timedelta(hours=1)).action == "re_emit"


@pytest.mark.parametrize(
    ("run_state", "elapsed", "expected"),
    [
        ("RUNNING", 60, "running"),
        ("COMPLETED", 60, "running"),  # the flow settles the episode itself; a completed run already did
        ("FAILED", 60, "failed"),
        ("CRASHED", 60, "failed"),
        ("CANCELLED", 60, "failed"),
        (None, 60, "failed"),  # the flow run does not exist (deleted, another server)
        ("RUNNING", 7201, "failed"),  # running longer than the timeout
    ],
)
def test_a_retrain_whose_run_died_is_taken_as_failed(run_state: str | None, elapsed: int, expected: str) -> None:
    running = replace(OPEN, retrain="running", claimed_attempt=1, attempt_at=T0, flow_run_id="abc")
    assert running.running_ended(run_state, T0 + timedelta(seconds=elapsed), 7200).retrain == expected


def test_episode_json_round_trip_and_the_older_form() -> None:
    episode = replace(
        OPEN, attempt=3, retrain="refused", claimed_attempt=2, attempt_at=T0, flow_run_id="x", labels_seen=7,
        requested_at=T0 + timedelta(minutes=5),
    )  # fmt: skip
    assert Episode.from_json(episode.to_json()) == episode
    without = episode.to_json().replace(f',"requested_at":"{(T0 + timedelta(minutes=5)).isoformat()}"', "")
    assert "requested_at" not in without
    assert Episode.from_json(without) == replace(episode, requested_at=None)  # recorded before it was kept
    legacy = Episode.from_json(f"{OPEN.key}@{T0.isoformat()}")
    assert (legacy.key, legacy.started_at, legacy.retrain, legacy.claimed_attempt) == (OPEN.key, T0, "pending", 0)
    handled = Episode.from_json(f"{OPEN.key}@{T0.isoformat()}", legacy_retrained_episode=OPEN.key)
    assert (handled.retrain, handled.claimed_attempt) == ("refused", 1)
    with pytest.raises(ValueError, match="unknown retrain state 'bogus'"):
        Episode.from_json(episode.to_json().replace('"refused"', '"bogus"'))


def test_episode_key_names_model_version_and_start() -> None:
    assert Episode.start("churn", "3", T0).key == "churn-v3-20261125T120000Z"


def test_retrain_runs_once_per_attempt() -> None:
    first = decide_retrain(OPEN.key, 1, OPEN, None, T0, 600)
    assert first.run
    claimed = replace(OPEN, retrain="refused", claimed_attempt=1, attempt_at=T0)
    duplicate = decide_retrain(OPEN.key, 1, claimed, T0, T0 + timedelta(hours=1), 600)
    assert not duplicate.run
    assert "attempt 1 of episode" in duplicate.reason
    assert "already taken" in duplicate.reason
    second = decide_retrain(OPEN.key, 2, replace(claimed, attempt=2), T0, T0 + timedelta(hours=1), 600)
    assert second.run


def test_retrain_waits_for_a_running_one_and_skips_a_closed_episode() -> None:
    running = replace(OPEN, attempt=2, retrain="running", claimed_attempt=1, attempt_at=T0, flow_run_id="abc")
    assert not decide_retrain(OPEN.key, 2, running, T0, T0 + timedelta(hours=1), 600).run
    closed = decide_retrain(OPEN.key, 1, None, None, T0, 600)
    assert not closed.run
    assert "is over" in closed.reason
    other = decide_retrain("churn-v1-20200101T000000Z", 1, OPEN, None, T0, 600)
    assert not other.run


def test_retrain_cooldown_defers() -> None:
    decision = decide_retrain(OPEN.key, 1, OPEN, T0, T0 + timedelta(seconds=300), 600)
    assert not decision.run
    assert decision.state == "deferred"
    assert "cooldown: the last retrain started 300s ago" in decision.reason
    assert decide_retrain(OPEN.key, 1, OPEN, T0, T0 + timedelta(seconds=600), 600).run


def test_a_deferred_attempt_is_asked_for_again_after_the_cooldown() -> None:
    deferred = replace(OPEN, retrain="deferred", claimed_attempt=1, attempt_at=T0)
    assert _act(True, deferred, now=T0 + timedelta(seconds=100)).action == "already_open"
    assert _act(True, deferred, now=T0 + timedelta(seconds=600)).action == "re_emit"


def test_a_manual_retrain_always_runs() -> None:
    assert decide_retrain(MANUAL, 1, None, T0, T0, 600).run


def test_an_episode_opened_within_the_cooldown_says_its_retrain_will_wait() -> None:
    """Trial 12: "drift episode opened; event emitted", and the retrain it asked for was deferred, said nowhere."""

    def opened(last_retrain_seconds_ago: float | None) -> str:
        last = None if last_retrain_seconds_ago is None else T0 - timedelta(seconds=last_retrain_seconds_ago)
        decision = drift_action(True, False, None, now=T0, cooldown_seconds=600, new_labels=0, min_new_labels=100,
                                last_retrain_at=last)  # fmt: skip
        assert decision.action == "emit"  # the event still goes out: alerts take it, and the retrain records why
        return decision.note

    waits = opened(93)
    assert waits.startswith("drift episode opened; event emitted, but the last retrain started 93s ago")
    assert "the first check after the cooldown (507s left) asks again" in waits
    assert opened(600) == opened(None) == "drift episode opened; event emitted"
    # And the retrain it asked for is deferred, then asked for again once the cooldown has passed.
    deferral = decide_retrain(OPEN.key, 1, OPEN, T0 - timedelta(seconds=93), T0, 600)
    assert deferral.state == "deferred"
    deferred = replace(OPEN, retrain="deferred", claimed_attempt=1, attempt_at=T0 - timedelta(seconds=93))
    assert _act(True, deferred, now=T0 + timedelta(seconds=506)).action == "already_open"
    assert _act(True, deferred, now=T0 + timedelta(seconds=508)).action == "re_emit"


def test_a_requested_retrain_that_no_deployment_takes_says_none_will_run() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    pending = Episode.start("m", "1", now - timedelta(minutes=5))
    args = {"now": now, "cooldown_seconds": 60.0, "new_labels": 0, "min_new_labels": 100}
    unclaimed = drift_action(True, False, pending, retrain_deployed=False, **args)
    assert unclaimed.action == "already_open"
    assert f"a retrain was requested, but {NO_RETRAIN}" in unclaimed.note
    assert "not started yet" not in unclaimed.note
    deployed = drift_action(True, False, pending, **args)
    assert "retrain requested, not started yet" in deployed.note
    # Asked for within the cooldown after the last retrain: later checks say it waits, as the first did (trial 18).
    cooling = drift_action(True, False, pending, last_retrain_at=now - timedelta(seconds=20), **args)
    assert cooling.action == "already_open"
    assert "retrain requested, within the cooldown after the last retrain: it waits" in cooling.note
    assert "the first check after the cooldown (40s left) asks again; no new event" in cooling.note
    cooled = drift_action(True, False, pending, last_retrain_at=now - timedelta(seconds=61), **args)
    assert "retrain requested, not started yet" in cooled.note
    assert NO_RETRAIN not in deployed.note


def test_a_retrain_requested_before_any_deployment_listened_is_asked_for_again_once_one_does() -> None:
    """Trial 52: a check asked for a retrain, said none would run, the user ran `driftloop up`: the next check said
    "not started yet" and would have waited out the claim timeout (2 h), as the first event had no listener."""
    now = datetime(2026, 12, 7, 16, 40, tzinfo=UTC)
    requested_at = now - timedelta(minutes=2)
    pending = Episode.start("m", "1", requested_at)
    args = {"now": now, "cooldown_seconds": 60.0, "new_labels": 0, "min_new_labels": 100}
    args["claim_timeout_seconds"] = 7200.0
    deployed_after = drift_action(True, False, pending, retrain_deployed_at=now - timedelta(minutes=1), **args)
    assert deployed_after.action == "re_emit"
    assert "the retrain requested at 2026-12-07 16:38:00 came before any retrain deployment" in deployed_after.note
    assert "(the first was created at 2026-12-07 16:39:00): event emitted again" in deployed_after.note
    # Deployed before the request (heard), or when it was deployed is unknown: the request stands, and the check
    # says when it will be asked for again.
    for deployed_at in (requested_at - timedelta(seconds=1), None):
        waiting = drift_action(True, False, pending, retrain_deployed_at=deployed_at, **args)
        assert waiting.action == "already_open"
        assert "retrain requested, not started yet (asked for again if none has started by 18:38:00)" in waiting.note
    # Once the claim timeout has passed, it is asked for again whenever it was deployed.
    late = {**args, "now": requested_at + timedelta(seconds=7201)}
    assert drift_action(True, False, pending, retrain_deployed_at=requested_at - timedelta(hours=1), **late).action == (
        "re_emit"
    )
    # Nothing deployed: it still says none will run, whatever the times.
    unheard = drift_action(True, False, pending, retrain_deployed=False, **args)
    assert unheard.action == "already_open"
    assert NO_RETRAIN in unheard.note
