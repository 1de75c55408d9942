"""The gate's two directions on data where the truth is known, over several seeds, with the real pipeline.

A retrain on labels that carry no information must be refused; a retrain on a real, learnable change of the
relation to the label (new customers on DSL leave after a competitor's offer) must be promoted. The integration
test drives the same scenarios through the server, /feedback and the retrain deployment.
"""

import numpy as np
import pandas as pd
import pytest

from driftloop.core import scenarios
from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.gates import (
    ALL,
    RECENT,
    REFERENCE,
    GatePolicy,
    PromotionDecision,
    compare_segments,
    decide_promotion,
)
from driftloop.core.pipeline import build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.core.snapshot import split_holdout

SEEDS = [0, 1, 2, 3, 4]
RETRAIN = GatePolicy(improve_on=RECENT, resamples=1000)


def _retrain_decision(full: pd.DataFrame, schema: DatasetSchema, seed: int, labels: str) -> PromotionDecision:
    reference = scenarios.longer_tenure_reference(full, seed=seed, share_new=0.0)
    drifted = scenarios.new_customers(full, 600, seed=seed + 100)
    if labels == "random":
        drifted["churn"] = scenarios.random_labels(drifted, seed)
    else:
        drifted["churn"] = scenarios.competitor_offer_labels(drifted, seed)
    fit = lambda frame: build_pipeline(schema, "hist_gradient_boosting", seed=42).fit(  # noqa: E731
        to_model_frame(frame, schema), encode_target(frame["churn"], schema)
    )
    champion = fit(split_holdout(reference, schema, 0.25, 42).train)
    combined = pd.concat([reference, drifted], ignore_index=True)
    split = split_holdout(combined, schema, 0.25, 42)
    candidate = fit(split.train)
    holdout = to_model_frame(split.holdout, schema)
    recent = np.asarray(split.holdout.index >= len(reference))
    segments = {REFERENCE: ~recent, RECENT: recent, ALL: np.ones(recent.size, dtype=bool)}
    comparisons = compare_segments(
        encode_target(split.holdout["churn"], schema),
        candidate.predict_proba(holdout)[:, 1],
        champion.predict_proba(holdout)[:, 1],
        segments,
        RETRAIN,
        seed,
    )
    metrics = {"roc_auc": 0.8, "accuracy": 0.8}  # the floors are not what this test is about
    return decide_promotion(metrics, metrics, "1", True, "", RETRAIN, segments=comparisons)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_retrain_on_random_labels_is_refused(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, seed: int
) -> None:
    decision = _retrain_decision(churn_frame, churn_schema, seed, "random")
    assert decision.verdict == "refuse"
    assert any("no significant improvement on recent" in reason for reason in decision.reasons), decision.reasons


@pytest.mark.parametrize("seed", SEEDS)
def test_a_retrain_on_a_learnable_shift_is_promoted(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, seed: int
) -> None:
    decision = _retrain_decision(churn_frame, churn_schema, seed, "competitor")
    assert decision.verdict == "promote", decision.reasons
    assert decision.reasons[0].startswith("significantly better on recent")
