"""Registry tasks: register a version with its lineage, move the champion alias."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from driftloop.core.history import AliasMove
from driftloop.errors import ChampionMoved, ChampionPinned, PromotionRefused
from driftloop.events import MODEL_PROMOTED
from driftloop.io.prefect_concurrency import promotion_lock
from driftloop.io.prefect_events import emit
from driftloop.io.registry import ANY_CHAMPION, AnyChampion, ModelRegistry
from tasks.policies import mlflow_task


@dataclass(frozen=True)
class Champion:
    version: str
    tags: dict[str, str]


@mlflow_task("find-champion")
def find_champion(model_name: str, tracking_uri: str) -> Champion | None:
    champion = ModelRegistry(model_name, tracking_uri).champion()
    return None if champion is None else Champion(str(champion.version), dict(champion.tags))


@mlflow_task("register-model", timeout_seconds=600)
def register_model(
    model_name: str, tracking_uri: str, model_uri: str, run_id: str, tags: Mapping[str, str], description: str
) -> str:
    """A new model version for the ONNX model; returns its version number."""
    version = ModelRegistry(model_name, tracking_uri).register(model_uri, run_id, tags, description)
    return str(version.version)


@dataclass(frozen=True)
class PromotionAttempt:
    """What ``promote-model`` did; the expected outcomes are values, so a flow branches without try/except.

    Attributes:
        moved: The alias move, when the candidate became champion.
        champion_moved_to: The champion now, when it is no longer the one the gate compared with: gate the
            candidate again against it. None also when the alias was removed meanwhile (then
            ``champion_moved`` is still True: gate against no champion).
        pinned: Who pinned the champion, at which version and why (``alice@host at v4 (freeze)``: what follows
            "champion pinned by"), when that pin refused this automatic promotion.
        champion_moved: True whenever the champion changed since the gate.
        note: One line saying what happened, for logs and artifacts.

    All of moved, champion_moved_to and pinned are None when someone else made the candidate champion
    meanwhile: nothing is left to do.
    """

    moved: AliasMove | None
    champion_moved_to: str | None
    pinned: str | None
    champion_moved: bool = False
    note: str = ""


@task(name="promote-model", cache_policy=NO_CACHE, timeout_seconds=300)
def promote_model(
    model_name: str,
    tracking_uri: str,
    version: str,
    reason: str,
    actor: str,
    expected_champion: str | None | AnyChampion = ANY_CHAMPION,
    automatic: bool = False,
) -> PromotionAttempt:
    """Move the champion alias under the model's promotion lock. Not retried: a move is not idempotent.

    ``expected_champion`` (None: there was no champion) makes the move a compare-and-swap against the champion
    the gate compared with; ``automatic`` makes a pin refuse it. Left out, neither check applies.
    """
    registry = ModelRegistry(model_name, tracking_uri)
    with promotion_lock(model_name):
        try:
            move = registry.promote(
                version, reason=reason, actor=actor, expected_champion=expected_champion, automatic=automatic
            )
        except ChampionPinned as pinned:
            return PromotionAttempt(moved=None, champion_moved_to=None, pinned=pinned.pinned_by, note=str(pinned))
        except ChampionMoved as moved:
            if moved.current != str(version):
                return PromotionAttempt(
                    moved=None, champion_moved_to=moved.current, pinned=None, champion_moved=True, note=str(moved)
                )
            return _already_champion(version)
        except PromotionRefused:
            champion = registry.champion()
            if champion is None or str(champion.version) != str(version):
                raise
            return _already_champion(version)
    emit(MODEL_PROMOTED, model_name, {"model": model_name, "from": move.from_version, "to": move.to_version,
                                      "reason": move.reason})  # fmt: skip
    note = f"champion {'v' + move.from_version if move.from_version else 'none'} → v{move.to_version}"
    return PromotionAttempt(moved=move, champion_moved_to=None, pinned=None, note=note)


def _already_champion(version: str) -> PromotionAttempt:
    note = f"v{version} was made champion meanwhile by someone else: nothing left to do"
    return PromotionAttempt(moved=None, champion_moved_to=None, pinned=None, note=note)
