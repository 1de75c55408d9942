"""ModelRegistry against a real MLflow SQLite store with real ONNX models logged in tmp paths."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import mlflow
import mlflow.onnx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mlflow import MlflowClient
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from driftloop import events
from driftloop.core import lineage
from driftloop.errors import PromotionRefused, RegistryError
from driftloop.io.registry import CHAMPION_SINCE, RETIRED_AT, ModelRegistry, locate_model_file

pytestmark = pytest.mark.integration

SELFCHECK = {"records": [{"a": 1.0}], "labels": [1], "probabilities": [[0.2, 0.8]], "tolerance": 1e-5}


@dataclass(frozen=True)
class Store:
    uri: str
    cwd: Path
    model_uri: str
    external_data_model_uri: str
    run_id: str
    onnx_bytes: bytes
    features: np.ndarray
    probabilities: np.ndarray


def _matmul_model() -> onnx.ModelProto:
    """y = x @ w with w an initializer (skl2onnx's linear models keep weights in attributes instead)."""
    weights = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One SQLite store with a run holding two tiny ONNX models; the working directory stays empty."""
    root = tmp_path_factory.mktemp("registry")
    cwd = root / "cwd"
    cwd.mkdir()
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("registry-test", artifact_location=str(root / "artifacts"))

    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    clf = LogisticRegression().fit(features, labels)
    onx = to_onnx(clf, features[:1], options={"zipmap": False})
    selfcheck = root / lineage.SELFCHECK_FILE
    selfcheck.write_text(json.dumps(SELFCHECK))

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # restored on exit; set_tracking_uri below overwrites it
        mlflow.set_tracking_uri(uri)
        try:
            with mlflow.start_run(experiment_id=experiment_id) as run:
                info = mlflow.onnx.log_model(
                    onx, name="model", extra_files=[str(selfcheck)], save_as_external_data=False
                )
                # size_threshold=0 (passed on to onnx.save_model) moves every initializer to an external file.
                external = mlflow.onnx.log_model(_matmul_model(), name="external", size_threshold=0)
        finally:
            mlflow.set_tracking_uri(None)
        yield Store(
            uri=uri,
            cwd=cwd,
            model_uri=info.model_uri,
            external_data_model_uri=external.model_uri,
            run_id=run.info.run_id,
            onnx_bytes=onx.SerializeToString(),
            features=features,
            probabilities=clf.predict_proba(features),
        )


def _registry(store: Store, versions: int = 3) -> ModelRegistry:
    """A fresh registered model: parity passed on every version but the third."""
    registry = ModelRegistry(f"churn-{uuid.uuid4().hex[:8]}", store.uri)
    for number in range(1, versions + 1):
        parity = lineage.FAILED if number == 3 else lineage.PASSED
        registry.register(store.model_uri, store.run_id, {lineage.PARITY: parity}, description=f"v{number}")
    return registry


@pytest.fixture
def registry(store: Store) -> ModelRegistry:
    return _registry(store)


def _state(registry: ModelRegistry) -> tuple[str | None, int, dict[str, str]]:
    champion = registry.champion()
    model = MlflowClient(tracking_uri=registry.tracking_uri).get_registered_model(registry.model_name)
    return (str(champion.version) if champion else None, len(registry.history()), dict(model.tags))


def test_unregistered_model_is_empty(store: Store) -> None:
    registry = ModelRegistry("never-registered", store.uri)
    assert registry.champion() is None
    assert registry.history() == []
    assert registry.versions() == []
    with pytest.raises(RegistryError, match=r"'never-registered' has no version '1' \(existing versions: none\)"):
        registry.get_version("1")


def test_model_name_is_validated(store: Store) -> None:
    with pytest.raises(RegistryError, match="may only contain"):
        ModelRegistry("churn' OR name='x", store.uri)


def test_register_lists_versions_newest_first(store: Store, registry: ModelRegistry) -> None:
    summaries = registry.versions()
    assert [s.version for s in summaries] == ["3", "2", "1"]
    assert [s.tags[lineage.PARITY] for s in summaries] == ["failed", "passed", "passed"]
    assert {s.status for s in summaries} == {"READY"}
    assert {s.run_id for s in summaries} == {store.run_id}
    assert all(s.created_at.tzinfo == UTC for s in summaries)
    assert all(s.aliases == () for s in summaries)
    assert registry.champion() is None
    assert registry.get_version("2").description == "v2"
    with pytest.raises(RegistryError, match=r"has no version '42' \(existing versions: 3, 2, 1\)"):
        registry.get_version("42")


def test_promote_moves_alias_and_records_history(registry: ModelRegistry) -> None:
    first = registry.promote("1", "first model", "alice@host")
    second = registry.promote("2", "gate: roc_auc +0.01", "flow-run/abc")

    champion = registry.champion()
    assert champion is not None
    assert str(champion.version) == "2"
    assert (first.from_version, first.to_version, first.action) == (None, "1", "promote")
    assert (second.from_version, second.to_version, second.alias) == ("1", "2", events.CHAMPION)
    assert registry.history() == [first, second]

    by_version = {s.version: s for s in registry.versions()}
    assert by_version["2"].aliases == (events.CHAMPION,)
    assert by_version["1"].aliases == ()
    assert by_version["2"].tags[CHAMPION_SINCE] == second.at.isoformat(timespec="seconds")
    assert by_version["1"].tags[RETIRED_AT] == second.at.isoformat(timespec="seconds")
    assert RETIRED_AT not in by_version["2"].tags


@pytest.mark.parametrize(
    ("version", "reason", "match"),
    [
        ("3", "looks good", r"driftloop.parity=failed: only a version whose ONNX export passed"),
        ("99", "looks good", r"has no version '99' \(existing versions: 3, 2, 1\)"),
        ("2", "again", r"version 2 of '.*' is already champion"),
        ("1", "   ", r"a reason is required"),
        ("1", "back to v1", r"an actor .* is required"),
    ],
)
def test_refusals_leave_the_registry_unchanged(registry: ModelRegistry, version: str, reason: str, match: str) -> None:
    registry.promote("1", "first", "alice@host")
    registry.promote("2", "second", "alice@host")
    before = _state(registry)
    actor = "" if "actor" in match else "alice@host"
    with pytest.raises(PromotionRefused, match=match):
        registry.promote(version, reason, actor)
    assert _state(registry) == before
    assert before[:2] == ("2", 2)


def test_set_version_tags_then_rollback_twice(registry: ModelRegistry) -> None:
    registry.set_version_tags("3", {lineage.PARITY: lineage.PASSED, "note": "re-checked"})
    assert registry.get_version("3").tags["note"] == "re-checked"
    for version in ("1", "2", "3"):
        registry.promote(version, f"promote v{version}", "alice@host")

    back_one = registry.rollback("v3 latency regression", "bob@host")
    back_two = registry.rollback("v2 also bad", "bob@host")

    assert (back_one.action, back_one.from_version, back_one.to_version) == ("rollback", "3", "2")
    assert (back_two.action, back_two.from_version, back_two.to_version) == ("rollback", "2", "1")
    champion = registry.champion()
    assert champion is not None
    assert str(champion.version) == "1"
    history = registry.history()
    assert [(m.action, m.to_version) for m in history] == [
        ("promote", "1"),
        ("promote", "2"),
        ("promote", "3"),
        ("rollback", "2"),
        ("rollback", "1"),
    ]
    assert [m.reason for m in history[-2:]] == ["v3 latency regression", "v2 also bad"]
    assert [m.actor for m in history[-2:]] == ["bob@host", "bob@host"]

    before = _state(registry)
    with pytest.raises(RegistryError, match="no previous champion to roll back to"):
        registry.rollback("one more", "bob@host")
    assert _state(registry) == before


def test_rollback_refuses_a_target_whose_parity_is_not_passed(registry: ModelRegistry) -> None:
    registry.promote("1", "first", "alice@host")
    registry.promote("2", "second", "alice@host")
    registry.set_version_tags("1", {lineage.PARITY: lineage.FAILED})
    before = _state(registry)
    with pytest.raises(PromotionRefused, match="driftloop.parity=failed"):
        registry.rollback("v2 is bad", "bob@host")
    with pytest.raises(PromotionRefused, match="a reason is required"):
        registry.rollback("", "bob@host")
    assert _state(registry) == before


def test_history_refuses_a_foreign_tag(registry: ModelRegistry) -> None:
    registry.promote("1", "first", "alice@host")
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    client.set_registered_model_tag(registry.model_name, lineage.HISTORY_PREFIX + "manual", "hello")
    with pytest.raises(RegistryError, match=r"tag 'driftloop.history.manual' .* is not a driftloop history entry"):
        registry.history()


def test_onnx_bytes_round_trip(store: Store, registry: ModelRegistry, tmp_path: Path) -> None:
    data = registry.onnx_bytes("2")
    assert data == store.onnx_bytes
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    _, probabilities = session.run(None, {session.get_inputs()[0].name: store.features})
    np.testing.assert_allclose(probabilities, store.probabilities, atol=1e-5)

    model_dir = registry.download_model_dir("2", tmp_path / "dl")
    assert (model_dir / lineage.ONNX_FILE).read_bytes() == data
    assert json.loads(locate_model_file(model_dir, lineage.SELFCHECK_FILE).read_text()) == SELFCHECK
    with pytest.raises(RegistryError, match="has no nothing.txt"):
        locate_model_file(model_dir, "nothing.txt")


def test_onnx_bytes_refuses_external_weights(store: Store) -> None:
    registry = ModelRegistry(f"external-{uuid.uuid4().hex[:8]}", store.uri)
    version = registry.register(store.external_data_model_uri, store.run_id, {lineage.PARITY: lineage.PASSED})
    with pytest.raises(RegistryError, match="external data"):
        registry.onnx_bytes(str(version.version))


def test_nothing_lands_in_the_working_directory(store: Store, registry: ModelRegistry) -> None:
    registry.promote("1", "first", "alice@host")
    registry.onnx_bytes("1")
    assert Path.cwd() == store.cwd
    assert list(store.cwd.iterdir()) == []
