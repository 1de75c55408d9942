"""The gate's two directions on data where the truth is known, over several seeds, with the real pipeline.

A retrain on labels that carry no information must be refused; a retrain on a real, learnable change of the
relation to the label (new customers on DSL leave after a competitor's offer) must be promoted. The integration
test drives the same scenarios through the server, /feedback and the retrain deployment.
"""

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

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
# 500 replicates, not the gate's 2000: the verdicts do not depend on it. With 1000, 500 and 300 every seed's
# decision is the same, and the interval ends that decide move by about 0.01 while the nearest one to zero (seed 2,
# random labels, the upper end on recent: +0.015) is not the one the verdict turns on (its lower end, -0.19).
RETRAIN = GatePolicy(improve_on=RECENT, resamples=500)


class Champions:
    """The champion each reference trains, fitted once per distinct reference (by content), not once per test.

    ``longer_tenure_reference(share_new=0.0)`` keeps every longer-tenure customer whatever the seed, so the five
    seeds share one champion; the candidates differ per seed and per direction and are fitted by each test.
    """

    def __init__(self, schema: DatasetSchema) -> None:
        self._schema = schema
        self._fitted: dict[str, Pipeline] = {}

    def fit(self, frame: pd.DataFrame) -> Pipeline:
        return build_pipeline(self._schema, "hist_gradient_boosting", seed=42).fit(
            to_model_frame(frame, self._schema), encode_target(frame["churn"], self._schema)
        )

    def of(self, reference: pd.DataFrame) -> Pipeline:
        key = hashlib.sha256(pd.util.hash_pandas_object(reference).to_numpy().tobytes()).hexdigest()
        if key not in self._fitted:
            self._fitted[key] = self.fit(split_holdout(reference, self._schema, 0.25, 42).train)
        return self._fitted[key]


@pytest.fixture(scope="module")
def champions(churn_schema: DatasetSchema) -> Champions:
    return Champions(churn_schema)


METRICS = {"roc_auc": 0.8, "accuracy": 0.8}  # the floors are not what these tests are about


def _decide(
    reference: pd.DataFrame, recent_rows: pd.DataFrame, schema: DatasetSchema, champions: Champions, seed: int,
    policies: list[GatePolicy],
) -> list[PromotionDecision]:  # fmt: skip
    """The champion fitted on ``reference`` and a candidate on both, each policy's decision on the same holdout."""
    champion = champions.of(reference)
    split = split_holdout(pd.concat([reference, recent_rows], ignore_index=True), schema, 0.25, 42)
    candidate = champions.fit(split.train)
    holdout = to_model_frame(split.holdout, schema)
    recent = np.asarray(split.holdout.index >= len(reference))
    segments = {REFERENCE: ~recent, RECENT: recent, ALL: np.ones(recent.size, dtype=bool)}
    y_true = encode_target(split.holdout["churn"], schema)
    theirs, ours = champion.predict_proba(holdout)[:, 1], candidate.predict_proba(holdout)[:, 1]
    decisions = []
    for policy in policies:
        comparisons = compare_segments(y_true, ours, theirs, segments, policy, seed)
        on_recent = None if policy.floors_on is None else METRICS  # the floors then judge the recent rows
        decisions.append(
            decide_promotion(METRICS, METRICS, "1", True, "", policy, segments=comparisons, floor_metrics=on_recent)
        )
    return decisions


def _retrain_decision(
    full: pd.DataFrame, schema: DatasetSchema, champions: Champions, seed: int, labels: str
) -> PromotionDecision:
    reference = scenarios.longer_tenure_reference(full, seed=seed, share_new=0.0)
    drifted = scenarios.new_customers(full, 600, seed=seed + 100)
    if labels == "random":
        drifted["churn"] = scenarios.random_labels(drifted, seed)
    else:
        drifted["churn"] = scenarios.competitor_offer_labels(drifted, seed)
    (decision,) = _decide(reference, drifted, schema, champions, seed, [RETRAIN])
    return decision


def _truth_changed_decisions(
    full: pd.DataFrame, schema: DatasetSchema, champions: Champions, seed: int, labels: str
) -> dict[bool, PromotionDecision]:
    """A retrain on 2,000 labelled rows of ordinary traffic, gated as usual (False) and after the truth changed (True).

    ``concept``: long-standing customers now leave (``scenarios.concept_drift_labels``), where the old rows say
    they stay; ``random``: labels that carry no information.
    """
    reference = full.sample(frac=1.0, random_state=seed).reset_index(drop=True).iloc[:5000]
    recent_rows = scenarios.normal_traffic(full, 2000, seed=seed + 100)
    if labels == "concept":
        recent_rows["churn"] = scenarios.concept_drift_labels(recent_rows, recent_rows["churn"], seed=seed, flip=0.9)
    else:
        recent_rows["churn"] = scenarios.random_labels(recent_rows, seed)
    policies = [GatePolicy(improve_on=RECENT, resamples=500, truth_changed=changed) for changed in (False, True)]
    usual, changed = _decide(reference, recent_rows, schema, champions, seed, policies)
    return {False: usual, True: changed}


@pytest.mark.parametrize("seed", SEEDS)
def test_after_the_truth_changed_a_retrain_that_learnt_it_is_promoted_though_worse_on_the_old_rows(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, champions: Champions, seed: int
) -> None:
    decisions = _truth_changed_decisions(churn_frame, churn_schema, champions, seed, "concept")
    # Held to the old rows, the candidate that learnt what is true now is refused there ...
    assert decisions[False].verdict == "refuse"
    assert any(r.startswith("significantly worse than champion v1 on reference") for r in decisions[False].reasons)
    # ... and once the labels of live traffic showed the change, the recent rows decide.
    assert decisions[True].verdict == "promote", decisions[True].reasons
    assert decisions[True].reasons[0].startswith("significantly better on recent")
    assert any(r.startswith("not held to the old truth") for r in decisions[True].reasons), decisions[True].reasons
    assert "the old rows (reference, all) are reported, not held to" in decisions[True].rule


@pytest.mark.parametrize("seed", SEEDS)
def test_after_the_truth_changed_a_retrain_on_labels_without_information_is_still_refused(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, champions: Champions, seed: int
) -> None:
    decisions = _truth_changed_decisions(churn_frame, churn_schema, champions, seed, "random")
    for decision in decisions.values():
        assert decision.verdict == "refuse"
        assert any("no significant improvement on recent" in reason for reason in decision.reasons), decision.reasons


@pytest.mark.parametrize("seed", SEEDS)
def test_a_retrain_on_random_labels_is_refused(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, champions: Champions, seed: int
) -> None:
    decision = _retrain_decision(churn_frame, churn_schema, champions, seed, "random")
    assert decision.verdict == "refuse"
    assert any("no significant improvement on recent" in reason for reason in decision.reasons), decision.reasons


@pytest.mark.parametrize("seed", SEEDS)
def test_a_retrain_on_a_learnable_shift_is_promoted(
    churn_frame: pd.DataFrame, churn_schema: DatasetSchema, champions: Champions, seed: int
) -> None:
    decision = _retrain_decision(churn_frame, churn_schema, champions, seed, "competitor")
    assert decision.verdict == "promote", decision.reasons
    assert decision.reasons[0].startswith("significantly better on recent")
