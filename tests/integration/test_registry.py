"""ModelRegistry against a real MLflow SQLite store with real ONNX models logged in tmp paths."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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
from driftloop.core.history import AliasMove, ChampionState, Pin
from driftloop.errors import ChampionMoved, ChampionPinned, PromotionRefused, RegistryError
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


def _log_runs(registry: ModelRegistry) -> list[mlflow.entities.Run]:
    """The history log's runs of this model, by seq."""
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    experiment = client.get_experiment_by_name(lineage.HISTORY_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{lineage.HISTORY_MODEL}` = '{registry.model_name}'"
    )
    return sorted(runs, key=lambda run: int(run.data.tags[lineage.HISTORY_SEQ]))


def _state(registry: ModelRegistry) -> tuple[str | None, int, dict[str, str], list[str]]:
    champion = registry.champion()
    model = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri).get_registered_model(
        registry.model_name
    )
    runs = [run.info.run_id for run in _log_runs(registry)]
    return (str(champion.version) if champion else None, len(registry.history()), dict(model.tags), runs)


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


def test_history_lives_in_runs_and_one_state_tag(store: Store, registry: ModelRegistry) -> None:
    first = registry.promote("1", "first model", "alice@host")
    second = registry.promote("2", "gate: roc_auc +0.01", "flow-run/abc")

    client = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    model = client.get_registered_model(registry.model_name)
    assert set(model.tags) == {lineage.STATE}
    runs = _log_runs(registry)
    assert [run.info.run_name for run in runs] == [
        f"{registry.model_name}: none → v1 (promote)",
        f"{registry.model_name}: v1 → v2 (promote)",
    ]
    tags = runs[1].data.tags
    assert tags[lineage.HISTORY_MODEL] == registry.model_name
    assert (tags[lineage.HISTORY_SEQ], tags[lineage.HISTORY_ACTION]) == ("2", "promote")
    assert (tags[lineage.HISTORY_FROM], tags[lineage.HISTORY_TO]) == ("1", "2")
    assert (tags[lineage.HISTORY_ACTOR], tags[lineage.HISTORY_REASON]) == ("flow-run/abc", "gate: roc_auc +0.01")
    assert tags[lineage.HISTORY_AT] == second.at.isoformat(timespec="microseconds")
    assert runs[0].data.tags[lineage.HISTORY_PREV] == ""
    assert tags[lineage.HISTORY_PREV] == runs[0].data.tags[lineage.HISTORY_HASH]
    entry = json.loads(tags[lineage.HISTORY_ENTRY])
    assert {**json.loads(second.to_json()), "seq": 2, "prev": tags[lineage.HISTORY_PREV]} == entry
    assert all(run.info.status == "FINISHED" for run in runs)
    assert client.list_artifacts(runs[0].info.run_id) == []

    state = ChampionState.from_json(model.tags[lineage.STATE])
    assert state == ChampionState(champion="2", pinned=None, head=tags[lineage.HISTORY_HASH], entries=2)
    report = registry.history_report()
    assert (report.moves, report.problems) == ((first, second), ())

    experiment = client.get_experiment_by_name(lineage.HISTORY_EXPERIMENT)
    assert experiment is not None
    assert experiment.artifact_location == (Path(store.uri.removeprefix("sqlite:///")).parent / "mlartifacts"
                                            / lineage.HISTORY_EXPERIMENT).as_uri()  # fmt: skip


def test_malformed_history_is_skipped_with_a_warning(registry: ModelRegistry) -> None:
    """A junk legacy tag and a corrupted log entry: both named in a warning; history and rollback still work."""
    for version in ("1", "2"):
        registry.promote(version, f"promote v{version}", "alice@host")
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    client.set_registered_model_tag(registry.model_name, lineage.HISTORY_PREFIX + "manual", "hello")
    first = _log_runs(registry)[0]
    client.set_tag(first.info.run_id, lineage.HISTORY_ENTRY, "{not json")

    report = registry.history_report()
    assert [(m.action, m.to_version) for m in report.moves] == [("promote", "2")]
    assert registry.history() == list(report.moves)
    assert len(report.problems) == 2
    assert report.problems[0].startswith(
        f"registered-model tag 'driftloop.history.manual' of '{registry.model_name}' is not a driftloop history entry"
    )
    assert report.problems[1].startswith(f"history entry seq 1 of '{registry.model_name}' is malformed (not JSON")

    # Only the valid entries count: the promote to v1 is gone, so there is no earlier champion.
    with pytest.raises(RegistryError, match="no previous champion to roll back to"):
        registry.rollback("v2 is bad", "bob@host")
    registry.set_version_tags("3", {lineage.PARITY: lineage.PASSED})
    registry.promote("3", "third", "alice@host")
    back = registry.rollback("v3 is bad", "bob@host")
    assert (back.from_version, back.to_version) == ("3", "2")
    assert len(registry.history_report().problems) == 2  # new entries chain on; nothing new is reported


def test_legacy_tags_are_read_before_the_log(registry: ModelRegistry) -> None:
    """Tags written by older driftloop versions still count; new moves go to the log only."""
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    old = AliasMove(datetime(2026, 1, 1, tzinfo=UTC), events.CHAMPION, "promote", None, "1", "legacy", "old@host")
    key = lineage.HISTORY_PREFIX + "20260101T000000.000000Z-abcdef"
    client.set_registered_model_tag(registry.model_name, key, old.to_json())
    client.set_registered_model_alias(registry.model_name, events.CHAMPION, "1")

    move = registry.promote("2", "new", "alice@host")
    assert registry.history() == [old, move]
    assert registry.history_report().problems == ()
    tags = client.get_registered_model(registry.model_name).tags
    assert sorted(tags) == [key, lineage.STATE]
    assert registry.rollback("back", "bob@host").to_version == "1"


def test_pin_refuses_automatic_promotions_and_follows_a_person(registry: ModelRegistry) -> None:
    registry.promote("1", "first", "flow-run/a", automatic=True)
    registry.promote("2", "second", "flow-run/b", automatic=True)
    written = registry.pin("1", "holiday freeze", "alice@host")
    assert [(m.action, m.from_version, m.to_version) for m in written] == [("promote", "2", "1"), ("pin", "1", "1")]
    pin = registry.pinned()
    assert pin is not None
    assert (pin.version, pin.actor, pin.reason) == ("1", "alice@host", "holiday freeze")
    state = ChampionState.from_json(
        MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
        .get_registered_model(registry.model_name)
        .tags[lineage.STATE]
    )
    assert (state.champion, state.pinned) == ("1", pin)

    before = _state(registry)
    message = (
        r"champion pinned by alice@host at v1 \(holiday freeze\): automatic promotions are refused until "
        r"`driftloop unpin`"
    )
    with pytest.raises(ChampionPinned, match=message) as refused:
        registry.promote("2", "gate passed", "flow-run/c", expected_champion="1", automatic=True)
    assert refused.value.pinned_by == "alice@host at v1 (holiday freeze)"
    assert _state(registry) == before

    # A person may still move it; the pin follows, and the entry says so.
    by_hand = registry.promote("2", "hotfix", "bob@host")
    assert by_hand.reason == "hotfix (the pin by alice@host moves to v2)"
    assert registry.pinned() == Pin("2", "alice@host", "holiday freeze", pin.at)
    back = registry.rollback("hotfix was worse", "bob@host")
    assert back.to_version == "1"
    assert registry.pinned() == Pin("1", "alice@host", "holiday freeze", pin.at)
    with pytest.raises(ChampionPinned):
        registry.promote("2", "gate passed", "flow-run/d", automatic=True)

    unpinned = registry.unpin("freeze over", "alice@host")
    assert (unpinned.action, unpinned.to_version) == ("unpin", "1")
    assert registry.pinned() is None
    registry.promote("2", "gate passed", "flow-run/e", expected_champion="1", automatic=True)
    with pytest.raises(RegistryError, match="is not pinned: nothing to unpin"):
        registry.unpin("again", "alice@host")

    history = registry.history_report()
    assert history.problems == ()
    assert [m.action for m in history.moves] == [
        "promote", "promote", "promote", "pin", "promote", "rollback", "unpin", "promote"
    ]  # fmt: skip
    # Pin entries do not count as champions for a rollback: back from v2 goes to v1.
    assert registry.rollback("again", "bob@host").to_version == "1"


def test_pin_refusals_leave_the_registry_unchanged(registry: ModelRegistry) -> None:
    registry.promote("1", "first", "alice@host")
    before = _state(registry)
    with pytest.raises(PromotionRefused, match="driftloop.parity=failed"):
        registry.pin("3", "freeze", "alice@host")
    with pytest.raises(PromotionRefused, match="a reason is required to pin the champion"):
        registry.pin("1", " ", "alice@host")
    with pytest.raises(RegistryError, match="not pinned"):
        registry.unpin("nothing", "alice@host")
    assert _state(registry) == before
    # Pinning the champion itself writes the pin only.
    assert [m.action for m in registry.pin("1", "freeze", "alice@host")] == ["pin"]


@pytest.mark.parametrize(("expected", "current"), [("1", "2"), (None, "2"), ("2", None)])
def test_compare_and_swap_refuses_when_the_champion_moved(
    registry: ModelRegistry, expected: str | None, current: str | None
) -> None:
    if current is not None:
        registry.promote("1", "first", "alice@host")
        registry.promote(current, "by hand", "alice@host")
    registry.set_version_tags("3", {lineage.PARITY: lineage.PASSED})
    before = _state(registry)
    with pytest.raises(ChampionMoved) as moved:
        registry.promote("3", "gate passed", "flow-run/x", expected_champion=expected, automatic=True)
    assert (moved.value.expected, moved.value.current) == (expected, current)
    assert "gate it again against" in str(moved.value)
    assert _state(registry) == before


def test_compare_and_swap_moves_when_the_champion_is_the_expected_one(registry: ModelRegistry) -> None:
    first = registry.promote("1", "first", "flow-run/a", expected_champion=None, automatic=True)
    second = registry.promote("2", "better", "flow-run/b", expected_champion="1", automatic=True)
    assert (first.from_version, second.from_version, second.to_version) == (None, "1", "2")
    # A person's command compares nothing.
    assert registry.promote("1", "by hand", "alice@host").from_version == "2"


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
    registry.pin("1", "freeze", "alice@host")
    registry.history_report()
    registry.onnx_bytes("1")
    assert Path.cwd() == store.cwd
    assert list(store.cwd.iterdir()) == []
    # No artifacts are logged for the history, so not even its artifact location exists.
    assert not (Path(store.uri.removeprefix("sqlite:///")).parent / "mlartifacts").exists()
