"""core.scenarios: seeded, replayable traffic with the intended shifts, on the bundled churn data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.core import scenarios
from driftloop.errors import DatasetError


def test_same_seed_same_frame(churn_frame: pd.DataFrame) -> None:
    for make in (scenarios.normal_traffic, scenarios.new_customers, scenarios.price_increase):
        first = make(churn_frame, 300, 5)
        pd.testing.assert_frame_equal(first, make(churn_frame, 300, 5))
        assert not first.equals(make(churn_frame, 300, 6))
    pd.testing.assert_frame_equal(
        scenarios.longer_tenure_reference(churn_frame, 1), scenarios.longer_tenure_reference(churn_frame, 1)
    )
    labels = churn_frame["churn"]
    pd.testing.assert_series_equal(
        scenarios.concept_drift_labels(churn_frame, labels, 2), scenarios.concept_drift_labels(churn_frame, labels, 2)
    )


def test_normal_traffic_resamples_rows_as_they_are(churn_frame: pd.DataFrame) -> None:
    window = scenarios.normal_traffic(churn_frame, 10_000, 0)  # more rows than the data: drawn with replacement
    assert len(window) == 10_000
    assert list(window.columns) == list(churn_frame.columns)
    assert list(window.index) == list(range(10_000))
    known = set(churn_frame.astype(str).itertuples(index=False, name=None))
    assert set(window.astype(str).itertuples(index=False, name=None)) <= known


def test_new_customers_are_all_within_twelve_months(churn_frame: pd.DataFrame) -> None:
    window = scenarios.new_customers(churn_frame, 2000, 0)
    assert len(window) == 2000
    assert window["tenure"].max() <= scenarios.NEW_CUSTOMER_MAX_TENURE
    assert (churn_frame["tenure"] > scenarios.NEW_CUSTOMER_MAX_TENURE).any()  # the filter did something
    assert scenarios.new_customers(churn_frame, 500, 0, max_tenure=3)["tenure"].max() <= 3


def test_price_increase_scales_both_charges(churn_frame: pd.DataFrame) -> None:
    seed, factor = 4, 1.3
    before = scenarios.normal_traffic(churn_frame, 1000, seed)
    after = scenarios.price_increase(churn_frame, 1000, seed, factor=factor)
    np.testing.assert_allclose(after["monthly_charges"], before["monthly_charges"] * factor, atol=0.005)
    np.testing.assert_allclose(after["total_charges"], before["total_charges"] * factor, atol=0.005)
    assert after["total_charges"].isna().equals(before["total_charges"].isna())  # missing totals stay missing
    untouched = [c for c in churn_frame.columns if c not in ("monthly_charges", "total_charges")]
    pd.testing.assert_frame_equal(after[untouched], before[untouched])


def test_concept_drift_changes_labels_not_features(churn_frame: pd.DataFrame) -> None:
    original = churn_frame.copy()
    labels = churn_frame["churn"]
    changed = scenarios.concept_drift_labels(churn_frame, labels, 0, flip=0.5)
    pd.testing.assert_frame_equal(churn_frame, original)
    flipped = changed != labels
    assert flipped.mean() > 0.2
    assert (changed[flipped] == "Yes").all()
    assert (churn_frame.loc[flipped, "tenure"] > scenarios.NEW_CUSTOMER_MAX_TENURE).all()
    assert (changed == labels)[churn_frame["tenure"] <= scenarios.NEW_CUSTOMER_MAX_TENURE].all()
    assert scenarios.concept_drift_labels(churn_frame, labels, 0, flip=0.0).equals(labels)


def test_longer_tenure_reference_is_mostly_long_standing_customers(churn_frame: pd.DataFrame) -> None:
    reference = scenarios.longer_tenure_reference(churn_frame, 0, share_new=0.1)
    older = (churn_frame["tenure"] > 12).sum()
    assert (reference["tenure"] > 12).sum() == older
    assert (reference["tenure"] <= 12).mean() == pytest.approx(0.1, abs=0.001)
    assert (churn_frame["tenure"] <= 12).mean() > 0.25  # far more new customers in the full data
    assert (scenarios.longer_tenure_reference(churn_frame, 0, share_new=0.0)["tenure"] > 12).all()


@pytest.mark.parametrize(
    ("call", "column"),
    [
        (lambda f: scenarios.new_customers(f, 10, 0), "tenure"),
        (lambda f: scenarios.price_increase(f, 10, 0), "monthly_charges"),
        (lambda f: scenarios.longer_tenure_reference(f, 0), "tenure"),
        (lambda f: scenarios.concept_drift_labels(f, f["churn"], 0), "tenure"),
    ],
)
def test_a_missing_column_is_named(churn_frame: pd.DataFrame, call, column: str) -> None:
    with pytest.raises(DatasetError, match=f"needs column.*'{column}'"):
        call(churn_frame.drop(columns=[column]))


def test_other_column_names_can_be_given(churn_frame: pd.DataFrame) -> None:
    renamed = churn_frame.rename(columns={"tenure": "months"})
    assert scenarios.new_customers(renamed, 100, 0, tenure="months")["months"].max() <= 12


def test_bad_arguments_are_refused(churn_frame: pd.DataFrame) -> None:
    with pytest.raises(DatasetError, match="rows must be at least 1"):
        scenarios.normal_traffic(churn_frame, 0, 0)
    with pytest.raises(DatasetError, match="factor must be positive"):
        scenarios.price_increase(churn_frame, 10, 0, factor=0)
    with pytest.raises(DatasetError, match="no row has tenure <= -1"):
        scenarios.new_customers(churn_frame, 10, 0, max_tenure=-1)
    with pytest.raises(DatasetError, match="same index"):
        scenarios.concept_drift_labels(churn_frame, churn_frame["churn"].iloc[:10], 0)
