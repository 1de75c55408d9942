"""Prep tasks: read and validate a snapshot, split it (cached on the content hash)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import SecretStr

from driftloop.core.categories import learn_categories
from driftloop.core.features import with_canonical_target, with_default_index
from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import Split, content_hash, split_holdout
from driftloop.core.validation import find_problems
from driftloop.errors import DatasetValidationError
from driftloop.io import tracking
from driftloop.io.datasets import Source, describe_source, load_schema, read_source, record_source, source_from_text
from driftloop.io.snapshots import log_training_input, store_snapshot
from driftloop.settings import secret_text
from tasks.policies import mlflow_task
from tasks.progress import progress

__all__ = [
    "Snapshot",
    "describe_source",
    "load_snapshot",
    "read_schema",
    "record_source",
    "source_from_text",
    "split_snapshot",
    "store_training_snapshot",
]


@dataclass(frozen=True)
class Snapshot:
    """A validated data snapshot and its identity.

    Attributes:
        source: Where it was read from: a file, or a database query (the base file, for a retrain).
        frame: The rows: the base file's first, then any recent labelled rows (index 0..n-1).
        schema: The schema they were validated against, its categorical lists as the snapshot sets them
            (``core.categories.learn_categories``): what the model is trained on and stored with.
        content_hash: The identity of all the rows (``core.snapshot.content_hash``).
        base_rows: How many of the rows came from the base file; the rest are recent labelled rows.
        ignored_columns: Columns of the source the schema does not name: not trained on, not in the hash.
    """

    source: Source
    frame: pd.DataFrame
    schema: DatasetSchema
    content_hash: str
    base_rows: int
    ignored_columns: tuple[str, ...] = ()


def read_schema(schema_path: Path) -> DatasetSchema:
    """The schema file, parsed and checked (a plain function: it is read before any work starts)."""
    return load_schema(schema_path)


@task(name="load-snapshot", timeout_seconds=600)
def load_snapshot(
    data: Source, schema_path: Path, recent_path: Path | None = None, password: SecretStr | None = None
) -> Snapshot:
    """Read and validate; a snapshot that breaks its schema stops here with every problem listed.

    ``recent_path`` (a retrain's recent labelled rows) is validated the same way and appended to the base rows.
    ``password`` is a database source's (``DRIFTLOOP_SQL_PASSWORD``).
    """
    declared = load_schema(schema_path)
    frames = [_validated(data, declared, schema_path, password=password)]
    if recent_path is not None:
        frames.append(_validated(recent_path, declared, schema_path, part=True))
    frames = [with_canonical_target(part, declared) for part in frames]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else with_default_index(frames[0])
    schema = learn_categories(declared, frame)
    digest = content_hash(frame, schema)
    progress("snapshot: %s rows × %s columns read, validated and hashed (%s)", f"{len(frame):,}", len(frame.columns),
             digest[:12])  # fmt: skip
    return Snapshot(
        source=data,
        frame=frame,
        schema=schema,
        content_hash=digest,
        base_rows=len(frames[0]),
        ignored_columns=tuple(dict.fromkeys(c for part in frames for c in declared.unused_columns(part.columns))),
    )


def _validated(
    source: Source,
    schema: DatasetSchema,
    schema_path: Path,
    part: bool = False,
    password: SecretStr | None = None,
) -> pd.DataFrame:
    frame = read_source(source, secret_text(password))
    where = describe_source(source)
    problems = find_problems(frame, schema, 1 if part else None, part=part)
    if problems:
        listing = "\n".join(f"- {p}" for p in problems)
        create_markdown_artifact(
            key="snapshot-rejected",
            markdown=f"# Snapshot rejected: nothing was trained or registered\n\n`{where}` "
            f"against schema `{schema.name}` ({schema_path}):\n\n{listing}\n",
            description=f"{len(problems)} schema problem(s) in {where}"[:2000],
        )
        raise DatasetValidationError(where, problems)
    return frame


def _split_cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    snapshot: Snapshot = parameters["snapshot"]
    features = parameters.get("features")
    placed_by = "all" if features is None else hashlib.sha256("\0".join(features).encode()).hexdigest()[:16]
    return (
        f"split-{snapshot.content_hash}-{snapshot.schema.fingerprint()}-{parameters['fraction']}-{parameters['seed']}"
        f"-{placed_by}"
    )


@task(
    name="split-snapshot",
    cache_key_fn=_split_cache_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
)
def split_snapshot(snapshot: Snapshot, fraction: float, seed: int, features: tuple[str, ...] | None = None) -> Split:
    """Seeded, stratified train/holdout split on ``features`` (default: all); cached on the content hash."""
    split = split_holdout(snapshot.frame, snapshot.schema, fraction=fraction, seed=seed, features=features)
    progress("split: %s training rows, %s holdout rows", f"{len(split.train):,}", f"{len(split.holdout):,}")
    return split


# No timeout: the flow runs it on a thread beside the fit, where Prefect could not interrupt it (it warns so).
@mlflow_task("store-training-snapshot")
def store_training_snapshot(
    tracking_uri: str, artifact_root: Path | None, run_id: str, snapshot: Snapshot, source: str
) -> str:
    """Keep the snapshot in the artifact store under its content hash (once) and log it as the run's input.

    Returns:
        Its ``runs:/`` URI, which a retrain reads back (and checks against the hash) on any machine.
    """
    client = tracking.use_tracking_uri(tracking_uri)
    uri = store_snapshot(client, snapshot.frame, snapshot.schema, snapshot.content_hash, artifact_root)
    log_training_input(client, run_id, snapshot.schema, snapshot.content_hash, uri, len(snapshot.frame), source)
    return uri
