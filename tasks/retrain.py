"""Retrain tasks: claim an attempt, read how the champion was trained, gather what is new, settle the episode."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from driftloop.core import lineage
from driftloop.core.change_point import describe, since_change
from driftloop.core.episodes import MANUAL, RetrainDecision, RetrainState, decide_retrain
from driftloop.core.features import with_canonical_target
from driftloop.core.recipe import SplitSpec, TrainingRecipe
from driftloop.core.retrain import SourceCheck
from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import content_hash
from driftloop.errors import ConfigError, DatasetError, RegistryError
from driftloop.events import DRIFT_WITHOUT_LABELS
from driftloop.io.datasets import describe_source, read_snapshot, read_source, source_from_text
from driftloop.io.episode_store import EpisodeStore
from driftloop.io.prediction_store import open_prediction_log
from driftloop.io.prefect_concurrency import promotion_lock
from driftloop.io.prefect_events import emit
from driftloop.io.registry import ModelRegistry, locate_model_file
from driftloop.io.snapshots import fetch_snapshot
from driftloop.settings import secret_text
from tasks.policies import mlflow_task


@mlflow_task("decide-retrain")
def claim_retrain(
    model_name: str, tracking_uri: str, version: str, episode: str, attempt: int, cooldown: float, flow_run_id: str
) -> RetrainDecision:
    """Decide, and when the answer is yes, claim the attempt at once so a duplicate event finds it taken."""
    store = EpisodeStore(model_name, tracking_uri)
    now = datetime.now(UTC)
    current = store.open_episode(version) if episode != MANUAL else None
    last = store.last_retrain_at()
    decision = decide_retrain(episode, attempt, current, last, now, cooldown)
    if decision.run:
        store.mark_retrain_started(now)
        if current is not None:
            running = replace(
                current, retrain="running", claimed_attempt=attempt, attempt_at=now, flow_run_id=flow_run_id
            )
            store.save(version, running)
    elif decision.state is not None and current is not None:
        store.save(version, replace(current, retrain=decision.state, claimed_attempt=attempt, attempt_at=last))
    return decision


@mlflow_task("settle-drift-episode")
def settle_episode(
    model_name: str, tracking_uri: str, version: str, episode: str, state: RetrainState, labels_seen: int
) -> None:
    """Record how the claimed attempt ended, if the episode is still the one it claimed."""
    if episode == MANUAL:
        return
    store = EpisodeStore(model_name, tracking_uri)
    current = store.open_episode(version)
    if current is not None and current.key == episode:
        store.save(version, replace(current, retrain=state, labels_seen=labels_seen))


@task(name="record-retrain-decision", cache_policy=NO_CACHE)
def record_retrain(markdown: str, verdict: str) -> None:
    create_markdown_artifact(key="retrain-decision", markdown=markdown, description=f"retrain: {verdict}")


@mlflow_task("record-retrain-on-version")
def record_retrain_on_version(
    model_name: str, tracking_uri: str, version: str, decision: str, actor: str, in_history: bool = False
) -> None:
    """The latest retrain decision about this version as a version tag, and (a skip) in the champion's history."""
    registry = ModelRegistry(model_name, tracking_uri)
    registry.set_version_tags(version, {lineage.RETRAIN_DECISION: decision[:4000]})
    if in_history:  # a promotion or a refusal is in the history already, through its own version
        with promotion_lock(model_name):
            registry.note(version, f"retrain {decision}", actor)


@task(name="alert-drift-without-labels", cache_policy=NO_CACHE)
def alert_without_labels(model_name: str, version: str, episode: str, reason: str) -> str | None:
    """The model drifts and there is nothing to retrain on: tell people (the alert automation posts it)."""
    payload = {"model": model_name, "version": version, "episode": episode, "reason": reason}
    return emit(DRIFT_WITHOUT_LABELS, model_name, payload)


@dataclass(frozen=True)
class ChampionRecipe:
    recipe: TrainingRecipe
    schema: DatasetSchema
    schema_path: Path


@mlflow_task("read-training-recipe")
def read_recipe(
    model_name: str, tracking_uri: str, version: str, default_split: SplitSpec, out_dir: Path
) -> ChampionRecipe:
    """How the drifted version was trained (estimator, parameters, gate, split, data) and its schema."""
    registry = ModelRegistry(model_name, tracking_uri)
    tags = registry.get_version(version).tags
    try:
        recipe = TrainingRecipe.from_tags(tags, default_split)
    except ValueError as error:
        raise RegistryError(f"v{version} of {model_name!r}: {error}") from error
    model_dir = registry.download_model_dir(version, out_dir / f"v{version}-model")
    schema_path = locate_model_file(model_dir, lineage.SCHEMA_FILE)
    return ChampionRecipe(recipe, DatasetSchema.model_validate_json(schema_path.read_text()), schema_path)


@dataclass(frozen=True)
class NewLabels:
    """Labelled predictions the champion was not trained on, as snapshot rows.

    Attributes:
        path: A Parquet file of the rows (features + target); None when there are none.
        rows: How many rows it holds.
        unusable: Labelled rows left out because their label is not a class of the schema.
        latest: The newest label time among them (ISO 8601), None when there are none.
        before_change: Rows left out because they were served before the truth changed (``core.change_point``).
        change: Where the truth changed and how the champion's errors moved there, a sentence; None: not looked
            for, or no change stood out.
    """

    path: Path | None
    rows: int
    unusable: int
    latest: str | None
    before_change: int = 0
    change: str | None = None

    @property
    def used_up(self) -> int:
        """The labels this retrain read, those served before a change included: the episode counts later ones as new."""
        return self.rows + self.before_change


@task(name="collect-new-labels", cache_policy=NO_CACHE, timeout_seconds=900)
def collect_new_labels(
    predictions_url: str,
    model_name: str,
    schema: DatasetSchema,
    labelled_after: str | None,
    out: Path,
    truth_changed: bool = False,
    min_rows: int = 100,
) -> NewLabels:
    """Every prediction of the model whose true class arrived after ``labelled_after`` (all of them if None).

    ``truth_changed``: only the rows served from the point where the model's errors got significantly worse, if
    one stands out with ``min_rows`` rows on each side; the rows before it carry the old truth.
    """
    store = open_prediction_log(predictions_url)
    try:
        after = datetime.fromisoformat(labelled_after) if labelled_after else None
        window = store.read_window(model_name, labelled=True, labelled_after=after)
    finally:
        store.close()
    task = schema.task
    usable = task.usable_labels(window["actual"].to_numpy(dtype=object))
    rows = window[usable].sort_values("ts", kind="stable")
    if rows.empty:
        return NewLabels(None, 0, int((~usable).sum()), None)
    latest = rows["labelled_at"].max().isoformat()  # every new label is used up, those before a change included
    before_change, change = 0, None
    if truth_changed:
        kept, point = since_change(task, rows["label"].to_numpy(dtype=object), rows["actual"].to_numpy(dtype=object),
                                   min_rows)  # fmt: skip
        if point is not None:
            since = rows["ts"].to_numpy()[kept][0]
            # "errors rose", not "the truth changed": features moved to where the champion errs read the same (trial 18)
            change = (
                f"the champion's errors rose from {pd.Timestamp(since).isoformat()}: "
                f"{describe(point, task.label_check_metric)}"
            )
            before_change, rows = int((~kept).sum()), rows[kept]
    recent = pd.DataFrame({name: rows.get(name) for name in schema.feature_names})
    for feature in schema.features:
        if not feature.is_categorical:
            recent[feature.name] = pd.to_numeric(recent[feature.name])
    actual = rows["actual"]
    recent[schema.target.name] = (actual if task.is_classifier else pd.to_numeric(actual)).to_numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    recent.to_parquet(out, index=False)
    return NewLabels(out, len(recent), int((~usable).sum()), latest, before_change, change)


@dataclass(frozen=True)
class SourceState:
    check: SourceCheck
    current_hash: str | None


@task(name="check-data-source", cache_policy=NO_CACHE, timeout_seconds=1800)
def check_source(recipe: TrainingRecipe, schema: DatasetSchema, password: SecretStr | None = None) -> SourceState:
    """Has the champion's data source changed since it was trained (by content hash)? None if unreadable here.

    A database source is queried again (with ``password``, ``DRIFTLOOP_SQL_PASSWORD``, when its URL has none).
    """
    if not recipe.source:
        return SourceState(SourceCheck(None, "no data source recorded"), None)
    try:
        source = source_from_text(recipe.source)
    except ConfigError as error:
        return SourceState(SourceCheck(None, f"the recorded source is not usable: {error}"), None)
    where = describe_source(source)
    if isinstance(source, Path) and not source.exists():
        return SourceState(SourceCheck(None, f"the source {where} is not readable here"), None)
    try:
        frame = read_source(source, secret_text(password))
        found = content_hash(with_canonical_target(frame, schema), schema)
    except (DatasetError, KeyError, ValueError) as error:
        return SourceState(SourceCheck(None, f"the source {where} cannot be hashed: {error}"), None)
    if found == recipe.source_hash:
        return SourceState(SourceCheck(False, f"the source {where} is unchanged"), found)
    recorded = (recipe.source_hash or "?")[:12]
    return SourceState(SourceCheck(True, f"{where}: content hash {recorded}… → {found[:12]}…"), found)


@mlflow_task("fetch-training-snapshot", timeout_seconds=1800)
def fetch_base(tracking_uri: str, recipe: TrainingRecipe, schema: DatasetSchema, out_dir: Path) -> Path:
    """The champion's training snapshot from the artifact store, checked against its content hash.

    Versions registered before snapshots were stored fall back to the file they were trained from, if it is
    still here with the same content.
    """
    if recipe.data_hash is None:
        raise DatasetError("the version records no data hash: its training data cannot be identified")
    if recipe.snapshot_uri:
        return fetch_snapshot(
            tracking_uri, recipe.snapshot_uri, out_dir / recipe.data_hash[:16], schema, recipe.data_hash
        )
    path = Path(recipe.source or "")
    if path.is_file() and content_hash(read_snapshot(path), schema) == recipe.data_hash:
        return path
    raise DatasetError(
        f"the version predates stored snapshots and its training file {recipe.source} is gone or changed: "
        "train it again with `driftloop train` to retrain it later"
    )
