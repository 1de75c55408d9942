"""Training snapshots kept in the MLflow artifact store, addressed by their content hash.

A version's training data must outlive the file it came from: a retrain on another machine, or after the file
moved, reads it from here. Each distinct snapshot is stored once, as one run of the ``driftloop-snapshots``
experiment tagged with its content hash (``snapshot.parquet`` and ``schema.json``); training the same data again
reuses it. Reading one back checks the hash, so what a retrain trains on is exactly what the champion was trained on.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import mlflow.artifacts
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, RunStatus

from driftloop.core import lineage
from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import content_hash
from driftloop.errors import DatasetError
from driftloop.io.tracking import ensure_experiment

SNAPSHOT_EXPERIMENT = "driftloop-snapshots"
SNAPSHOT_FILE = "snapshot.parquet"
_DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset digest


def store_snapshot(client: MlflowClient, frame: pd.DataFrame, schema: DatasetSchema, data_hash: str,
                   artifact_root: Path | None) -> str:  # fmt: skip
    """The ``runs:/`` URI of the snapshot with this content hash, uploading it the first time.

    Only the schema's columns are kept (features, then the target), in schema order.
    """
    experiment_id = ensure_experiment(client, SNAPSHOT_EXPERIMENT, artifact_root)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{lineage.DATA_HASH}` = '{data_hash}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if found:
        return f"runs:/{found[0].info.run_id}/{SNAPSHOT_FILE}"
    tags = {lineage.DATA_HASH: data_hash, lineage.SCHEMA_NAME: schema.name, lineage.DATA_ROWS: str(len(frame))}
    run_id = client.create_run(experiment_id, run_name=f"snapshot-{data_hash[:12]}", tags=tags).info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="driftloop-snapshot-") as tmp:
            path = Path(tmp) / SNAPSHOT_FILE
            # Straight from the frame's columns: selecting them first copied the whole snapshot (a third of this).
            columns = [*schema.feature_names, schema.target.name]
            pq.write_table(pa.Table.from_pandas(frame, columns=columns, preserve_index=False), path)
            schema_path = Path(tmp) / lineage.SCHEMA_FILE
            schema_path.write_text(schema.model_dump_json(indent=2))
            client.log_artifact(run_id, str(path))
            client.log_artifact(run_id, str(schema_path))
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return f"runs:/{run_id}/{SNAPSHOT_FILE}"


def fetch_snapshot(tracking_uri: str, uri: str, destination: Path, schema: DatasetSchema, data_hash: str) -> Path:
    """Download a stored snapshot into ``destination`` and check that its content hash is ``data_hash``.

    Raises:
        DatasetError: it cannot be downloaded, or its content is not what the hash says.
    """
    destination.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(destination), tracking_uri=tracking_uri))
    except Exception as error:  # MLflow raises several unrelated types for a missing run or artifact
        raise DatasetError(f"the stored training snapshot {uri} cannot be read: {error}") from error
    found = content_hash(pd.read_parquet(local), schema)
    if found != data_hash:
        raise DatasetError(
            f"the stored training snapshot {uri} has content hash {found[:12]}…, not {data_hash[:12]}… as recorded: "
            "it was changed after training, so it is not what the champion was trained on"
        )
    return local


def log_training_input(client: MlflowClient, run_id: str, schema: DatasetSchema, data_hash: str, uri: str,
                       rows: int, source: str) -> None:  # fmt: skip
    """Record the snapshot as the run's MLflow dataset input (the "Datasets used" of the run's page)."""
    artifact_uri = client.get_run(uri.removeprefix("runs:/").split("/", 1)[0]).info.artifact_uri
    dataset = Dataset(
        name=schema.name,
        digest=data_hash[:_DIGEST_CHARS],
        source_type=urlparse(artifact_uri).scheme or "local",
        source=json.dumps({"uri": f"{artifact_uri}/{SNAPSHOT_FILE}", "original": source}),
        schema=json.dumps({"features": schema.feature_names, "target": schema.target.name}),
        profile=json.dumps({"num_rows": rows, "sha256": data_hash}),
    )
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])
