"""A real registered version that fails the server's self-check: a copy of a good one with its recording altered."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from driftloop.core import lineage
from driftloop.io.registry import ModelRegistry
from driftloop.io.tracking import use_tracking_uri


def register_broken_copy(tracking_uri: str, model_name: str, version: str, workdir: Path) -> str:
    """Register ``version``'s ONNX graph again with a self-check sample it does not reproduce; the new version.

    A classifier's recorded probabilities are mirrored, a regressor's values moved: what a corrupted sample or a
    mislabelled upload looks like. Its tags are ``version``'s (parity passed), so only the server's self-check can
    catch it.
    """
    import onnx

    registry = ModelRegistry(model_name, tracking_uri)
    model_dir = registry.download_model_dir(version, workdir / f"{model_name}-v{version}")
    selfcheck_path = next(model_dir.rglob(lineage.SELFCHECK_FILE))
    selfcheck = json.loads(selfcheck_path.read_text())
    if "probabilities" in selfcheck:
        selfcheck["probabilities"] = [row[::-1] for row in selfcheck["probabilities"]]
    else:
        selfcheck["values"] = [value * 1.5 + 10.0 for value in selfcheck["values"]]
    selfcheck_path.write_text(json.dumps(selfcheck))
    use_tracking_uri(tracking_uri)  # not mlflow.set_tracking_uri: it leaves MLFLOW_TRACKING_URI set
    experiment = mlflow.get_experiment_by_name("driftloop")
    assert experiment is not None
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        info = mlflow.onnx.log_model(
            onnx.load(str(model_dir / lineage.ONNX_FILE)),
            name="broken",
            extra_files=[str(selfcheck_path), str(next(model_dir.rglob(lineage.SCHEMA_FILE)))],
            save_as_external_data=False,
        )
    broken = registry.register(info.model_uri, run.info.run_id, {**registry.get_version(version).tags})
    return str(broken.version)
