import pytest

from driftloop.core.gates import GatePolicy
from driftloop.core.recipe import SplitSpec, TrainingRecipe
from driftloop.core.retrain import SourceCheck, plan_retrain

UNCHANGED = SourceCheck(False, "the source data.csv is unchanged")
UNREADABLE = SourceCheck(None, "the source data.csv is not readable here")
CHANGED = SourceCheck(True, "data.csv: content hash aaaa… → bbbb…")


@pytest.mark.parametrize("source", [UNCHANGED, UNREADABLE])
def test_no_new_labels_and_no_new_source_skips_and_says_why(source: SourceCheck) -> None:
    plan = plan_retrain("4", 0, source)
    assert not plan.run
    assert plan.reason.startswith("no new labelled data since v4: retraining cannot help yet")
    assert source.note in plan.reason


def test_new_labels_retrain_on_the_stored_snapshot_and_must_improve_on_them() -> None:
    plan = plan_retrain("4", 250, UNCHANGED)
    assert (plan.run, plan.base, plan.new_labels, plan.improve_on) == (True, "snapshot", 250, "recent")
    assert plan.reason == "retraining on v4's training snapshot plus 250 new labelled rows"


def test_a_changed_source_is_retrained_on_even_without_labels() -> None:
    plan = plan_retrain("4", 0, CHANGED)
    assert (plan.run, plan.base, plan.improve_on) == (True, "source", "all")
    assert "the training data source changed since v4" in plan.reason
    with_labels = plan_retrain("4", 1, CHANGED)
    assert (with_labels.base, with_labels.improve_on) == ("source", "recent")
    assert with_labels.reason.endswith("plus 1 new labelled row")


def test_negative_label_counts_are_a_bug() -> None:
    with pytest.raises(ValueError, match="new_labels"):
        plan_retrain("4", -1, UNCHANGED)


def test_recipe_round_trips_through_tags() -> None:
    recipe = TrainingRecipe(
        estimator="random_forest",
        params={"n_estimators": 50, "max_depth": 4},
        gate=GatePolicy(floors={"roc_auc": 0.6, "f1": 0.2}, tolerance=0.01, confidence=0.9, min_segment_rows=80),
        split=SplitSpec(0.3, 7),
        snapshot_uri="runs:/abc/snapshot.parquet",
        data_hash="d" * 64,
        source="/data/churn.csv",
        source_hash="s" * 64,
        labels_through="2026-11-25T12:00:00+00:00",
        base_rows=7043,
    )
    back = TrainingRecipe.from_tags(recipe.to_tags(), SplitSpec(0.25, 42))
    assert back == recipe
    assert recipe.to_tags()["driftloop.base_rows"] == "7043"


def test_versions_from_before_the_recipe_get_defaults_and_their_file() -> None:
    tags = {"driftloop.estimator": "logistic_regression", "driftloop.data_path": "/old.csv", "driftloop.data_hash": "h"}
    recipe = TrainingRecipe.from_tags(tags, SplitSpec(0.25, 42))
    assert (recipe.estimator, dict(recipe.params), recipe.split) == ("logistic_regression", {}, SplitSpec(0.25, 42))
    assert (recipe.source, recipe.source_hash, recipe.snapshot_uri, recipe.labels_through) == (
        "/old.csv",
        "h",
        None,
        None,
    )
    assert recipe.gate == GatePolicy()
    assert recipe.base_rows is None


def test_an_unreadable_recipe_tag_is_named() -> None:
    with pytest.raises(ValueError, match="training recipe tags are not readable"):
        TrainingRecipe.from_tags({"driftloop.gate_policy": "{not json"}, SplitSpec(0.25, 42))
    with pytest.raises(ValueError, match="must hold a JSON object"):
        TrainingRecipe.from_tags({"driftloop.params": "[1, 2]"}, SplitSpec(0.25, 42))
    with pytest.raises(ValueError, match="training recipe tags are not readable"):
        TrainingRecipe.from_tags({"driftloop.base_rows": "many"}, SplitSpec(0.25, 42))
