import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from driftloop.core import lineage
from driftloop.core.history import (
    AliasMove,
    ChampionState,
    HistoryReport,
    LogEntry,
    Pin,
    StoredEntry,
    canonical_json,
    check_history,
    entry_digest,
    entry_tags,
    entry_title,
    format_history,
    legacy_moves,
    pin_after,
    rollback_target,
    sha256_hex,
)
from driftloop.errors import RegistryError

T0 = datetime(2026, 11, 25, 2, 31, 45, 123456, tzinfo=UTC)


def _move(
    to: str, action: str = "promote", frm: str | None = None, minutes: int = 0, reason: str = "gate passed"
) -> AliasMove:
    return AliasMove(
        at=T0 + timedelta(minutes=minutes),
        alias="champion",
        action=action,  # type: ignore[arg-type]
        from_version=frm,
        to_version=to,
        reason=reason,
        actor="flow-run/abc",
    )


def _promotes(*versions: str) -> list[AliasMove]:
    moves: list[AliasMove] = []
    previous: str | None = None
    for i, version in enumerate(versions):
        moves.append(_move(version, frm=previous, minutes=i))
        previous = version
    return moves


def test_json_round_trip() -> None:
    move = _move("2", frm="1", reason='roc_auc +0.01; "quoted", ünïcode')
    text = move.to_json()
    assert AliasMove.from_json(text) == move
    assert "\n" not in text
    assert AliasMove.from_json(_move("1").to_json()).from_version is None


def test_time_is_stored_in_utc() -> None:
    local = datetime(2026, 11, 25, 4, 31, 45, 123456, tzinfo=timezone(timedelta(hours=2)))
    move = AliasMove(local, "champion", "promote", None, "1", "r", "me@host")
    assert move.at == T0
    assert move.at.tzinfo == UTC
    assert AliasMove.from_json(move.to_json()).at == T0


def test_long_reason_is_truncated_with_ellipsis() -> None:
    move = _move("2", frm="1", reason="x" * 10_000)
    text = move.to_json()
    assert len(text) < 4_000
    back = AliasMove.from_json(text)
    assert back.reason.endswith("…")
    assert back.reason.startswith("xxx")
    assert len(back.reason) > 3_000


def test_truncation_survives_characters_that_escape_long() -> None:
    move = _move("2", reason='"\\\n' * 3_000)
    text = move.to_json()
    assert len(text) < 4_000
    assert AliasMove.from_json(text).reason.endswith("…")


def test_huge_actor_is_truncated_too() -> None:
    move = AliasMove(T0, "champion", "promote", None, "1", "r" * 5_000, "a" * 5_000)
    text = move.to_json()
    assert len(text) < 4_000
    assert AliasMove.from_json(text).actor.endswith("…")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"action": "demote"}, "unknown action"),
        ({"reason": "  "}, "reason must not be empty"),
        ({"to_version": ""}, "to_version must not be empty"),
    ],
)
def test_invalid_moves_are_rejected(kwargs: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {
        "at": T0,
        "alias": "champion",
        "action": "promote",
        "from_version": None,
        "to_version": "1",
        "reason": "r",
        "actor": "me",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=match):
        AliasMove(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["not json", "[]", '{"at": "2026-01-01T00:00:00+00:00"}'])
def test_from_json_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a driftloop history entry"):
        AliasMove.from_json(text)


@pytest.mark.parametrize(
    ("moves", "current", "target"),
    [
        (_promotes("1", "2"), "2", "1"),
        ([*_promotes("1", "2", "3"), _move("2", "rollback", "3", minutes=9)], "2", "1"),
        (_promotes("1", "2", "3"), "3", "2"),
        (_promotes("1", "2", "1"), "1", "2"),
        # The alias was moved to 7 outside driftloop: go back to the last champion driftloop set.
        (_promotes("1", "2"), "7", "2"),
        # The alias was deleted: restore the last champion.
        (_promotes("1", "2"), None, "2"),
        # Pin and unpin entries are passed over.
        ([*_promotes("1", "2"), _move("2", "pin", "2", minutes=5), _move("2", "unpin", "2", minutes=6)], "2", "1"),
        ([*_promotes("1"), _move("1", "pin", "1", minutes=5), _move("3", frm="1", minutes=6)], "3", "1"),
    ],
)
def test_rollback_target(moves: list[AliasMove], current: str | None, target: str) -> None:
    assert rollback_target(moves, current) == target


def test_rollback_chain_then_nothing_left() -> None:
    moves = _promotes("1", "2", "3")
    first = rollback_target(moves, "3")
    moves.append(_move(first, "rollback", "3", minutes=10))
    second = rollback_target(moves, first)
    moves.append(_move(second, "rollback", first, minutes=11))
    assert (first, second) == ("2", "1")
    with pytest.raises(RegistryError, match="no previous champion to roll back to"):
        rollback_target(moves, "1")


@pytest.mark.parametrize(("moves", "current"), [(_promotes("1"), "1"), ([], None), ([], "4")])
def test_no_previous_champion(moves: list[AliasMove], current: str | None) -> None:
    with pytest.raises(RegistryError, match="no previous champion to roll back to"):
        rollback_target(moves, current)


def test_format_history_rows() -> None:
    rows = format_history([_move("1"), _move("1", "rollback", "2", minutes=5, reason="latency")])
    assert rows == [
        {
            "time": "2026-11-25 02:31:45Z",
            "action": "promote",
            "from": "—",
            "to": "1",
            "reason": "gate passed",
            "actor": "flow-run/abc",
        },
        {
            "time": "2026-11-25 02:36:45Z",
            "action": "rollback",
            "from": "2",
            "to": "1",
            "reason": "latency",
            "actor": "flow-run/abc",
        },
    ]


def test_format_history_shows_what_a_pin_holds() -> None:
    rows = format_history([_move("4", "pin", "4", reason="freeze"), _move("4", "unpin", "4", minutes=1)])
    assert [(r["action"], r["from"], r["to"]) for r in rows] == [("pin", "—", "4"), ("unpin", "4", "—")]


@pytest.mark.parametrize(
    "text",
    [
        '{"at":"2026-01-01T00:00:00+00:00","alias":"champion","action":"promote","from":null,"to":"1",'
        '"reason":5,"actor":"a"}',
        '{"at":"2026-01-01T00:00:00+00:00","alias":"champion","action":["promote"],"from":null,"to":"1",'
        '"reason":"r","actor":"a"}',
        '{"at":"2026-01-01T00:00:00+00:00","alias":"champion","action":"promote","from":1,"to":"1",'
        '"reason":"r","actor":"a"}',
    ],
)
def test_from_json_wants_strings(text: str) -> None:
    with pytest.raises(ValueError, match="not a driftloop history entry"):
        AliasMove.from_json(text)


# The hash chain: entries as the store would hold them.

MODEL = "churn"


def _chain(moves: Sequence[AliasMove]) -> list[StoredEntry]:
    stored: list[StoredEntry] = []
    prev = ""
    for seq, move in enumerate(moves, 1):
        entry = LogEntry(seq, prev, move)
        stored.append(StoredEntry(ref=f"run r{seq}", tags=entry_tags(MODEL, entry), written_ms=seq))
        prev = entry.sha256
    return stored


def _state(stored: Sequence[StoredEntry], champion: str | None, pinned: Pin | None = None) -> str:
    head = stored[-1].tags[lineage.HISTORY_HASH] if stored else ""
    return ChampionState(champion, pinned, head, len(stored)).to_json()


def _check(stored: Sequence[StoredEntry], state: str | None = "auto", champion: str | None = "3") -> HistoryReport:
    """Check ``stored``; by default against the state tag and alias an intact v1 → v2 → v3 log leaves."""
    if state == "auto":
        state = _state(_chain(_promotes("1", "2", "3")), "3")
    return check_history(MODEL, {}, stored, state, champion)


def _edited(raw: StoredEntry, **tags: str) -> StoredEntry:
    return replace(raw, tags={**raw.tags, **tags})


def _reentry(raw: StoredEntry, **fields: object) -> str:
    """The entry's JSON with ``fields`` changed, in canonical form."""
    return canonical_json({**json.loads(raw.tags[lineage.HISTORY_ENTRY]), **fields})


def test_entry_is_canonical_json_plus_seq_and_prev_and_hashed() -> None:
    move = _move("2", frm="1", reason="ünïcode")
    first = LogEntry(1, "", _move("1"))
    entry = LogEntry(2, first.sha256, move)
    text = entry.canonical_json()
    assert json.loads(text) == {**json.loads(move.to_json()), "seq": 2, "prev": first.sha256}
    assert text == canonical_json(json.loads(text))
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert "ünïcode" in text
    assert entry.sha256 == sha256_hex(text) == entry_digest(text)
    # Reformatting the same content is not an edit; changing it is.
    assert entry_digest(json.dumps(json.loads(text), indent=2)) == entry.sha256
    assert entry_digest(text.replace("ünïcode", "unicode")) != entry.sha256
    assert LogEntry.from_json(text) == entry

    tags = entry_tags(MODEL, entry)
    assert tags[lineage.HISTORY_ENTRY] == text
    assert tags[lineage.HISTORY_HASH] == entry.sha256
    assert tags[lineage.HISTORY_PREV] == first.sha256
    assert entry_tags(MODEL, first)[lineage.HISTORY_PREV] == ""
    assert (tags[lineage.HISTORY_SEQ], tags[lineage.HISTORY_FROM], tags[lineage.HISTORY_TO]) == ("2", "1", "2")
    assert entry_tags(MODEL, first)[lineage.HISTORY_FROM] == ""
    assert tags[lineage.HISTORY_MODEL] == MODEL
    assert entry_title(MODEL, move) == "churn: v1 → v2 (promote)"
    assert entry_title(MODEL, _move("1")) == "churn: none → v1 (promote)"
    assert entry_title(MODEL, _move("4", "pin", "4")) == "churn: v4 (pin)"


@pytest.mark.parametrize(
    ("seq", "prev", "match"),
    [(0, "", "seq must be"), (True, "", "seq must be"), ("1", "", "seq must be"), (1, "abc", "prev must be")],
)
def test_log_entry_validates_its_place(seq: object, prev: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LogEntry(seq, prev, _move("1"))  # type: ignore[arg-type]


def test_intact_chain_has_no_problems() -> None:
    moves = _promotes("1", "2", "3")
    stored = _chain(moves)
    report = _check(list(reversed(stored)))  # the store returns them in any order
    assert report.moves == tuple(moves)
    assert report.problems == ()
    assert report.next_seq == 4
    assert report.head == stored[-1].tags[lineage.HISTORY_HASH]
    assert report.pinned is None


def test_edited_entry_is_skipped_and_named() -> None:
    stored = _chain(_promotes("1", "2", "3"))
    stored[1] = _edited(stored[1], **{lineage.HISTORY_ENTRY: _reentry(stored[1], reason="nothing to see")})
    report = _check(stored)
    assert [m.to_version for m in report.moves] == ["1", "3"]
    assert report.problems == ("history entry seq 2 of 'churn' does not match its hash: edited, skipped",)


def test_entry_edited_with_a_fresh_hash_breaks_the_link_after_it() -> None:
    stored = _chain(_promotes("1", "2", "3"))
    text = _reentry(stored[1], to="9")
    stored[1] = _edited(stored[1], **{lineage.HISTORY_ENTRY: text, lineage.HISTORY_HASH: sha256_hex(text)})
    report = _check(stored)
    assert "history entry seq 3 of 'churn' does not follow seq 2: edited or lost" in report.problems
    # The display tags still say v2: that edit is flagged on the entry itself.
    assert any(p.startswith("history entry seq 2 of 'churn': tag(s) driftloop.history.to") for p in report.problems)


def test_deleted_entry_is_reported_as_lost() -> None:
    stored = _chain(_promotes("1", "2", "3"))
    del stored[1]
    report = _check(stored)
    assert [m.to_version for m in report.moves] == ["1", "3"]
    assert report.problems == ("history entry seq 3 of 'churn' does not follow seq 1: edited or lost",)
    first_gone = _check(_chain(_promotes("1", "2", "3"))[1:])
    assert "history entry seq 2 of 'churn' does not follow the start of the log: edited or lost" in (
        first_gone.problems
    )


def test_last_entry_lost_or_rewritten_shows_as_a_head_mismatch() -> None:
    stored = _chain(_promotes("1", "2", "3"))
    lost = _check(stored[:2], champion="2")
    assert len(lost.problems) == 1
    problem = lost.problems[0]
    assert problem.startswith("tag driftloop.state of 'churn' records 3 entries ending in ")
    assert "the history log has 2 ending in" in problem
    assert problem.endswith("a move was interrupted, or entries were edited or lost")

    text = _reentry(stored[2], reason="rewritten")
    rewritten = [
        *stored[:2],
        _edited(stored[2], **{lineage.HISTORY_ENTRY: text, lineage.HISTORY_HASH: sha256_hex(text)}),
    ]
    assert any("records 3 entries ending in" in p for p in _check(rewritten).problems)


def test_display_tag_edit_is_flagged_but_the_entry_is_used() -> None:
    moves = _promotes("1", "2", "3")
    stored = _chain(moves)
    stored[0] = _edited(stored[0], **{lineage.HISTORY_REASON: "edited in the UI"})
    report = _check(stored)
    assert report.moves == tuple(moves)
    assert report.problems == (
        "history entry seq 1 of 'churn': tag(s) driftloop.history.reason differ from the entry (edited): "
        "the entry is used",
    )


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({lineage.HISTORY_ENTRY: "{not json"}, "history entry seq 2 of 'churn' is malformed (not JSON"),
        ({lineage.HISTORY_ENTRY: "[]"}, "history entry seq 2 of 'churn' is malformed (not a JSON object"),
        ({lineage.HISTORY_ENTRY: '{"seq": 2}'}, "history entry seq 2 of 'churn' is malformed (no seq or prev)"),
        ({lineage.HISTORY_ENTRY: "", lineage.HISTORY_SEQ: "x"}, "history entry run r2 of 'churn' has no readable seq"),
    ],
)
def test_malformed_entry_is_skipped_and_the_rest_kept(tags: dict[str, str], expected: str) -> None:
    stored = _chain(_promotes("1", "2", "3"))
    stored[1] = _edited(stored[1], **tags)
    report = _check(stored)
    assert [m.to_version for m in report.moves] == ["1", "3"]
    assert report.problems[0].startswith(expected)
    if "readable seq" in expected:  # nothing says where it was: the gap shows too
        assert report.problems[1] == "history entry seq 3 of 'churn' does not follow seq 1: edited or lost"
    else:
        assert len(report.problems) == 1


def test_an_entry_after_a_skipped_one_links_to_it() -> None:
    """A writer after a bad entry chains to the hash it claims, so the next check finds no new gap."""
    stored = _chain(_promotes("1", "2"))
    stored[1] = _edited(stored[1], **{lineage.HISTORY_ENTRY: "{junk"})
    report = _check(stored, state=None, champion="2")
    assert report.head == stored[1].tags[lineage.HISTORY_HASH]
    assert report.next_seq == 3
    entry = LogEntry(report.next_seq, report.head, _move("3", frm="2", minutes=5))
    after = [*stored, StoredEntry("run r3", entry_tags(MODEL, entry), 3)]
    state = ChampionState("3", None, entry.sha256, 3).to_json()
    assert _check(after, state=state).problems == (report.problems[0],)


def test_two_entries_with_one_seq_are_both_kept_and_reported() -> None:
    stored = _chain(_promotes("1", "2"))
    twin = LogEntry(2, stored[0].tags[lineage.HISTORY_HASH], _move("3", frm="1", minutes=1))
    stored.append(StoredEntry("run r2b", entry_tags(MODEL, twin), 3))
    report = _check(stored, state=None, champion="3")
    assert [m.to_version for m in report.moves] == ["1", "2", "3"]
    assert "history entry seq 2 of 'churn' was written twice (two moves at once?): both are kept" in report.problems


def test_state_tag_missing_or_malformed() -> None:
    stored = _chain(_promotes("1", "2", "3"))
    missing = _check(stored, state=None)
    assert missing.problems == (
        "registered model 'churn' has no driftloop.state tag, yet its history log has 3 entries: a move was "
        "interrupted, or the tag was deleted",
    )
    assert _check([], state=None, champion=None).problems == ()
    malformed = _check(stored, state='{"champion": 3')
    assert len(malformed.problems) == 1
    assert malformed.problems[0].startswith("tag driftloop.state of 'churn' is malformed (")


def test_alias_moved_outside_driftloop_is_reported() -> None:
    report = _check(_chain(_promotes("1", "2", "3")), champion="7")
    assert report.problems == (
        "the champion alias of 'churn' is v7, but the last recorded move made v3 champion: moved outside "
        "driftloop, or a move was interrupted",
    )


def test_pin_follows_moves_by_hand_until_unpinned() -> None:
    pin = _move("2", "pin", "2", minutes=3, reason="freeze")
    moves = [*_promotes("1", "2"), pin, _move("1", "rollback", "2", minutes=4)]
    assert pin_after(moves) == Pin("1", "flow-run/abc", "freeze", pin.at)
    assert pin_after([*moves, _move("1", "unpin", "1", minutes=5)]) is None
    assert pin_after(_promotes("1", "2")) is None

    stored = _chain(moves)
    expected = Pin("1", "flow-run/abc", "freeze", pin.at)
    report = _check(stored, state=_state(stored, "1", expected), champion="1")
    assert (report.pinned, report.problems) == (expected, ())
    disagreeing = _check(stored, state=_state(stored, "1", None), champion="1")
    assert disagreeing.pinned == expected
    assert disagreeing.problems == (
        "tag driftloop.state of 'churn' says not pinned, its history log says pinned at v1 by flow-run/abc "
        "(freeze): the log is used",
    )


def test_state_round_trip() -> None:
    state = ChampionState("5", Pin("4", "alice@host", "freeze", T0), "a" * 64, 12)
    assert ChampionState.from_json(state.to_json()) == state
    assert json.loads(state.to_json())["pinned"] == {
        "version": "4",
        "actor": "alice@host",
        "reason": "freeze",
        "at": T0.isoformat(),
    }
    assert ChampionState.from_json(ChampionState(None, None, "", 0).to_json()).champion is None
    with pytest.raises(ValueError, match="not a pin"):
        ChampionState.from_json('{"champion": "1", "pinned": {"version": 4}, "head": "", "entries": 1}')


def test_legacy_tags_are_read_in_time_order_and_junk_is_skipped() -> None:
    older, newer = _move("1"), _move("2", frm="1", minutes=1)
    tags = {
        lineage.HISTORY_PREFIX + "20261125T023245.000000Z-bbbbbb": newer.to_json(),
        lineage.HISTORY_PREFIX + "20261125T023145.000000Z-aaaaaa": older.to_json(),
        lineage.HISTORY_PREFIX + "manual": "hello",
        "driftloop.last_retrain_at": "2026-11-25T00:00:00+00:00",
    }
    moves, problems = legacy_moves(MODEL, tags)
    assert moves == [older, newer]
    assert problems == [
        "registered-model tag 'driftloop.history.manual' of 'churn' is not a driftloop history entry ('hello'): skipped"
    ]
    # Legacy moves come before the log's, and count for a rollback.
    stored = _chain([_move("3", frm="2", minutes=5)])
    report = check_history(MODEL, tags, stored, _state(stored, "3"), "3")
    assert [m.to_version for m in report.moves] == ["1", "2", "3"]
    assert report.problems == tuple(problems)
    assert rollback_target(report.moves, "3") == "2"


def test_a_retrain_note_moves_neither_the_pin_nor_the_rollback_target() -> None:
    from driftloop.core.history import pin_after

    moves = [
        *_promotes("1", "2"),
        _move("2", action="pin", frm="2", minutes=5, reason="freeze"),
        _move("2", action="retrain", frm="2", minutes=6, reason="retrain skipped: no new labelled data since v2"),
    ]
    pin = pin_after(moves)
    assert pin is not None
    assert pin.version == "2"
    assert rollback_target(moves, "2") == "1"
    assert format_history(moves)[-1]["action"] == "retrain"
