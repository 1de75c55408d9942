"""Categories learned from the training snapshot, with a cap and an other bucket: the schema spelling, what is
learned, how values reach the model in training and in ONNX, and what validation still refuses.

The data is generated (``tests.support.worlds.shops``): a ``shop`` column with a few frequent values and a long
tail, the target depending on whether the shop is one of the frequent good ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from driftloop.core.categories import learn_categories
from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DEFAULT_LEARNED_CATEGORIES, OTHER_CATEGORY, Feature, Unseen
from driftloop.core.validation import find_problems
from driftloop.errors import ConfigError
from driftloop.io.datasets import load_schema, schema_yaml
from driftloop.io.onnx_export import export_onnx
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.settings import BUNDLED_SCHEMA
from tests.support.worlds import shop_schema, shops


def test_a_schema_file_says_categories_learn_and_reads_back_the_same(tmp_path: Path) -> None:
    schema = shop_schema(categories="learn", max_categories=20, unseen="other")
    shop = schema.feature("shop")
    assert (shop.learn, shop.categories, shop.category_cap, shop.unseen) == (True, None, 20, Unseen.OTHER)
    text = schema_yaml(schema)
    assert "{name: shop, kind: categorical, categories: learn, max_categories: 20, unseen: other}" in text
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    assert load_schema(path) == schema
    assert shop_schema(categories="learn").feature("shop").category_cap == DEFAULT_LEARNED_CATEGORIES


@pytest.mark.parametrize(
    ("shop", "message"),
    [
        ({"categories": "all"}, "categories must be a list of values or 'learn', got 'all'"),
        ({"categories": ["a"], "max_categories": 5}, "max_categories applies to 'categories: learn' only"),
        ({}, "needs a non-empty 'categories' list, or 'categories: learn'"),
        ({"categories": "learn", "max_categories": 0}, "greater than or equal to 1"),
    ],
)
def test_a_wrong_categories_rule_is_refused_by_name(shop: dict[str, object], message: str, tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    features = [{"name": "x", "kind": "numeric"}, {"name": "shop", "kind": "categorical", **shop}]
    path.write_text(yaml.safe_dump({"name": "s", "target": {"name": "y", "classes": [0, 1], "positive": 1},
                                    "features": features}))  # fmt: skip
    with pytest.raises(ConfigError, match="shop") as error:
        load_schema(path)
    assert message in str(error.value)


def test_numbers_cannot_have_category_rules() -> None:
    for rules in ({"unseen": "other"}, {"categories": "learn"}, {"max_categories": 3}):
        with pytest.raises(ValidationError, match="numeric feature 'x'"):
            Feature.model_validate({"name": "x", "kind": "numeric", **rules})


def test_a_schema_without_the_new_rules_keeps_its_fingerprint() -> None:
    # The value computed before learned categories and target kinds existed.
    assert load_schema(BUNDLED_SCHEMA).fingerprint() == "d697d012c980902a"
    assert shop_schema(categories="learn").fingerprint() != shop_schema(categories=["a"]).fingerprint()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learning_keeps_the_most_frequent_values_and_buckets_the_rest(seed: int) -> None:
    frame = shops(3000, seed)
    learned = learn_categories(shop_schema(categories="learn", max_categories=10), frame).feature("shop")
    counts = frame["shop"].value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    assert learned.categories == (*sorted(value for value, _ in ranked[:10]), OTHER_CATEGORY)
    assert learned.learn  # a retrain learns again from its own snapshot
    seen = to_model_frame(frame, learn_categories(shop_schema(categories="learn", max_categories=10), frame))["shop"]
    kept = frame["shop"].isin(learned.categories)
    assert (seen[kept] == frame["shop"][kept]).all()
    assert (seen[~kept] == OTHER_CATEGORY).all()
    assert (~kept).sum() == counts.iloc[10:].sum() > 0


def test_ties_at_the_cap_are_broken_by_the_value_and_a_list_that_fits_has_no_bucket() -> None:
    frame = pd.DataFrame({"x": 0.0, "shop": ["b", "b", "c", "a", "d"], "y": [0, 1, 0, 1, 0]})
    schema = shop_schema(categories="learn", max_categories=2)
    assert learn_categories(schema, frame).feature("shop").categories == ("a", "b", OTHER_CATEGORY)
    roomy = shop_schema(categories="learn", max_categories=4)
    assert learn_categories(roomy, frame).feature("shop").categories == ("a", "b", "c", "d")


def test_a_learned_list_is_learned_again_from_the_next_snapshot() -> None:
    first = learn_categories(shop_schema(categories="learn", max_categories=5), shops(2000, 0, distinct=8))
    later = pd.DataFrame({"x": 0.0, "shop": ["new1", "new2", "new2"], "y": [0, 1, 0]})
    assert learn_categories(first, later).feature("shop").categories == ("new1", "new2")


def test_a_listed_feature_sending_unseen_values_to_other_gets_the_bucket_only_when_training_needs_it() -> None:
    frame = pd.DataFrame({"x": 0.0, "shop": ["a", "b", "zz"], "y": [0, 1, 0]})
    schema = shop_schema(categories=["a", "b"], unseen="other")
    assert learn_categories(schema, frame).feature("shop").categories == ("a", "b", OTHER_CATEGORY)
    inside = frame.assign(shop=["a", "b", "a"])
    assert learn_categories(schema, inside) is schema
    closed = shop_schema(categories=["a", "b"])
    assert learn_categories(closed, frame) is closed  # unseen: error never gets a bucket (validation refuses)


def test_validation_refuses_unlisted_values_only_where_the_schema_says_error() -> None:
    frame = pd.DataFrame({"x": 0.0, "shop": ["a", "zz", "zz", "a"], "y": [0, 1, 0, 1]})
    refused = find_problems(frame, shop_schema(categories=["a", "b"]), min_rows=1)
    assert refused == ["column 'shop': 2 value(s): 'zz' (2) outside the declared categories (data rows 2, 3)"]
    assert find_problems(frame, shop_schema(categories=["a", "b"], unseen="other"), min_rows=1) == []
    assert find_problems(frame, shop_schema(categories="learn"), min_rows=1) == []
    empty = frame.assign(shop=None)
    nullable = shop_schema(categories="learn", nullable=True)
    assert find_problems(empty, nullable, min_rows=1) == ["column 'shop': no values to learn its categories from"]


def test_the_bucket_rule() -> None:
    capped = Feature(name="s", kind="categorical", categories=("a", OTHER_CATEGORY), learn=True)
    listed = Feature(name="s", kind="categorical", categories=("a",))
    open_list = Feature(name="s", kind="categorical", categories=("a",), unseen=Unseen.OTHER)
    for feature in (capped, listed, open_list):
        names = frozenset(feature.categories or ())
        assert feature.bucketed("a", names) == "a"
        assert feature.bucketed("", names) == ""  # missing stays missing: the imputer handles it
    assert capped.bucketed("zz", frozenset(capped.categories or ())) == OTHER_CATEGORY
    assert open_list.bucketed("zz", frozenset(("a",))) == OTHER_CATEGORY
    assert listed.bucketed("zz", frozenset(("a",))) == "zz"  # validation refuses it before it gets here


def test_a_list_still_to_learn_cannot_be_built_into_a_model() -> None:
    with pytest.raises(ValueError, match=r"\['shop'\] must have their categories learned"):
        build_pipeline(shop_schema(categories="learn"))


@pytest.mark.parametrize("estimator", ["logistic_regression", "random_forest"])
def test_a_model_on_learned_categories_exports_with_parity_and_scores_unseen_values_as_other(estimator: str) -> None:
    train, holdout = shops(3000, 0), shops(1000, 1, distinct=600)  # the holdout has shops training never saw
    schema = learn_categories(shop_schema(categories="learn", max_categories=12, unseen="other"), train)
    pipeline = build_pipeline(schema, estimator, seed=0).fit(
        to_model_frame(train, schema), encode_target(train["y"], schema)
    )
    model_rows = to_model_frame(holdout, schema)
    unseen = ~holdout["shop"].isin(train["shop"])
    assert unseen.any()
    assert (model_rows["shop"][unseen] == OTHER_CATEGORY).all()
    _, probabilities = OnnxModel.from_bytes(export_onnx(pipeline, schema), schema).predict(model_rows)
    assert probabilities is not None
    expected = pipeline.predict_proba(model_rows)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # The learned columns carry the signal: the shop alone separates the classes well.
    assert roc_auc_score(encode_target(holdout["y"], schema), probabilities[:, 1]) > 0.75


def test_rows_sent_as_the_bucket_are_counted_in_it_when_learning_again() -> None:
    logged = pd.DataFrame({"x": 0.0, "shop": ["a", OTHER_CATEGORY, OTHER_CATEGORY, "b"], "y": [0, 1, 0, 1]})
    learned = learn_categories(shop_schema(categories="learn", max_categories=5), logged).feature("shop")
    assert learned.categories == ("a", "b", OTHER_CATEGORY)
