"""Prep tasks: read and validate a snapshot, split it (cached on the content hash)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact

from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import Split, content_hash, split_holdout
from driftloop.core.validation import find_problems
from driftloop.errors import DatasetValidationError
from driftloop.io.datasets import load_schema, read_snapshot


@dataclass(frozen=True)
class Snapshot:
    """A validated data snapshot and its identity."""

    path: Path
    frame: pd.DataFrame
    schema: DatasetSchema
    content_hash: str


@task(name="load-snapshot", timeout_seconds=600)
def load_snapshot(data_path: Path, schema_path: Path) -> Snapshot:
    """Read and validate; a snapshot that breaks its schema stops here with every problem listed."""
    schema = load_schema(schema_path)
    frame = read_snapshot(data_path)
    problems = find_problems(frame, schema)
    if problems:
        listing = "\n".join(f"- {p}" for p in problems)
        create_markdown_artifact(
            key="snapshot-rejected",
            markdown=f"# Snapshot rejected: nothing was trained or registered\n\n`{data_path}` "
            f"against schema `{schema.name}` ({schema_path}):\n\n{listing}\n",
            description=f"{len(problems)} schema problem(s) in {data_path.name}",
        )
        raise DatasetValidationError(str(data_path), problems)
    return Snapshot(path=data_path, frame=frame, schema=schema, content_hash=content_hash(frame, schema))


def _split_cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    snapshot: Snapshot = parameters["snapshot"]
    return (
        f"split-{snapshot.content_hash}-{snapshot.schema.fingerprint()}-{parameters['fraction']}-{parameters['seed']}"
    )


@task(
    name="split-snapshot",
    cache_key_fn=_split_cache_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
)
def split_snapshot(snapshot: Snapshot, fraction: float, seed: int) -> Split:
    """Seeded, stratified train/holdout split; cached on the content hash, so a re-run reuses it."""
    return split_holdout(snapshot.frame, snapshot.schema, fraction=fraction, seed=seed)
