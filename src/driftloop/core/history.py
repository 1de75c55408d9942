"""The champion alias's history: entries, their hash chain, the pin, and which version a rollback returns to.

The log is a chain: entry ``seq`` n carries ``prev``, the SHA-256 of entry n-1's canonical JSON, and is known by
its own SHA-256. Editing or losing an entry breaks the chain at that point; the registered model's state tag
(``ChampionState``) names the last hash, which covers the newest entry too. Reading never fails on a bad entry:
it is skipped or flagged, with a problem line that names it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from driftloop.core import lineage
from driftloop.errors import RegistryError

Action = Literal["promote", "rollback", "pin", "unpin", "retrain"]
ACTIONS: tuple[str, ...] = ("promote", "rollback", "pin", "unpin", "retrain")
# The actions that move the alias; pin and unpin record a decision about it, retrain one the loop took about the
# champion without moving it (a retrain that skipped: nothing new to learn from).
ALIAS_MOVES: tuple[str, ...] = ("promote", "rollback")

# Stays well under MLflow's tag value limits (8,000 characters on a run) with seq and prev added.
MAX_JSON_CHARS = 3_999
_ELLIPSIS = "…"
_FORMAT_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class AliasMove:
    """One entry of the champion's history: a move of the alias, or a pin or unpin of it.

    Attributes:
        at: When it happened (timezone-aware; stored in UTC).
        alias: The alias, e.g. ``champion``.
        action: ``promote`` or ``rollback`` (the alias moved), ``pin`` or ``unpin`` (it did not: ``from_version``
            and ``to_version`` are then both the pinned version).
        from_version: The version that held the alias before, None if none did.
        to_version: The version that holds it after.
        reason: Why, in the operator's or the gate's words.
        actor: Who or what did it: ``user@host`` or a Prefect flow run.
    """

    at: datetime
    alias: str
    action: Action
    from_version: str | None
    to_version: str
    reason: str
    actor: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"AliasMove.at must be timezone-aware, got {self.at!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        for name in ("alias", "to_version", "reason", "actor"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"AliasMove.{name} must not be empty")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        object.__setattr__(self, "to_version", str(self.to_version))
        if self.from_version is not None:
            object.__setattr__(self, "from_version", str(self.from_version))

    def _payload(self, reason: str, actor: str) -> dict[str, Any]:
        return {
            "v": _FORMAT_VERSION,
            "at": self.at.isoformat(timespec="microseconds"),
            "alias": self.alias,
            "action": self.action,
            "from": self.from_version,
            "to": self.to_version,
            "reason": reason,
            "actor": actor,
        }

    def to_json(self) -> str:
        """Compact JSON under ``MAX_JSON_CHARS``; a too-long reason (then actor) is cut with an ellipsis."""
        return _dumps(self.payload())

    def payload(self) -> dict[str, Any]:
        """The fields ``to_json`` writes, reason and actor already cut to fit."""
        fields = {"reason": self.reason, "actor": self.actor}
        payload = self._payload(**fields)
        for name in ("reason", "actor"):
            while len(_dumps(payload)) > MAX_JSON_CHARS and len(fields[name]) > 1:
                # Each dropped character shortens the JSON by at least one (escapes only make it longer).
                excess = len(_dumps(payload)) - MAX_JSON_CHARS
                keep = max(len(fields[name]) - excess - len(_ELLIPSIS), 0)
                fields[name] = fields[name][:keep] + _ELLIPSIS
                payload = self._payload(**fields)
        return payload

    @classmethod
    def from_json(cls, text: str) -> AliasMove:
        """Parse ``to_json`` output (extra keys are ignored); ValueError when ``text`` is not a history entry."""
        try:
            return cls.from_payload(json.loads(text))
        except ValueError as exc:
            raise ValueError(f"not a driftloop history entry ({exc}): {text[:200]!r}") from exc

    @classmethod
    def from_payload(cls, data: Any) -> AliasMove:
        """The move in a parsed entry; ValueError when a field is missing or invalid."""
        try:
            texts = [data[name] for name in ("at", "alias", "action", "to", "reason", "actor")]
            if not all(isinstance(value, str) for value in texts) or not isinstance(data["from"], str | None):
                raise TypeError("every field must be a string (from may be null)")
            return cls(
                at=datetime.fromisoformat(data["at"]),
                alias=data["alias"],
                action=data["action"],
                from_version=data["from"],
                to_version=data["to"],
                reason=data["reason"],
                actor=data["actor"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def canonical_json(payload: Mapping[str, Any]) -> str:
    """The one serialization an entry is hashed in: compact, keys sorted, UTF-8 kept as is."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_digest(text: str) -> str:
    """The SHA-256 of a stored entry, taken of its canonical form (so reformatting alone is not an edit).

    Raises:
        ValueError: ``text`` is not a JSON object.
    """
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError(f"a JSON object was expected, got {type(payload).__name__}")
    return sha256_hex(canonical_json(payload))


@dataclass(frozen=True)
class LogEntry:
    """One link of the chain: the move, its place (``seq``, from 1) and the hash of the entry before it."""

    seq: int
    prev: str
    move: AliasMove

    def __post_init__(self) -> None:
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise ValueError(f"seq must be a whole number from 1, got {self.seq!r}")
        if not isinstance(self.prev, str) or (self.prev != "" and not _SHA256.match(self.prev)):
            raise ValueError(f"prev must be empty or a SHA-256 in hex, got {str(self.prev)[:80]!r}")

    def canonical_json(self) -> str:
        """``AliasMove.to_json``'s fields plus ``seq`` and ``prev``, in canonical form."""
        return canonical_json({**self.move.payload(), "seq": self.seq, "prev": self.prev})

    @property
    def sha256(self) -> str:
        return sha256_hex(self.canonical_json())

    @classmethod
    def from_json(cls, text: str) -> LogEntry:
        """Parse a stored entry; ValueError saying what is wrong with it."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object but {type(data).__name__}")
        if "seq" not in data or "prev" not in data:
            raise ValueError("no seq or prev")
        return cls(seq=data["seq"], prev=data["prev"], move=AliasMove.from_payload(data))


def entry_tags(model_name: str, entry: LogEntry) -> dict[str, str]:
    """The run tags an entry is stored in: the columns a person filters on, the entry itself, the chain."""
    move = entry.move
    payload = move.payload()
    text = entry.canonical_json()
    return {
        lineage.HISTORY_MODEL: model_name,
        lineage.HISTORY_SEQ: str(entry.seq),
        lineage.HISTORY_ACTION: move.action,
        lineage.HISTORY_FROM: move.from_version or "",
        lineage.HISTORY_TO: move.to_version,
        lineage.HISTORY_ACTOR: payload["actor"],
        lineage.HISTORY_REASON: payload["reason"],
        lineage.HISTORY_AT: payload["at"],
        lineage.HISTORY_ENTRY: text,
        lineage.HISTORY_PREV: entry.prev,
        lineage.HISTORY_HASH: sha256_hex(text),
    }


def entry_title(model_name: str, move: AliasMove) -> str:
    """A name for the entry's run, e.g. ``churn: v4 → v5 (promote)``."""
    if move.action in ALIAS_MOVES:
        frm = f"v{move.from_version}" if move.from_version is not None else "none"
        return f"{model_name}: {frm} → v{move.to_version} ({move.action})"
    return f"{model_name}: v{move.to_version} ({move.action})"


@dataclass(frozen=True)
class Pin:
    """The champion is pinned: automatic promotions are refused until someone unpins it.

    ``version`` follows the champion when a person moves it while pinned; ``actor``, ``reason`` and ``at`` stay
    those of the pin itself.
    """

    version: str
    actor: str
    reason: str
    at: datetime

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "actor": self.actor, "reason": self.reason, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, data: Any) -> Pin:
        try:
            if not all(isinstance(data[name], str) for name in ("version", "actor", "reason", "at")):
                raise TypeError("every field must be a string")
            return cls(data["version"], data["actor"], data["reason"], datetime.fromisoformat(data["at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a pin ({type(exc).__name__}: {exc})") from exc

    def by(self) -> str:
        """What follows "champion pinned by": who, at which version, and why."""
        return f"{self.actor} at v{self.version} ({self.reason})"

    def describe(self) -> str:
        return f"pinned at v{self.version} by {self.actor} ({self.reason})"


@dataclass(frozen=True)
class ChampionState:
    """The registered model's one compact tag: the champion driftloop set, the pin, the log's head hash."""

    champion: str | None
    pinned: Pin | None
    head: str
    entries: int

    def to_json(self) -> str:
        return _dumps(
            {
                "champion": self.champion,
                "pinned": self.pinned.as_dict() if self.pinned else None,
                "head": self.head,
                "entries": self.entries,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ChampionState:
        """ValueError when ``text`` is not a state tag."""
        try:
            data = json.loads(text)
            pinned = data["pinned"]
            entries = data["entries"]
            if not isinstance(entries, int) or not isinstance(data["head"], str):
                raise ValueError("entries must be a number and head a string")
            champion = data["champion"]
            return cls(
                champion=None if champion is None else str(champion),
                pinned=None if pinned is None else Pin.from_dict(pinned),
                head=data["head"],
                entries=entries,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class StoredEntry:
    """An entry as read from the store, not yet trusted.

    Attributes:
        ref: Where it is (an MLflow run id), for messages.
        tags: Its ``driftloop.history.*`` tags.
        written_ms: When the store says it was written; orders two entries claiming the same seq.
    """

    ref: str
    tags: Mapping[str, str]
    written_ms: int = 0


@dataclass(frozen=True)
class HistoryReport:
    """What the history says, and what is wrong with it.

    Attributes:
        moves: Every good entry, oldest first: legacy tags (time order) then the log (seq order).
        problems: One line per skipped or suspicious entry; empty when everything checks out.
        pinned: The pin in force after the last entry, or None.
        head: The hash the next entry must name as ``prev`` ("" for an empty log).
        next_seq: The next entry's ``seq``.
    """

    moves: tuple[AliasMove, ...]
    problems: tuple[str, ...]
    pinned: Pin | None
    head: str
    next_seq: int


def legacy_moves(model_name: str, tags: Mapping[str, str]) -> tuple[list[AliasMove], list[str]]:
    """Moves recorded by older driftloop versions as ``driftloop.history.*`` registered-model tags."""
    moves: list[tuple[datetime, str, AliasMove]] = []
    problems: list[str] = []
    for key in sorted(key for key in tags if key.startswith(lineage.HISTORY_PREFIX)):
        try:
            move = AliasMove.from_json(tags[key])
        except ValueError:
            problems.append(
                f"registered-model tag {key!r} of {model_name!r} is not a driftloop history entry "
                f"({_preview(tags[key])}): skipped"
            )
            continue
        moves.append((move.at, key, move))
    return [move for _, _, move in sorted(moves, key=lambda item: item[:2])], problems


def _preview(text: str) -> str:
    return repr(text[:40] + (_ELLIPSIS if len(text) > 40 else ""))


def _seq_of(raw: StoredEntry) -> int | None:
    """The entry's seq: from its JSON when that parses, else from its seq tag."""
    try:
        seq = json.loads(raw.tags.get(lineage.HISTORY_ENTRY, ""))["seq"]
    except (ValueError, KeyError, TypeError):
        seq = raw.tags.get(lineage.HISTORY_SEQ, "")
    try:
        number = int(seq)
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


@dataclass(frozen=True)
class _Walk:
    entries: tuple[LogEntry, ...]
    problems: tuple[str, ...]
    head: str
    last_seq: int


def _walk(model_name: str, stored: Sequence[StoredEntry]) -> _Walk:
    problems: list[str] = []
    numbered: list[tuple[int, int, str, StoredEntry]] = []
    for raw in stored:
        seq = _seq_of(raw)
        if seq is None:
            problems.append(f"history entry {raw.ref} of {model_name!r} has no readable seq: skipped")
            continue
        numbered.append((seq, raw.written_ms, raw.ref, raw))
    numbered.sort(key=lambda item: item[:3])

    entries: list[LogEntry] = []
    head, last_seq = "", 0
    for seq, _, _, raw in numbered:
        label = f"history entry seq {seq} of {model_name!r}"
        text = raw.tags.get(lineage.HISTORY_ENTRY, "")
        claimed = raw.tags.get(lineage.HISTORY_HASH, "")
        try:
            entry = LogEntry.from_json(text)
            digest = entry_digest(text)
        except ValueError as exc:
            problems.append(f"{label} is malformed ({exc}): skipped")
            head, last_seq = (claimed if _SHA256.match(claimed) else head), seq
            continue
        if digest != claimed:
            problems.append(f"{label} does not match its hash: edited, skipped")
            head, last_seq = (claimed if _SHA256.match(claimed) else head), seq
            continue
        if entry.prev != head:
            if seq == last_seq:
                problems.append(f"{label} was written twice (two moves at once?): both are kept")
            elif last_seq == 0:
                problems.append(f"{label} does not follow the start of the log: edited or lost")
            else:
                problems.append(f"{label} does not follow seq {last_seq}: edited or lost")
        edited = sorted(
            key
            for key, value in entry_tags(model_name, entry).items()
            if key != lineage.HISTORY_HASH and raw.tags.get(key) != value
        )
        if edited:
            problems.append(f"{label}: tag(s) {', '.join(edited)} differ from the entry (edited): the entry is used")
        entries.append(entry)
        head, last_seq = digest, seq
    return _Walk(tuple(entries), tuple(problems), head, last_seq)


def pin_after(moves: Sequence[AliasMove]) -> Pin | None:
    """The pin in force after ``moves``: set by pin, cleared by unpin, following every alias move in between.

    While a pin holds, only a person moves the alias (automatic promotions are refused), and the pin follows
    that move to the new champion.
    """
    pin: Pin | None = None
    for move in moves:
        if move.action == "pin":
            pin = Pin(move.to_version, move.actor, move.reason, move.at)
        elif move.action == "unpin":
            pin = None
        elif pin is not None and move.action in ALIAS_MOVES:
            pin = replace(pin, version=move.to_version)
    return pin


def _describe_pin(pin: Pin | None) -> str:
    return pin.describe() if pin else "not pinned"


def check_history(
    model_name: str,
    legacy_tags: Mapping[str, str],
    stored: Sequence[StoredEntry],
    state_text: str | None,
    champion: str | None,
) -> HistoryReport:
    """Verify the log's chain, merge the legacy tags before it, and compare both with the state tag and alias.

    Args:
        model_name: The registered model, for messages.
        legacy_tags: The registered model's tags (only ``driftloop.history.*`` ones are read).
        stored: The log's entries for this model, in any order.
        state_text: The ``driftloop.state`` tag, None when absent.
        champion: The version holding the alias now, None when none does.
    """
    legacy, problems = legacy_moves(model_name, legacy_tags)
    walk = _walk(model_name, stored)
    problems.extend(walk.problems)
    moves = (*legacy, *(entry.move for entry in walk.entries))
    pinned = pin_after(moves)

    state: ChampionState | None = None
    if state_text is not None:
        try:
            state = ChampionState.from_json(state_text)
        except ValueError as exc:
            problems.append(f"tag {lineage.STATE} of {model_name!r} is malformed ({exc}): ignored")
    if state is None and state_text is None and walk.last_seq:
        problems.append(
            f"registered model {model_name!r} has no {lineage.STATE} tag, yet its history log has "
            f"{walk.last_seq} entries: a move was interrupted, or the tag was deleted"
        )
    if state is not None:
        if (state.head, state.entries) != (walk.head, walk.last_seq):
            problems.append(
                f"tag {lineage.STATE} of {model_name!r} records {state.entries} entries ending in "
                f"{state.head[:12] or 'none'}, the history log has {walk.last_seq} ending in "
                f"{walk.head[:12] or 'none'}: a move was interrupted, or entries were edited or lost"
            )
        elif state.pinned != pinned:
            problems.append(
                f"tag {lineage.STATE} of {model_name!r} says {_describe_pin(state.pinned)}, its history log says "
                f"{_describe_pin(pinned)}: the log is used"
            )
    last_move = next((move for move in reversed(moves) if move.action in ALIAS_MOVES), None)
    if last_move is not None and last_move.to_version != champion:
        shown = f"v{champion}" if champion is not None else "not set"
        problems.append(
            f"the {last_move.alias} alias of {model_name!r} is {shown}, but the last recorded move made "
            f"v{last_move.to_version} {last_move.alias}: moved outside driftloop, or a move was interrupted"
        )
    return HistoryReport(
        moves=moves, problems=tuple(problems), pinned=pinned, head=walk.head, next_seq=walk.last_seq + 1
    )


def _replay(moves: Sequence[AliasMove]) -> list[str]:
    stack: list[str] = []
    for move in moves:
        if move.action == "promote":
            stack.append(move.to_version)
            continue
        if move.action != "rollback":
            continue
        if stack:
            stack.pop()
        # After a rollback the restored version must be on top, even if the alias was moved by hand before.
        if not stack or stack[-1] != move.to_version:
            stack.append(move.to_version)
    return stack


def rollback_target(moves: Sequence[AliasMove], current: str | None) -> str:
    """The version a rollback should restore: the champion before ``current``.

    ``moves`` are in time order. Each promote pushes its version and each rollback pops one (pin and unpin
    entries are passed over); the answer is the most recent version on that stack that differs from
    ``current``, so it stays sensible when someone moved the alias outside driftloop.

    Raises:
        RegistryError: There is no earlier champion.
    """
    for version in reversed(_replay(moves)):
        if version != current:
            return version
    shown = f"v{current}" if current is not None else "none"
    count = sum(move.action in ALIAS_MOVES for move in moves)
    raise RegistryError(
        f"no previous champion to roll back to: the history holds {count} move(s) and none leaves a "
        f"champion other than the current one ({shown})"
    )


def format_history(moves: Sequence[AliasMove]) -> list[dict[str, str]]:
    """Rows for a table, in the order given. A pin shows the version it pins, an unpin the one it releases."""
    rows: list[dict[str, str]] = []
    for move in moves:
        frm, to = move.from_version or "—", move.to_version
        if move.action == "pin":
            frm = "—"
        elif move.action == "unpin":
            frm, to = move.to_version, "—"
        rows.append(
            {
                "time": move.at.strftime("%Y-%m-%d %H:%M:%SZ"),
                "action": move.action,
                "from": frm,
                "to": to,
                "reason": move.reason,
                "actor": move.actor,
            }
        )
    return rows
