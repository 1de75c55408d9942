"""A loaded, self-checked model: the ONNX session, its schema-bound request parser and its identity."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from driftloop.core import lineage
from driftloop.core.parity import compare_with_recording
from driftloop.core.task import Task
from driftloop.errors import DriftloopError, InputError, SelfCheckFailed
from driftloop.io.bundle import ModelBundle, ModelInfo
from driftloop.io.onnx_runtime import OnnxModel, Outputs
from driftloop.serving.inputs import FeatureBatch, FeatureParser


@dataclass(frozen=True)
class ServingModel:
    """``graph``: which of the bundle's files serves (``serving.onnx`` when the bundle has it), and its sha256.

    ``value_buckets``: a regressor's bucket edges for the histogram of its predictions (``/metrics``).
    """

    info: ModelInfo
    onnx: OnnxModel
    parser: FeatureParser
    task: Task
    loaded_at: float
    graph: str
    graph_sha256: str
    value_buckets: tuple[float, ...] = ()

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names by output index; empty for a regressor."""
        return self.task.classes

    def predict(self, batch: FeatureBatch) -> Outputs:
        batch = self.parser.for_model(batch)
        onnx = self.onnx
        if onnx.grouped:
            return onnx.run(onnx.grouped_feed(batch.numeric, batch.categorical))
        return onnx.run(batch.columns)


def load_model(bundle: ModelBundle, max_rows: int, unknown_categories: str) -> ServingModel:
    """Build the session and prove it: predict the stored sample and compare with the recorded outputs.

    Raises:
        SelfCheckFailed: the graph does not load, does not fit its schema, or disagrees with the recording.
    """
    # The grouped graph is the same model with two inputs instead of one per feature: half the time a row.
    # Once a bundle has it, it is what must pass (a broken one refuses the version rather than hide behind
    # model.onnx).
    if bundle.serving_onnx_bytes is None:
        graph, graph_bytes = lineage.ONNX_FILE, bundle.onnx_bytes
    else:
        graph, graph_bytes = lineage.SERVING_ONNX_FILE, bundle.serving_onnx_bytes
    try:
        onnx = OnnxModel.from_bytes(graph_bytes, bundle.schema, intra_op_num_threads=1)
    except DriftloopError as error:
        raise SelfCheckFailed(f"version {bundle.info.version} ({graph}) does not load: {error}") from None
    model = ServingModel(
        info=bundle.info,
        onnx=onnx,
        parser=FeatureParser(bundle.schema, max_rows=max_rows, unknown_categories=unknown_categories),  # type: ignore[arg-type]
        task=bundle.schema.task,
        loaded_at=time.time(),
        graph=graph,
        graph_sha256=hashlib.sha256(graph_bytes).hexdigest(),
        value_buckets=_value_buckets(bundle.selfcheck),
    )
    _self_check(model, bundle.selfcheck)
    return model


def _value_buckets(selfcheck: dict[str, object]) -> tuple[float, ...]:
    """A regressor's histogram edges: recorded at training (quantiles of its holdout predictions), else the sample's."""
    recorded = selfcheck.get("buckets") or selfcheck.get("values") or ()
    try:
        edges = sorted({float(edge) for edge in recorded})  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return ()
    return tuple(edge for edge in edges if np.isfinite(edge))


def _self_check(model: ServingModel, selfcheck: dict[str, object]) -> None:
    version = f"{model.info.version} ({model.graph})"
    try:
        records = selfcheck["records"]
    except KeyError as error:
        raise SelfCheckFailed(f"version {version}: the self-check sample is unreadable: {error!r}") from None
    # The sample is the server's own check, not a request: the request row limit (max_batch_rows) does not apply.
    rows = len(records) if isinstance(records, list) else 1
    parser = FeatureParser(model.parser.schema, max(rows, 1), model.parser.unknown_categories)
    try:
        labels, proba = model.predict(parser.from_records(records))
    except InputError as error:
        raise SelfCheckFailed(f"version {version}: the self-check sample is rejected: {error.message}") from None
    except Exception as error:  # onnxruntime raises its own types; any failure here means "not servable"
        raise SelfCheckFailed(f"version {version}: prediction failed on the self-check sample: {error}") from None
    try:
        report = compare_with_recording(selfcheck, labels, proba)
    except ValueError as error:
        raise SelfCheckFailed(f"version {version}: {error}") from None
    if not report.passed:
        raise SelfCheckFailed(f"version {version}: {report.mismatch()}")
