from datetime import UTC, datetime, timedelta, timezone

import pytest

from driftloop.core import lineage
from driftloop.core.history import AliasMove, format_history, rollback_target
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


def test_tag_key_sorts_by_time_and_never_collides() -> None:
    move = _move("1")
    keys = {move.tag_key() for _ in range(200)}
    assert len(keys) == 200
    key = next(iter(keys))
    assert key.startswith(lineage.HISTORY_PREFIX + "20261125T023145.123456Z-")
    assert len(key) == len(lineage.HISTORY_PREFIX) + len("20261125T023145.123456Z-") + 6
    later = [_move("1", minutes=m).tag_key() for m in (0, 1, 60, 24 * 60)]
    tiny_later = AliasMove(T0 + timedelta(microseconds=1), "champion", "promote", None, "1", "r", "a").tag_key()
    assert sorted([tiny_later, *later]) == [later[0], tiny_later, *later[1:]]


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
