"""Registry tasks: register a version with its lineage, move the champion alias."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import task
from prefect.cache_policies import NO_CACHE

from driftloop.core.history import AliasMove
from driftloop.events import MODEL_PROMOTED
from driftloop.io.prefect_events import emit
from driftloop.io.registry import ModelRegistry

MLFLOW_RETRIES = {"retries": 2, "retry_delay_seconds": 3}


@task(name="register-model", cache_policy=NO_CACHE, timeout_seconds=600, **MLFLOW_RETRIES)
def register_model(
    model_name: str, tracking_uri: str, model_uri: str, run_id: str, tags: Mapping[str, str], description: str
) -> str:
    """A new model version for the ONNX model; returns its version number."""
    version = ModelRegistry(model_name, tracking_uri).register(model_uri, run_id, tags, description)
    return str(version.version)


@task(name="promote-model", cache_policy=NO_CACHE, timeout_seconds=300)
def promote_model(model_name: str, tracking_uri: str, version: str, reason: str, actor: str) -> AliasMove:
    """Move the champion alias (written to the history first). Not retried: a move is not idempotent."""
    move = ModelRegistry(model_name, tracking_uri).promote(version, reason=reason, actor=actor)
    emit(MODEL_PROMOTED, model_name, {"model": model_name, "from": move.from_version, "to": move.to_version,
                                      "reason": move.reason})  # fmt: skip
    return move
