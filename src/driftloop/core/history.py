"""The champion alias's history: one record per move, and which version a rollback returns to."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from driftloop.core import lineage
from driftloop.errors import RegistryError

Action = Literal["promote", "rollback"]
ACTIONS: tuple[str, ...] = ("promote", "rollback")

# Stays well under MLflow's tag limits and keeps the registered model's tag list readable.
MAX_JSON_CHARS = 3_999
_ELLIPSIS = "…"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class AliasMove:
    """One move of a registry alias.

    Attributes:
        at: When it happened (timezone-aware; stored in UTC).
        alias: The alias moved, e.g. ``champion``.
        action: ``promote`` or ``rollback``.
        from_version: The version that held the alias before, None if none did.
        to_version: The version that holds it after.
        reason: Why, in the operator's or the gate's words.
        actor: Who or what moved it: ``user@host`` or a Prefect flow run.
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

    def tag_key(self) -> str:
        """A registered-model tag key for this move: sorts by time; the random suffix keeps writers apart."""
        return f"{lineage.HISTORY_PREFIX}{self.at.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(3)}"

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
        fields = {"reason": self.reason, "actor": self.actor}
        text = _dumps(self._payload(**fields))
        for name in ("reason", "actor"):
            while len(text) > MAX_JSON_CHARS and len(fields[name]) > 1:
                # Each dropped character shortens the JSON by at least one (escapes only make it longer).
                excess = len(text) - MAX_JSON_CHARS
                keep = max(len(fields[name]) - excess - len(_ELLIPSIS), 0)
                fields[name] = fields[name][:keep] + _ELLIPSIS
                text = _dumps(self._payload(**fields))
        return text

    @classmethod
    def from_json(cls, text: str) -> AliasMove:
        """Parse ``to_json`` output; ValueError when ``text`` is not a history entry."""
        try:
            data = json.loads(text)
            return cls(
                at=datetime.fromisoformat(data["at"]),
                alias=data["alias"],
                action=data["action"],
                from_version=data["from"],
                to_version=data["to"],
                reason=data["reason"],
                actor=data["actor"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a driftloop history entry ({exc}): {text[:200]!r}") from exc


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _replay(moves: Sequence[AliasMove]) -> list[str]:
    stack: list[str] = []
    for move in moves:
        if move.action == "promote":
            stack.append(move.to_version)
            continue
        if stack:
            stack.pop()
        # After a rollback the restored version must be on top, even if the alias was moved by hand before.
        if not stack or stack[-1] != move.to_version:
            stack.append(move.to_version)
    return stack


def rollback_target(moves: Sequence[AliasMove], current: str | None) -> str:
    """The version a rollback should restore: the champion before ``current``.

    ``moves`` are in time order. Each promote pushes its version and each rollback pops one; the answer is
    the most recent version on that stack that differs from ``current``, so it stays sensible when someone
    moved the alias outside driftloop.

    Raises:
        RegistryError: There is no earlier champion.
    """
    for version in reversed(_replay(moves)):
        if version != current:
            return version
    shown = f"v{current}" if current is not None else "none"
    raise RegistryError(
        f"no previous champion to roll back to: the history holds {len(moves)} move(s) and none leaves a "
        f"champion other than the current one ({shown})"
    )


def format_history(moves: Sequence[AliasMove]) -> list[dict[str, str]]:
    """Rows for a table, in the order given."""
    return [
        {
            "time": move.at.strftime("%Y-%m-%d %H:%M:%SZ"),
            "action": move.action,
            "from": move.from_version or "—",
            "to": move.to_version,
            "reason": move.reason,
            "actor": move.actor,
        }
        for move in moves
    ]
