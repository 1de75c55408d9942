"""A model bundle on disk: what a server needs to serve one model version, with no MLflow or scikit-learn.

Layout (an MLflow ONNX model directory, or the same files baked into an image)::

    model.onnx                     the graph (preprocessing included)
    extra_files/serving.onnx       the same graph with grouped inputs (optional: the server prefers it)
    extra_files/schema.json        the dataset schema the model was trained on
    extra_files/selfcheck.json     sample inputs and the outputs recorded at registration
    model_info.json                name, version, run, lineage (written when baked into an image)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from driftloop.core import lineage
from driftloop.core.schema import DatasetSchema
from driftloop.errors import BundleError

EXTRA_FILES_DIR = "extra_files"


@dataclass(frozen=True)
class ModelInfo:
    """Identity and lineage of the served version, as ``GET /model`` reports it."""

    name: str
    version: str
    alias: str | None = None
    run_id: str | None = None
    onnx_sha256: str | None = None
    data_hash: str | None = None
    trained_at: str | None = None
    source: str = "file"

    @classmethod
    def from_tags(
        cls, name: str, version: str, alias: str | None, run_id: str | None, tags: dict[str, str]
    ) -> ModelInfo:
        return cls(
            name=name,
            version=version,
            alias=alias,
            run_id=run_id,
            onnx_sha256=tags.get(lineage.ONNX_SHA256),
            data_hash=tags.get(lineage.DATA_HASH),
            trained_at=tags.get(lineage.TRAINED_AT),
            source="registry",
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelBundle:
    directory: Path
    onnx_bytes: bytes
    schema: DatasetSchema
    selfcheck: dict[str, Any]
    info: ModelInfo
    serving_onnx_bytes: bytes | None = None


def find_model_file(directory: Path, filename: str) -> Path:
    """``filename`` in a model directory: at its top, or among MLflow's logged extra files."""
    for candidate in (directory / filename, directory / EXTRA_FILES_DIR / filename):
        if candidate.is_file():
            return candidate
    raise BundleError(f"model directory {directory} has no {filename}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BundleError(f"cannot read {path}: {error}") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path} does not hold a JSON object")
    return value


def read_bundle(directory: Path, info: ModelInfo | None = None) -> ModelBundle:
    """Read a bundle; ``info`` defaults to the directory's ``model_info.json``."""
    if not directory.is_dir():
        raise BundleError(f"model directory {directory} does not exist")
    try:
        schema = DatasetSchema.model_validate(_read_json(find_model_file(directory, lineage.SCHEMA_FILE)))
    except ValueError as error:
        raise BundleError(f"invalid {lineage.SCHEMA_FILE} in {directory}: {error}") from None
    if info is None:
        info = ModelInfo(**_read_json(find_model_file(directory, lineage.MODEL_INFO_FILE)))
    try:
        serving_onnx: bytes | None = find_model_file(directory, lineage.SERVING_ONNX_FILE).read_bytes()
    except BundleError:
        serving_onnx = None  # registered before driftloop wrote it: the per-feature graph serves
    return ModelBundle(
        directory=directory,
        onnx_bytes=find_model_file(directory, lineage.ONNX_FILE).read_bytes(),
        schema=schema,
        selfcheck=_read_json(find_model_file(directory, lineage.SELFCHECK_FILE)),
        info=info,
        serving_onnx_bytes=serving_onnx,
    )


def write_model_info(directory: Path, info: ModelInfo) -> Path:
    path = directory / lineage.MODEL_INFO_FILE
    path.write_text(json.dumps(info.as_dict(), indent=2))
    return path
