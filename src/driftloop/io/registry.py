"""The MLflow model registry: register versions, move the champion alias, keep and read its history."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Final

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from onnx import load_model_from_string
from onnx.external_data_helper import uses_external_data

from driftloop import events
from driftloop.core import lineage
from driftloop.core.history import (
    ALIAS_MOVES,
    Action,
    AliasMove,
    ChampionState,
    HistoryReport,
    LogEntry,
    Pin,
    check_history,
    pin_after,
    rollback_target,
)
from driftloop.core.schema import DatasetSchema, evolution_problem, same_contract
from driftloop.core.task import Task
from driftloop.errors import BundleError, ChampionMoved, ChampionPinned, PromotionRefused, RegistryError
from driftloop.io.bundle import EXTRA_FILES_DIR, find_model_file
from driftloop.io.history_log import HistoryLog

CHAMPION_SINCE = lineage.PREFIX + "champion_since"
RETIRED_AT = lineage.PREFIX + "retired_at"

_LOGGED_MODEL_URI = re.compile(r"^models:/(m-[0-9a-f]+)/?$")
_READY = "READY"
_NOT_FOUND = ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)
_INVALID = ErrorCode.Name(INVALID_PARAMETER_VALUE)
_EXISTS = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)


def _error_code(exc: MlflowException) -> str:
    return str(exc.error_code)


class AnyChampion(Enum):
    """The type of ``ANY_CHAMPION``."""

    ANY = "any"


# ``promote(expected_champion=ANY_CHAMPION)``: move the alias whoever holds it (a person's command).
ANY_CHAMPION: Final = AnyChampion.ANY


@dataclass(frozen=True)
class VersionSummary:
    """One registered version, as a table row needs it."""

    version: str
    aliases: tuple[str, ...]
    created_at: datetime
    run_id: str | None
    tags: dict[str, str]
    status: str


def _required(reason: str, actor: str, doing: str) -> tuple[str, str]:
    if not reason.strip():
        raise PromotionRefused(f"a reason is required to {doing}")
    if not actor.strip():
        raise PromotionRefused(f"an actor (user@host or a flow run) is required to {doing}")
    return reason.strip(), actor


def locate_model_file(model_dir: Path, filename: str) -> Path:
    """Find ``filename`` in a downloaded model directory (the bundle layout); RegistryError when absent."""
    try:
        return find_model_file(model_dir, filename)
    except BundleError as error:
        raise RegistryError(str(error)) from None


def registered_model_names(tracking_uri: str) -> list[str]:
    """Every registered model's name in the registry at ``tracking_uri``, sorted."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return sorted(model.name for model in client.search_registered_models(max_results=1000))


class ModelRegistry:
    """One registered model in one MLflow registry.

    The champion alias is the truth about what serves. Every move of it, and every pin and unpin, is first
    appended to the history log (``io.history_log``: one run per entry in the ``driftloop-history`` experiment,
    hash-chained), then the alias moves, then the registered model's one ``driftloop.state`` tag is rewritten
    (champion, pin, the log's head hash, entry count). A crash in between leaves an entry saying what was
    intended and a state tag that no longer matches, which ``history_report`` points out. Older versions'
    ``driftloop.history.*`` registered-model tags are still read, never written.

    Nothing here serializes two writers: the compare-and-swap in ``promote(expected_champion=...)`` is only
    atomic under ``io.prefect_concurrency.promotion_lock``, which every caller that moves the alias holds.
    """

    def __init__(self, model_name: str, tracking_uri: str) -> None:
        if not lineage.MODEL_NAME.match(model_name):
            raise RegistryError(f"model name {model_name!r} may only contain letters, digits, '_', '.' and '-'")
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._log = HistoryLog(self._client, tracking_uri)

    def _registered_model(self) -> RegisteredModel | None:
        try:
            return self._client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if _error_code(exc) == _NOT_FOUND:
                return None
            raise

    def champion(self) -> ModelVersion | None:
        """The version holding the champion alias; None when there is no such model or alias yet."""
        model = self._registered_model()
        if model is None:
            return None
        version = model.aliases.get(events.CHAMPION)
        if version is None:
            return None
        return self.get_version(str(version))

    def get_version(self, version: str) -> ModelVersion:
        """One version; RegistryError naming the existing versions when it does not exist."""
        try:
            return self._client.get_model_version(self.model_name, str(version))
        except MlflowException as exc:
            if _error_code(exc) not in (_NOT_FOUND, _INVALID):
                raise
            existing = [summary.version for summary in self.versions()]
            known = ", ".join(existing) if existing else "none"
            raise RegistryError(
                f"model {self.model_name!r} has no version {version!r} (existing versions: {known})"
            ) from exc

    def register(self, model_uri: str, run_id: str, tags: Mapping[str, str], description: str = "") -> ModelVersion:
        """Register ``model_uri`` (a ``ModelInfo.model_uri``) as a new version and wait until it is READY."""
        try:
            self._client.create_registered_model(self.model_name)
        except MlflowException as exc:
            if _error_code(exc) != _EXISTS:
                raise
        source, model_id = model_uri, None
        logged_model = _LOGGED_MODEL_URI.match(model_uri)
        if logged_model:
            # MLflow's SQL registry store resolves a models:/m-<id> source through a default MlflowClient(),
            # i.e. the process-global tracking URI (its own TODO says so), not this client's store. Resolving
            # it here keeps registration on our store; the stored location is the one MLflow would store.
            model_id = logged_model.group(1)
            source = self._client.get_logged_model(model_id).artifact_location
        version = self._client.create_model_version(
            self.model_name,
            source=source,
            run_id=run_id,
            tags={key: str(value) for key, value in tags.items()},
            description=description or None,
            model_id=model_id,
        )
        if str(version.status) != _READY:
            raise RegistryError(
                f"version {version.version} of {self.model_name!r} is {version.status}, not READY: "
                f"{version.status_message or 'no message from MLflow'}"
            )
        return version

    def set_version_tags(self, version: str, tags: Mapping[str, str]) -> None:
        """Set (overwrite) tags on an existing version."""
        self.get_version(version)
        for key, value in tags.items():
            self._client.set_model_version_tag(self.model_name, str(version), key, str(value))

    def promote(
        self,
        version: str,
        reason: str,
        actor: str,
        action: Action = "promote",
        expected_champion: str | None | AnyChampion = ANY_CHAMPION,
        automatic: bool = False,
    ) -> AliasMove:
        """Give ``version`` the champion alias and record why.

        Args:
            version: The version to make champion.
            reason: Why, kept in the history.
            actor: ``user@host`` or the flow run that decides.
            action: ``promote``, or ``rollback`` when this restores an earlier champion.
            expected_champion: The champion the gate compared with (None: there was none). When given and the
                champion is another one now, nothing changes and ``ChampionMoved`` says which. Not given (a
                person's command): no comparison.
            automatic: A flow decided, not a person. Refused with ``ChampionPinned`` while the champion is
                pinned. A person's move is never refused by a pin: the pin follows it to the new champion, and
                the entry's reason says so.

        Raises:
            ChampionPinned: ``automatic`` while pinned.
            ChampionMoved: The champion is not ``expected_champion``.
            PromotionRefused: Empty reason or actor, unknown version, parity not passed, or already champion.
                The registry is unchanged when any of these is raised.
        """
        reason, actor = _required(reason, actor, f"move the {events.CHAMPION} alias")
        version = str(version)
        try:
            target = self.get_version(version)
        except RegistryError as exc:
            raise PromotionRefused(str(exc)) from exc
        refusal = lineage.parity_refusal(target.tags, self.model_name, version, "become champion")
        if refusal is not None:
            raise PromotionRefused(refusal)
        current, report = self._read()
        pin = report.pinned
        if automatic and pin is not None:
            raise ChampionPinned(pin.version, pin.actor, pin.reason)
        if not isinstance(expected_champion, AnyChampion):
            expected = None if expected_champion is None else str(expected_champion)
            if current != expected:
                raise ChampionMoved(self.model_name, version, expected, current)
        if current == version:
            raise PromotionRefused(f"version {version} of {self.model_name!r} is already {events.CHAMPION}")
        if pin is not None:
            reason = f"{reason} (the pin by {pin.actor} moves to v{version})"
        move = AliasMove(
            at=datetime.now(UTC),
            alias=events.CHAMPION,
            action=action,
            from_version=current,
            to_version=version,
            reason=reason,
            actor=actor,
        )
        self._commit(report, move, current)
        return move

    def rollback(self, reason: str, actor: str) -> AliasMove:
        """Give the champion alias back to the previous champion (see ``core.history.rollback_target``).

        Only entries that pass the history's checks count. A person's rollback is allowed while pinned.

        Raises:
            RegistryError: No earlier champion.
            PromotionRefused: Empty reason, or the target's parity tag is no longer ``passed``.
        """
        reason, actor = _required(reason, actor, f"move the {events.CHAMPION} alias")
        current, report = self._read()
        target = rollback_target(report.moves, current)
        return self.promote(target, reason, actor, action="rollback")

    def pin(self, version: str, reason: str, actor: str) -> list[AliasMove]:
        """Pin the champion at ``version``: automatic promotions are refused until ``unpin``.

        When ``version`` is not champion it first becomes champion by a person's promote (parity must have
        passed). Pinning again replaces who and why.

        Returns:
            The entries written, in order: that promote if there was one, then the pin.

        Raises:
            PromotionRefused: Empty reason or actor, or ``version`` may not become champion.
        """
        reason, actor = _required(reason, actor, f"pin the {events.CHAMPION}")
        version = str(version)
        current, report = self._read()
        written: list[AliasMove] = []
        if current != version:
            written.append(self.promote(version, f"to pin it: {reason}", actor))
            current, report = self._read()
        pin = AliasMove(datetime.now(UTC), events.CHAMPION, "pin", version, version, reason, actor)
        self._commit(report, pin, current)
        written.append(pin)
        return written

    def unpin(self, reason: str, actor: str) -> AliasMove:
        """Lift the pin: automatic promotions may move the champion again.

        Raises:
            PromotionRefused: Empty reason or actor.
            RegistryError: The champion is not pinned.
        """
        reason, actor = _required(reason, actor, f"unpin the {events.CHAMPION}")
        current, report = self._read()
        pin = report.pinned
        if pin is None:
            raise RegistryError(f"the {events.CHAMPION} of {self.model_name!r} is not pinned: nothing to unpin")
        move = AliasMove(datetime.now(UTC), events.CHAMPION, "unpin", pin.version, pin.version, reason, actor)
        self._commit(report, move, current)
        return move

    def note(self, version: str, reason: str, actor: str) -> AliasMove:
        """Record in the history a decision the loop took about ``version`` that moved nothing (a skipped retrain)."""
        reason, actor = _required(reason, actor, "record a decision")
        current, report = self._read()
        move = AliasMove(datetime.now(UTC), events.CHAMPION, "retrain", str(version), str(version), reason, actor)
        self._commit(report, move, current)
        return move

    def pinned(self) -> Pin | None:
        """The pin in force, as the verified history log says (the state tag only summarizes it)."""
        return self._read()[1].pinned

    def history(self) -> list[AliasMove]:
        """Every recorded move, pin and unpin that passes the checks, oldest first; a bad entry never raises."""
        return list(self.history_report().moves)

    def history_report(self) -> HistoryReport:
        """The history with what is wrong with it: skipped or suspicious entries, a state tag that disagrees."""
        return self._read()[1]

    def _read(self) -> tuple[str | None, HistoryReport]:
        """The champion now and the checked history, from one read of the registered model."""
        model = self._registered_model()
        tags: dict[str, str] = dict(model.tags) if model is not None else {}
        champion = model.aliases.get(events.CHAMPION) if model is not None else None
        current = str(champion) if champion is not None else None
        stored = self._log.entries(self.model_name)
        return current, check_history(self.model_name, tags, stored, tags.get(lineage.STATE), current)

    def _commit(self, report: HistoryReport, move: AliasMove, champion_before: str | None) -> LogEntry:
        # History first, then the alias, then the state tag: a crash in between leaves an entry saying what was
        # intended while the alias (the truth) is unchanged; the reverse order could move the alias with no
        # record of why.
        entry = LogEntry(seq=report.next_seq, prev=report.head, move=move)
        self._log.append(self.model_name, entry)
        champion = champion_before
        if move.action in ALIAS_MOVES:
            champion = move.to_version
            self._client.set_registered_model_alias(self.model_name, events.CHAMPION, move.to_version)
            since = move.at.isoformat(timespec="seconds")
            self._client.set_model_version_tag(self.model_name, move.to_version, CHAMPION_SINCE, since)
            self._client.delete_model_version_tag(self.model_name, move.to_version, RETIRED_AT)
            if champion_before is not None:
                self._client.set_model_version_tag(self.model_name, champion_before, RETIRED_AT, since)
        state = ChampionState(
            champion=champion, pinned=pin_after((*report.moves, move)), head=entry.sha256, entries=entry.seq
        )
        self._client.set_registered_model_tag(self.model_name, lineage.STATE, state.to_json())
        return entry

    def versions(self) -> list[VersionSummary]:
        """Every version of the model, newest first; empty when the model does not exist."""
        model = self._registered_model()
        if model is None:
            return []
        aliases_of: dict[str, list[str]] = {}
        for alias, version in model.aliases.items():
            aliases_of.setdefault(str(version), []).append(alias)
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self._client.search_model_versions(f"name='{self.model_name}'", page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        summaries = [
            VersionSummary(
                version=str(mv.version),
                aliases=tuple(sorted(aliases_of.get(str(mv.version), []))),
                created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                run_id=mv.run_id or None,
                tags=dict(mv.tags),
                status=str(mv.status),
            )
            for mv in found
        ]
        return sorted(summaries, key=lambda summary: int(summary.version), reverse=True)

    def task_of(self, version: str, tags: Mapping[str, str]) -> Task:
        """The version's task (kind and classes): from its tag, else from its schema.

        Versions registered before the task was tagged have only the schema.
        """
        if lineage.TASK in tags:
            return Task.from_record(tags[lineage.TASK])
        return self.schema_of(version).task

    def comparison_schema(self, champion: ModelVersion, schema: DatasetSchema) -> DatasetSchema:
        """The schema ``champion`` scores a snapshot of ``schema`` from: ``schema``, or the champion's own.

        ``schema`` itself when it keeps the champion's contract; else the champion's own, to which ``schema`` may
        only add features.

        Raises:
            RegistryError: ``schema`` removes or retypes a feature of the champion's, or changes the target.
        """
        if same_contract(champion.tags, schema):
            return schema
        own = self.schema_of(str(champion.version))
        problem = evolution_problem(own, schema)
        if problem is not None:
            raise RegistryError(f"champion v{champion.version} of model {self.model_name!r}: {problem}")
        return own

    def schema_of(self, version: str) -> DatasetSchema:
        """The schema the version was trained on (its model directory's ``schema.json``, read alone)."""
        self.get_version(version)
        location = self._client.get_model_version_download_uri(self.model_name, str(version))
        with tempfile.TemporaryDirectory(prefix="driftloop-schema-") as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{location.rstrip('/')}/{EXTRA_FILES_DIR}/{lineage.SCHEMA_FILE}",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
                text = Path(local).read_text()
            except (MlflowException, OSError):  # another layout: find it in the whole model directory
                model_dir = self.download_model_dir(version, Path(tmp) / "model")
                text = locate_model_file(model_dir, lineage.SCHEMA_FILE).read_text()
        return DatasetSchema.model_validate_json(text)

    def download_model_dir(self, version: str, dst: Path) -> Path:
        """Download the version's MLflow model directory into ``dst`` and return its path.

        It holds ``model.onnx`` and ``MLmodel`` at the top and the logged extra files (``selfcheck.json``)
        under ``extra_files/``; ``locate_model_file`` finds either.
        """
        self.get_version(version)
        dst.mkdir(parents=True, exist_ok=True)
        # Not "models:/name/version": MLflow resolves that through the process-global registry URI,
        # whatever registry_uri is passed. The version's download URI comes from this client's store.
        location = self._client.get_model_version_download_uri(self.model_name, str(version))
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(dst), tracking_uri=self.tracking_uri
        )
        return Path(local)

    def onnx_bytes(self, version: str) -> bytes:
        """The version's serialized ONNX graph, self-contained.

        Raises:
            RegistryError: The version has no ``model.onnx``, or it keeps weights in external data files.
        """
        with tempfile.TemporaryDirectory(prefix="driftloop-model-") as tmp:
            model_dir = self.download_model_dir(version, Path(tmp))
            path = model_dir / lineage.ONNX_FILE
            if not path.is_file():
                raise RegistryError(
                    f"version {version} of {self.model_name!r} has no {lineage.ONNX_FILE}: is it an ONNX-flavour model?"
                )
            data = path.read_bytes()
        graph = load_model_from_string(data).graph
        if any(uses_external_data(tensor) for tensor in graph.initializer):
            raise RegistryError(
                f"version {version} of {self.model_name!r} keeps its ONNX weights in external data files, so "
                f"{lineage.ONNX_FILE} alone is incomplete; log it with save_as_external_data=False"
            )
        return data
