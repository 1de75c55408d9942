"""Loading a model bundle: which graph serves, and the self-check that guards the swap."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from driftloop import settings
from driftloop.core import lineage
from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.errors import InputError, SelfCheckFailed
from driftloop.io.bundle import ModelBundle, ModelInfo, read_bundle, write_model_info
from driftloop.io.onnx_export import export_onnx, grouped_onnx
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.tracking import build_selfcheck
from driftloop.serving.model import load_model

INFO = ModelInfo(name="churn", version="3")


class Graphs:
    """Two fitted churn models exported to ONNX, the self-check of the first, and rows to score."""

    def __init__(self) -> None:
        self.schema = DatasetSchema.model_validate(yaml.safe_load(settings.BUNDLED_SCHEMA.read_text(encoding="utf-8")))
        raw = pd.read_csv(settings.BUNDLED_DATA)
        train = raw.sample(800, random_state=0)
        frame, y = to_model_frame(train, self.schema), encode_target(train[self.schema.target.name], self.schema)
        self.linear = export_onnx(build_pipeline(self.schema).fit(frame, y), self.schema)
        self.forest = export_onnx(build_pipeline(self.schema, "random_forest").fit(frame, y), self.schema)
        self.rows = to_model_frame(raw.drop(train.index).head(50), self.schema)
        labels, proba = OnnxModel.from_bytes(self.linear, self.schema).predict(self.rows)
        self.selfcheck = build_selfcheck(self.rows.head(20), labels[:20], proba[:20], 1e-5)
        self.labels, self.proba = labels, proba


@pytest.fixture(scope="module")
def graphs() -> Graphs:
    return Graphs()


def write_bundle(directory: Path, graphs: Graphs, serving_onnx: bytes | None) -> ModelBundle:
    """A bundle in the image's layout; ``serving_onnx`` None is a version registered before it existed."""
    directory.mkdir()
    (directory / lineage.ONNX_FILE).write_bytes(graphs.linear)
    (directory / lineage.SCHEMA_FILE).write_text(graphs.schema.model_dump_json())
    (directory / lineage.SELFCHECK_FILE).write_text(json.dumps(graphs.selfcheck))
    if serving_onnx is not None:
        (directory / lineage.SERVING_ONNX_FILE).write_bytes(serving_onnx)
    write_model_info(directory, INFO)
    return read_bundle(directory)


def test_the_grouped_graph_serves_when_the_bundle_has_it(graphs: Graphs, tmp_path: Path) -> None:
    model = load_model(write_bundle(tmp_path / "b", graphs, grouped_onnx(graphs.linear)), 100, "error")

    assert model.graph == lineage.SERVING_ONNX_FILE
    assert model.graph_sha256 == hashlib.sha256(grouped_onnx(graphs.linear)).hexdigest()
    labels, proba = model.predict(model.parser.from_records(graphs.selfcheck["records"] * 2))
    np.testing.assert_array_equal(labels, np.tile(graphs.labels[:20], 2))
    np.testing.assert_array_equal(proba, np.tile(graphs.proba[:20], (2, 1)))


def test_a_bundle_without_it_serves_model_onnx_with_the_same_answers(graphs: Graphs, tmp_path: Path) -> None:
    grouped = load_model(write_bundle(tmp_path / "new", graphs, grouped_onnx(graphs.linear)), 100, "error")
    older = load_model(write_bundle(tmp_path / "old", graphs, None), 100, "error")

    assert older.graph == lineage.ONNX_FILE
    for record in graphs.selfcheck["records"]:  # one row at a time, as /predict sends them
        want = older.predict(older.parser.from_record(record))
        got = grouped.predict(grouped.parser.from_record(record))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_a_serving_graph_of_another_model_fails_the_self_check(graphs: Graphs, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", graphs, grouped_onnx(graphs.forest))
    with pytest.raises(SelfCheckFailed, match=r"version 3 \(serving.onnx\): probabilities differ from the recording"):
        load_model(bundle, 100, "error")


def test_a_serving_graph_that_does_not_load_is_refused_by_name(graphs: Graphs, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", graphs, b"not a graph")
    with pytest.raises(SelfCheckFailed, match=r"version 3 \(serving.onnx\) does not load: onnxruntime cannot load"):
        load_model(bundle, 100, "error")


def test_a_server_taking_fewer_rows_than_the_self_check_sample_still_checks_and_serves(
    graphs: Graphs, tmp_path: Path
) -> None:
    # The self-check is the server's own, not a request: DRIFTLOOP_MAX_BATCH_ROWS below the sample's 20 rows used
    # to refuse every version ("the batch has 20 rows; this server takes at most 5 rows per request").
    model = load_model(write_bundle(tmp_path / "b", graphs, grouped_onnx(graphs.linear)), 5, "error")

    assert model.parser.max_rows == 5  # requests still get the limit
    with pytest.raises(InputError, match="at most 5 rows"):
        model.parser.from_records(graphs.selfcheck["records"])
