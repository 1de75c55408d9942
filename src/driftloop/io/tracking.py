"""MLflow tracking for a training run: the run itself, params, metrics, plots and the two logged models.

Everything goes through an explicit tracking URI and run id, never MLflow's CWD-relative default store.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema, TensorSpec
from sklearn.pipeline import Pipeline

from driftloop.core import lineage
from driftloop.core.features import onnx_feed
from driftloop.core.schema import DatasetSchema
from driftloop.io.onnx_runtime import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT

SKLEARN_MODEL_NAME = "sklearn-model"
ONNX_MODEL_NAME = "onnx-model"
SIGNATURE_ROWS = 1_000  # rows the sklearn model's signature is inferred from
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def use_tracking_uri(tracking_uri: str) -> MlflowClient:
    """Point MLflow's fluent API at ``tracking_uri`` and return a client for it.

    The process environment is left as it was. MLflow also writes the URIs into ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_REGISTRY_URI``, which ``Settings`` reads: every later ``Settings()`` in the process would silently use
    this store instead of its own home's (subprocesses get their store from ``Settings.env()``).
    """
    saved = {name: os.environ.get(name) for name in _URI_VARIABLES}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The experiment's id, creating it with an absolute artifact location when it is new.

    Args:
        client: A client on the target store.
        name: Experiment name.
        artifact_root: Where artifacts go for a local store; None lets a tracking server decide.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (artifact_root / name).as_uri() if artifact_root is not None else None
    return str(client.create_experiment(name, artifact_location=location))


def start_run(client: MlflowClient, experiment_id: str, run_name: str, tags: Mapping[str, str]) -> str:
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    return str(run.info.run_id)


def running_runs(client: MlflowClient, experiment_id: str) -> list[tuple[str, str | None]]:
    """(run id, the Prefect flow run it was opened by) of every run of the experiment still marked RUNNING."""
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    return [(str(run.info.run_id), run.data.tags.get(lineage.FLOW_RUN_ID)) for run in runs]


def end_run(client: MlflowClient, run_id: str, succeeded: bool) -> None:
    status = RunStatus.to_string(RunStatus.FINISHED if succeeded else RunStatus.FAILED)
    client.set_terminated(run_id, status=status)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], prefix: str = "") -> None:
    for key, value in metrics.items():
        client.log_metric(run_id, f"{prefix}{key}", float(value))


def set_run_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def log_files(client: MlflowClient, run_id: str, paths: list[Path], artifact_path: str) -> None:
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)


def log_text(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    client.log_text(run_id, text, artifact_file)


def _pinned(*distributions: str) -> list[str]:
    """The running environment's exact versions of ``distributions``, as a model's pip requirements.

    Without them MLflow infers the requirements by loading the model in subprocesses that record what it imports:
    15 of the 35 CPU seconds of a training run on the bundled data, for the same answer.
    """
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in distributions]


def log_sklearn_model(run_id: str, pipeline: Pipeline, example: pd.DataFrame) -> str:
    """Log the fitted pipeline (skops format) for inspection and reproduction; serving never loads it.

    skops refuses to load types it was not told to trust; the pipeline's own types are exactly those. The
    signature is inferred from the first ``SIGNATURE_ROWS`` rows of ``example``: it records column types, and
    inferring it from a 200,000-row holdout cost a full extra prediction pass.
    """
    import skops.io

    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    example = example.head(SIGNATURE_ROWS)
    outputs = pipeline.predict_proba(example) if hasattr(pipeline, "predict_proba") else pipeline.predict(example)
    signature = infer_signature(example, outputs)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            pipeline,
            name=SKLEARN_MODEL_NAME,
            signature=signature,
            input_example=example.head(3),
            skops_trusted_types=trusted,
            pip_requirements=_pinned("scikit-learn", "skops", "scipy", "numpy", "pandas"),
        )
    return str(info.model_uri)


def onnx_signature(schema: DatasetSchema) -> ModelSignature:
    """One ``(-1, 1)`` tensor per feature, so ``mlflow.pyfunc`` can score a plain DataFrame with the ONNX model."""
    inputs: list[ColSpec | TensorSpec] = [
        TensorSpec(np.dtype(object) if f.is_categorical else np.dtype(np.float32), (-1, 1), f.name)
        for f in schema.features
    ]
    task = schema.task
    outputs: list[ColSpec | TensorSpec] = (
        [
            TensorSpec(np.dtype(np.int64), (-1,), LABEL_OUTPUT),
            TensorSpec(np.dtype(np.float32), (-1, len(task.classes)), PROBABILITIES_OUTPUT),
        ]
        if task.is_classifier
        else [TensorSpec(np.dtype(np.float32), (-1, 1), PREDICTION_OUTPUT)]
    )
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def log_onnx_model(
    run_id: str,
    onnx_bytes: bytes,
    schema: DatasetSchema,
    example: pd.DataFrame,
    selfcheck: Mapping[str, Any],
    serving_onnx_bytes: bytes | None = None,
) -> str:
    """Log the ONNX model with its signature, input example and self-check sample; return its model URI.

    Args:
        run_id: The training run.
        onnx_bytes: The serialized ONNX graph.
        schema: The dataset schema (input names and types).
        example: A few rows as made by ``to_model_frame``.
        selfcheck: Sample inputs and the outputs recorded for them (see ``build_selfcheck``).
        serving_onnx_bytes: The same graph with grouped inputs (``onnx_export.grouped_onnx``), if any.

    The model directory then holds everything a server needs without MLflow or scikit-learn:
    ``model.onnx``, ``extra_files/schema.json``, ``extra_files/selfcheck.json`` and, when given,
    ``extra_files/serving.onnx``.
    """
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        selfcheck_path = Path(tmp) / lineage.SELFCHECK_FILE
        selfcheck_path.write_text(json.dumps(selfcheck))
        schema_path = Path(tmp) / lineage.SCHEMA_FILE
        schema_path.write_text(schema.model_dump_json(indent=2))
        extra_files = [str(selfcheck_path), str(schema_path)]
        if serving_onnx_bytes is not None:
            serving_path = Path(tmp) / lineage.SERVING_ONNX_FILE
            serving_path.write_bytes(serving_onnx_bytes)
            extra_files.append(str(serving_path))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(
                model,
                name=ONNX_MODEL_NAME,
                signature=onnx_signature(schema),
                input_example=onnx_feed(example.head(3), schema),
                extra_files=extra_files,
                onnx_execution_providers=["CPUExecutionProvider"],
                pip_requirements=_pinned("onnx", "onnxruntime", "numpy"),
                # One self-contained model.onnx: the server and the registry read the graph as a single file.
                save_as_external_data=False,
            )
    return str(info.model_uri)


def build_selfcheck(
    sample: pd.DataFrame,
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    tolerance: float,
    value_buckets: list[float] | None = None,
) -> dict[str, Any]:
    """Sample rows (as the model takes them) with the ONNX outputs recorded at registration.

    A classifier's outputs are ``labels`` and ``probabilities``; a regressor's (``probabilities`` None) are its
    predicted ``values``, passed as ``labels``, and ``value_buckets``, the edges of its predictions' histogram in
    ``/metrics``. A server loading this version predicts the sample and must
    reproduce these outputs within ``tolerance`` (``core.parity.compare_with_recording``).
    """
    # pandas-stubs reject other=None, which pandas takes (None where missing, on object dtype)
    records = sample.astype(object).where(sample.notna(), None).to_dict(orient="records")  # type: ignore[call-overload]
    if probabilities is None:
        return {
            "records": records,
            "values": [float(v) for v in labels],
            "tolerance": tolerance,
            "buckets": list(value_buckets or []),
        }
    return {
        "records": records,
        "labels": [int(v) for v in labels],
        "probabilities": [[float(p) for p in row] for row in probabilities],
        "tolerance": tolerance,
    }


def run_url(mlflow_ui: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(mlflow_ui: str, model_name: str, version: str) -> str:
    return f"{mlflow_ui}/#/models/{model_name}/versions/{version}"
