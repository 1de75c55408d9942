"""Schema inference: a draft that accepts the data it was read from, and says what it left out and why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine, make_classification

from driftloop.core.features import to_model_frame
from driftloop.core.schema import FeatureKind, Unseen
from driftloop.core.schema_inference import infer_schema
from driftloop.core.task import TaskKind
from driftloop.core.validation import find_problems
from driftloop.errors import ConfigError
from driftloop.io.datasets import load_schema, schema_yaml


def _round_trip(frame: pd.DataFrame, target: str, tmp_path: Path, **options: int) -> pd.DataFrame:
    """Infer, write, read back: the file holds the same schema, and it accepts the frame."""
    inferred = infer_schema(frame, target, "draft", **options)
    path = tmp_path / "schema.yaml"
    path.write_text(schema_yaml(inferred.schema, inferred.notes))
    assert load_schema(path) == inferred.schema
    assert find_problems(frame, inferred.schema) == []
    return frame


def test_the_bundled_churn_data_gets_the_kinds_it_was_written_with(churn_frame: pd.DataFrame, tmp_path: Path) -> None:
    inferred = infer_schema(churn_frame, "churn", "churn")
    kinds = {f.name: f.kind for f in inferred.schema.features}
    assert kinds["female"] is FeatureKind.BINARY
    assert kinds["tenure"] is FeatureKind.NUMERIC
    assert kinds["contract"] is FeatureKind.CATEGORICAL
    assert inferred.schema.feature("contract").categories == ("Month-to-month", "One year", "Two year")
    assert inferred.schema.feature("tenure").description == "observed 0 to 72"
    assert (inferred.schema.target.classes, inferred.schema.target.positive) == (("No", "Yes"), "Yes")
    assert inferred.notes == ()
    _round_trip(churn_frame, "churn", tmp_path)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(load_breast_cancer(as_frame=True).frame, id="breast-cancer"),
        pytest.param(
            pd.DataFrame(
                np.column_stack(make_classification(n_samples=500, n_features=20, random_state=0)),
                columns=[*(f"x{i}" for i in range(20)), "target"],
            ),
            id="tutorial-make-classification",
        ),
    ],
)
def test_public_binary_datasets_get_a_schema_that_accepts_them(frame: pd.DataFrame, tmp_path: Path) -> None:
    _round_trip(frame, "target", tmp_path)
    schema = infer_schema(frame, "target", "draft").schema
    assert all(f.kind is FeatureKind.NUMERIC for f in schema.features)
    assert schema.target.classes in (("0", "1"), ("0.0", "1.0"))


@pytest.mark.parametrize(
    ("frame", "task"),
    [
        pytest.param(load_wine(as_frame=True).frame, "multiclass", id="wine"),
        pytest.param(load_diabetes(as_frame=True).frame, "regression", id="diabetes"),
    ],
)
def test_the_task_is_guessed_from_the_target(frame: pd.DataFrame, task: str, tmp_path: Path) -> None:
    _round_trip(frame, "target", tmp_path)
    schema = infer_schema(frame, "target", "draft").schema
    assert schema.target.kind == task
    if task == "multiclass":
        assert schema.target.classes == ("0", "1", "2")
    else:
        assert schema.target.classes is None


def test_a_task_that_does_not_fit_the_target_is_refused() -> None:
    diabetes = load_diabetes(as_frame=True).frame
    with pytest.raises(ConfigError, match="binary target needs exactly two"):
        infer_schema(diabetes, "target", "draft", task=TaskKind.BINARY)
    wine = load_wine(as_frame=True).frame
    assert infer_schema(wine, "target", "draft", task=TaskKind.REGRESSION).schema.target.kind == "regression"


def _mixed(rows: int, seed: int) -> pd.DataFrame:
    """Every kind of column a user's export holds, with missing values sprinkled in."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows).astype(float),
            "flag": rng.integers(0, 2, rows),
            "active": rng.random(rows) < 0.5,
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
            "signed_up": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400, rows), unit="D"),
            "last_login": [
                f"2024-{m:02d}-{d:02d} 10:{m:02d}"
                for m, d in zip(rng.integers(1, 13, rows), rng.integers(1, 29, rows), strict=True)
            ],
            "customer_id": [f"C{seed}-{i:06d}" for i in range(rows)],
            "account_number": rng.permutation(rows) + 10_000,  # whole numbers, one per row
            "balance": rng.normal(1_000, 300, rows),  # distinct in every row too, but fractional: a quantity
            "zip_code": rng.choice([f"Z{i:04d}" for i in range(150)], rows).astype(object),
            "empty": np.nan,
            "label": rng.choice(["stay", "leave"], rows, p=[0.8, 0.2]).astype(object),
        }
    )
    frame.loc[rng.choice(rows, 5, replace=False), "age"] = np.nan
    frame.loc[rng.choice(rows, 5, replace=False), "plan"] = np.nan
    frame["flag"] = frame["flag"].astype(float)
    frame.loc[rng.choice(rows, 3, replace=False), "flag"] = np.nan
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_mixed_export_keeps_what_can_be_a_feature_and_says_why_it_left_out_the_rest(
    seed: int, tmp_path: Path
) -> None:
    frame = _mixed(600, seed)
    inferred = infer_schema(frame, "label", "mixed")
    schema = inferred.schema
    assert {f.name: f.kind for f in schema.features} == {
        "age": FeatureKind.NUMERIC,
        "account_number": FeatureKind.NUMERIC,
        "balance": FeatureKind.NUMERIC,
        "flag": FeatureKind.BINARY,
        "active": FeatureKind.BINARY,
        "plan": FeatureKind.CATEGORICAL,
        "zip_code": FeatureKind.CATEGORICAL,
    }
    assert [f.name for f in schema.features if f.nullable] == ["age", "flag", "plan"]
    assert schema.feature("plan").categories == ("basic", "plus", "pro")
    notes = "\n".join(inferred.notes)
    for column in ("signed_up", "last_login"):
        assert f"{column!r} left out: dates and times have no kind" in notes
    assert "'customer_id' left out: 600 distinct values in 600 rows, an identifier?" in notes
    # A whole number per row is kept (it could be an amount) but named; a fractional quantity or a repeated age is not.
    assert "'account_number' kept as numeric, but every one of its 600 values is a different whole number" in notes
    assert "'balance' kept" not in notes
    assert "'age' kept" not in notes
    # More values than the cap, but far from one per row: learned from the training snapshot, the rest bucketed.
    zips = frame["zip_code"].nunique()
    zip_code = schema.feature("zip_code")
    assert (zip_code.learn, zip_code.categories, zip_code.max_categories, zip_code.unseen) == (
        True, None, 100, Unseen.OTHER
    )  # fmt: skip
    assert f"'zip_code': {zips} distinct values, so 'categories: learn'" in notes
    assert "'empty' left out: every value is missing" in notes
    # Neither spelling is a positive one: the rarer class is, and the note says how to change it.
    assert (schema.target.classes, schema.target.positive) == (("stay", "leave"), "leave")
    assert "positive class guessed as 'leave', the rarer one" in notes
    # Raising the cap lists the ZIP codes.
    listed = infer_schema(frame, "label", "mixed", max_categories=200).schema
    assert len(listed.feature("zip_code").categories or ()) == zips
    assert not listed.feature("zip_code").learn
    _round_trip(frame.drop(columns=["signed_up", "last_login", "customer_id", "empty"]), "label", tmp_path)


def test_a_positive_spelling_wins_over_rarity_and_missing_labels_are_noted() -> None:
    frame = pd.DataFrame({"x": range(10), "bought": ["yes"] * 7 + ["no", "no", None]})
    inferred = infer_schema(frame, "bought", "draft")
    assert (inferred.schema.target.classes, inferred.schema.target.positive) == (("no", "yes"), "yes")
    assert inferred.notes == ("target 'bought': 1 row(s) have no label; training refuses a snapshot with missing "
                              "labels: drop those rows first",)  # fmt: skip
    assert inferred.schema.min_rows == 10


ONE_CLASS = pd.DataFrame({"x": [1, 2], "y": ["a", "a"]})
TWO_CLASSES = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
ONLY_DATES = pd.DataFrame({"when": ["2024-01-01", "2024-01-02"], "y": ["a", "b"]})


@pytest.mark.parametrize(
    ("frame", "target", "message"),
    [
        (ONE_CLASS, "y", "target 'y' needs two distinct values to learn from; it has only 'a'"),
        (TWO_CLASSES, "label", "the data has no column 'label' to predict; its columns: 'x', 'y'"),
        (ONLY_DATES, "y", "no column of the data can be a feature: 'when' left out: dates and times"),
    ],
)
def test_what_cannot_make_a_schema_is_named(frame: pd.DataFrame, target: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        infer_schema(frame, target, "draft")
    assert str(raised.value).startswith(message)


def test_a_champion_is_compared_with_a_schema_that_differs_only_in_spelling(churn_frame: pd.DataFrame) -> None:
    from driftloop.core import lineage
    from driftloop.core.schema import evolution_problem, same_contract

    first = infer_schema(churn_frame, "churn", "churn").schema
    tags = {
        lineage.SCHEMA_NAME: first.name,
        lineage.SCHEMA_FINGERPRINT: first.fingerprint(),
        lineage.SCHEMA_CONTRACT: first.contract(),
    }
    # Inferred again from other rows, under another name: other descriptions and categories, the same contract.
    again = infer_schema(churn_frame.tail(300), "churn", "churn_parts").schema
    assert again.fingerprint() != first.fingerprint()
    assert same_contract(tags, again)

    reordered = again.model_copy(update={"features": tuple(reversed(again.features))})
    fewer = again.model_copy(update={"features": again.features[1:]})
    other_target = again.model_copy(update={"target": again.target.model_copy(update={"positive": "No"})})
    for changed in (reordered, fewer, other_target):
        assert not same_contract(tags, changed)
    # Another order of the same features is still comparable; fewer features or another target are not.
    assert evolution_problem(first, reordered) is None
    assert f"removes feature(s) {first.features[0].name!r}" in (evolution_problem(first, fewer) or "")
    assert "changes the target" in (evolution_problem(first, other_target) or "")

    # A version registered before the contract tag: the whole schema must match, as before.
    legacy = {lineage.SCHEMA_NAME: first.name, lineage.SCHEMA_FINGERPRINT: first.fingerprint()}
    assert same_contract(legacy, first)
    assert not same_contract(legacy, again)


def test_a_snapshot_that_adds_features_evolves_the_schema_and_one_that_drops_or_retypes_is_refused(
    churn_frame: pd.DataFrame,
) -> None:
    from driftloop.core.schema import Feature, FeatureKind, evolution_problem

    champion = infer_schema(churn_frame, "churn", "churn").schema
    added = champion.model_copy(
        update={"features": (*champion.features, Feature(name="support_calls", kind=FeatureKind.NUMERIC))}
    )
    assert evolution_problem(champion, added) is None
    binary = next(f.name for f in champion.features if f.kind is FeatureKind.BINARY)
    retyped = champion.model_copy(
        update={
            "features": tuple(
                Feature(name=f.name, kind=FeatureKind.NUMERIC) if f.name == binary else f for f in champion.features
            )
        }
    )
    problem = evolution_problem(champion, retyped) or ""
    assert f"retypes {binary} (binary → numeric)" in problem
    assert problem.endswith("or register it under another model name (--model-name / DRIFTLOOP_MODEL_NAME)")


def test_a_numeric_column_with_a_few_stray_texts_is_numeric_and_the_note_names_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    area = rng.uniform(20, 300, 2000).round(1).astype(object)
    area[[5, 700]] = ["unknown", "12,5"]
    codes = rng.choice(["A1", "B2", "C3", "17"], 2000).astype(object)  # mostly text: stays a category
    frame = pd.DataFrame({"area": area, "code": codes, "y": rng.choice(["a", "b"], 2000)})
    inferred = infer_schema(frame, "y", "houses")
    assert inferred.schema.feature("area").kind is FeatureKind.NUMERIC
    assert inferred.schema.feature("code").kind is FeatureKind.CATEGORICAL
    notes = "\n".join(inferred.notes)
    assert "'area' inferred numeric: 1,998 of 2,000 values are numbers, 2 are not (e.g. 'unknown', '12,5')" in notes
    # Then training names the same rows, so the user fixes them before any fit.
    problems = find_problems(frame, inferred.schema)
    assert problems == ["column 'area': 2 non-numeric value(s) (e.g. 'unknown', '12,5'; data rows 6, 701)"]


def test_true_false_with_blanks_is_a_nullable_binary_feature_from_csv_and_parquet(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    garden = rng.choice(np.array([True, False, None], dtype=object), 600)  # bools with nulls: object dtype
    words = rng.choice(np.array(["true", "FALSE", None], dtype=object), 600)  # pandas' words, as text
    maybe = rng.choice(np.array(["True", "maybe", None], dtype=object), 600)  # not only booleans: a category
    frame = pd.DataFrame({"garden": garden, "words": words, "maybe": maybe, "y": rng.choice(["a", "b"], 600)})
    csv, parquet = tmp_path / "houses.csv", tmp_path / "houses.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    for path in (csv, parquet):
        read = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        schema = infer_schema(read, "y", "houses").schema
        for name in ("garden", "words"):
            feature = schema.feature(name)
            assert (feature.kind, feature.nullable) == (FeatureKind.BINARY, True), (path.suffix, name)
        assert schema.feature("maybe").kind is FeatureKind.CATEGORICAL
        assert find_problems(read, schema) == []  # and training takes the data it was inferred from
        fed = to_model_frame(read, schema)["garden"].to_numpy()
        expected = np.array([{True: 1.0, False: 0.0}.get(v, np.nan) for v in garden], dtype=np.float32)
        np.testing.assert_array_equal(fed, expected)


def test_a_number_taken_for_classes_is_noted_at_inference_and_refused_by_validation() -> None:
    """`--task multiclass` on a measured quantity: thousands of one-row classes no split can put on both sides."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"sunlight": rng.uniform(0, 12, 3000), "growth": np.round(rng.normal(30, 8, 3000), 3)})
    inferred = infer_schema(frame, "growth", "plants", task=TaskKind.MULTICLASS)
    (note,) = [n for n in inferred.notes if "single row" in n]
    assert "classes have a single row" in note
    assert "look like a number to predict (task regression); training refuses this data" in note
    (problem,) = find_problems(frame, inferred.schema)
    assert problem.startswith("target 'growth': ")
    assert "each class needs rows on both sides of the holdout split" in problem
    # As a regression target the same column is fine.
    regression = infer_schema(frame, "growth", "plants", task=TaskKind.REGRESSION)
    assert not [n for n in regression.notes if "single row" in n]
    assert find_problems(frame, regression.schema) == []


def test_one_rare_class_of_a_real_classifier_is_named_without_the_regression_hint() -> None:
    frame = pd.DataFrame({"x": np.arange(301.0), "y": ["a"] * 150 + ["b"] * 150 + ["c"]})
    inferred = infer_schema(frame, "y", "rare")
    assert (
        "target 'y': 1 of its 3 classes has a single row ('c'): each class needs rows on both sides of the holdout "
        "split; training refuses this data"
    ) in inferred.notes
    assert find_problems(frame, inferred.schema) == [
        "target 'y': 1 of its 3 classes has a single row ('c'): each class needs rows on both sides of the holdout "
        "split"
    ]
    # Two rare classes of three, or many one-row text ids, are not a number to predict: no regression hint.
    rare = pd.DataFrame({"x": np.arange(302.0), "y": ["a"] * 300 + ["b", "c"]})
    (problem,) = find_problems(rare, infer_schema(rare, "y", "rare").schema)
    assert "2 of its 3 classes have a single row" in problem
    assert "regression" not in problem
    ids = pd.DataFrame({"x": np.arange(100.0), "y": [f"id-{i}" for i in range(100)]})
    (problem,) = find_problems(ids, infer_schema(ids, "y", "ids", task=TaskKind.MULTICLASS).schema)
    assert "100 of its 100 classes have a single row" in problem
    assert "regression" not in problem
    two = pd.concat([frame, frame.tail(1)], ignore_index=True)  # a second 'c' row: both sides can have one
    assert find_problems(two, infer_schema(two, "y", "rare").schema) == []
    # A retrain's recent rows are a part: one row of a class is fine there, the champion's rows are joined to them.
    assert find_problems(frame, inferred.schema, 1, part=True) == []
