"""core.drift agrees with Evidently 0.7.23's DataDriftPreset, column by column, on five datasets.

Same method names, thresholds, drifted flags, share and dataset verdict; scores (the chi-square's aside: ours is
the two-sample test on purpose, checked against scipy's here) equal within 1e-9 relative
(1e-15 absolute, for p-values that underflow towards 0). In practice they are bit-identical or differ in the last
digit or two: Evidently sums Jensen-Shannon terms in the order of a Python set of categories, and our Wasserstein
merges two sorted arrays where scipy argsorts and searchsorts, so only the floating-point summation order differs.

Evidently takes seconds to import and run, so every dataset is compared once (module-scoped) and asserted on
by several tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core import scenarios
from driftloop.core.drift import CHI_SQUARE, JENSEN_SHANNON, KS, WASSERSTEIN, Z_TEST, DriftVerdict, build_profile
from driftloop.core.drift import check_drift as our_check
from driftloop.core.schema import DatasetSchema
from driftloop.io.datasets import load_schema, read_snapshot
from driftloop.io.drift_report import EvidentlyDrift, build_report, evidently_column_verdicts
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA

# Evidently's own chi-square divides by a zero expected count for a category new in the current data.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")

REL_TOL = 1e-9
ABS_TOL = 1e-15


@dataclass(frozen=True)
class Case:
    reference: pd.DataFrame
    current: pd.DataFrame
    numeric: list[str]
    categorical: list[str]


def synthetic(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    """Every kind of column the selection rules tell apart; with ``shifted``, half of them move."""
    rng = np.random.default_rng(seed)
    s = 1 if shifted else 0
    missing = rng.random(rows) < 0.45
    return pd.DataFrame(
        {
            "continuous": rng.normal(0.4 * s, 1, rows),  # K-S / Wasserstein
            "bit": rng.binomial(1, 0.3 + 0.25 * s, rows),  # Z-test / Jensen-Shannon
            "three_levels": rng.integers(0, 3, rows).astype(float),  # chi-square / Jensen-Shannon
            "gains_levels": rng.integers(0, 4, rows) + 10 * s * rng.integers(0, 2, rows),  # 4 distinct → 6+
            "constant": np.ones(rows),
            "sparse": np.where(missing, np.nan, rng.normal(0, 1, rows)),  # ≤ 1000 values in > 1000 rows
            "micro": rng.integers(0, 50, rows) * 1e-6 + 3e-5 * s,  # std < 0.001: Wasserstein's floor
            "plan": rng.choice(["basic", "plus", "pro", "max"], rows, p=[0.4, 0.3, 0.2, 0.1]),
            "channel": rng.choice(["web", "shop"], rows, p=[0.5 + 0.3 * s, 0.5 - 0.3 * s]),
            "region": rng.choice(["north", "south", "east"] + (["new"] if shifted else []), rows),
        }
    )


SYNTHETIC_NUMERIC = ["continuous", "bit", "three_levels", "gains_levels", "constant", "sparse", "micro"]
SYNTHETIC_CATEGORICAL = ["plan", "channel", "region"]


def churn_case(make_current: Callable[[pd.DataFrame], pd.DataFrame], reference: pd.DataFrame | None = None) -> Case:
    schema: DatasetSchema = load_schema(BUNDLED_SCHEMA)
    frame = read_snapshot(BUNDLED_DATA)
    reference = frame if reference is None else reference
    return Case(reference, make_current(frame), schema.numeric, schema.categorical)


def make_cases() -> dict[str, Case]:
    frame = read_snapshot(BUNDLED_DATA)
    return {
        "churn-new-customers": churn_case(
            lambda f: scenarios.new_customers(f, 1000, seed=1), scenarios.longer_tenure_reference(frame, seed=0)
        ),
        "churn-price-increase": churn_case(lambda f: scenarios.price_increase(f, 1000, seed=2)),
        "churn-normal": churn_case(lambda f: scenarios.normal_traffic(f, 1000, seed=3)),
        "synthetic-small": Case(
            synthetic(800, 10, False), synthetic(600, 11, True), SYNTHETIC_NUMERIC, SYNTHETIC_CATEGORICAL
        ),
        "synthetic-large": Case(
            synthetic(1800, 20, False), synthetic(1500, 21, True), SYNTHETIC_NUMERIC, SYNTHETIC_CATEGORICAL
        ),
    }


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[DriftVerdict, EvidentlyDrift]]:
    out = {}
    for name, case in make_cases().items():
        ours = our_check(build_profile(case.reference, case.numeric, case.categorical), case.current)
        theirs = evidently_column_verdicts(case.reference, case.current, case.numeric, case.categorical)
        out[name] = (ours, theirs)
    return out


CASES = ["churn-new-customers", "churn-price-increase", "churn-normal", "synthetic-small", "synthetic-large"]


@pytest.mark.parametrize("case", CASES)
def test_same_method_threshold_and_flag_per_column(
    results: dict[str, tuple[DriftVerdict, EvidentlyDrift]], case: str
) -> None:
    ours, theirs = results[case]
    assert {c.column for c in ours.columns} == set(theirs.columns)
    for column in ours.columns:
        method, threshold, _, drifted = theirs.columns[column.column]
        assert (column.column, column.method, column.threshold, column.drifted) == (
            column.column,
            method,
            threshold,
            drifted,
        )


@pytest.mark.parametrize("case", CASES)
def test_same_scores(results: dict[str, tuple[DriftVerdict, EvidentlyDrift]], case: str) -> None:
    """Every score but the chi-square's: ours is the two-sample test, Evidently's the goodness-of-fit one."""
    ours, theirs = results[case]
    data = make_cases()[case]
    for column in ours.columns:
        score = theirs.columns[column.column][2]
        if column.method == CHI_SQUARE:
            score = _two_sample_chi_square(data.reference[column.column], data.current[column.column])
        assert math.isclose(column.score, score, rel_tol=REL_TOL, abs_tol=ABS_TOL), (column.column, column.score, score)


def _two_sample_chi_square(reference: pd.Series, current: pd.Series) -> float:
    """scipy's test of homogeneity on the two columns' counts of each value (missing values left out), as text."""
    from scipy.stats import chi2_contingency

    counts = pd.concat([reference.dropna().astype(str).value_counts(), current.dropna().astype(str).value_counts()],
                       axis=1).fillna(0)  # fmt: skip
    return float(chi2_contingency(counts.to_numpy().T, correction=False).pvalue)


@pytest.mark.parametrize("case", CASES)
def test_same_dataset_verdict(results: dict[str, tuple[DriftVerdict, EvidentlyDrift]], case: str) -> None:
    ours, theirs = results[case]
    assert ours.share == theirs.share
    assert ours.is_drift == theirs.drift


def test_the_datasets_cover_every_method_and_both_verdicts(
    results: dict[str, tuple[DriftVerdict, EvidentlyDrift]],
) -> None:
    methods = {name: {c.method for c in ours.columns} for name, (ours, _) in results.items()}
    assert methods["synthetic-small"] == {KS, CHI_SQUARE, Z_TEST}
    assert methods["synthetic-large"] == {KS, WASSERSTEIN, JENSEN_SHANNON}
    assert methods["churn-normal"] == {WASSERSTEIN, JENSEN_SHANNON}
    statuses = {name: ours.status for name, (ours, _) in results.items()}
    assert statuses["churn-new-customers"] == "drift"
    assert statuses["churn-normal"] == "no drift"
    assert statuses["synthetic-small"] == statuses["synthetic-large"] == "drift"
    price = {c.column for c in results["churn-price-increase"][0].columns if c.drifted}
    assert {"monthly_charges", "total_charges"} <= price


def test_report_is_built_from_samples_and_says_so(tmp_path: Path) -> None:
    case = make_cases()["churn-new-customers"]
    # Three columns, not nineteen: Evidently's plots take a second a column, and the sampling is the same.
    numeric, categorical = ["tenure", "monthly_charges"], ["contract"]
    profile = build_profile(case.reference, numeric, categorical, sample_rows=800)
    verdict = our_check(profile, case.current)
    path = build_report(profile, case.current, tmp_path / "drift" / "report.html", max_rows=500, verdict=verdict)
    html = path.read_text(encoding="utf-8")
    assert path.stat().st_size > 100_000  # self-contained: the plotting code is inlined
    assert "Built from samples" in html
    assert f"a sample of 500 of {len(case.reference):,} reference rows" in html
    assert "a sample of 500 of 1,000 current rows" in html
    assert "Verdict on the full data" in html
    # Evidently picks tests by the size it is given: 500 sampled reference rows get p-value tests.
    assert "K-S p_value" in html


def test_report_takes_a_true_false_feature_of_the_training_snapshot(tmp_path: Path) -> None:
    """pandas reads a CSV column of True/False as booleans; the profile's sample keeps them, Evidently subtracts."""
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"member": rng.random(600) < 0.3, "visits": rng.poisson(3, 600).astype(float)})
    current = pd.DataFrame({"member": (rng.random(400) < 0.8).astype(float), "visits": rng.poisson(3, 400) * 1.0})
    profile = build_profile(reference, ["member", "visits"], [], sample_rows=600)
    assert profile.sample["member"].dtype == bool

    path = build_report(profile, current, tmp_path / "report.html", max_rows=500, verdict=our_check(profile, current))

    html = path.read_text(encoding="utf-8")
    assert "member" in html
    assert "Verdict on the full data" in html


def test_report_on_a_window_of_identical_rows_is_built_without_numpys_warnings(tmp_path: Path) -> None:
    """Trial 20: a load test's 1,000 copies of one request: Evidently's correlations divide by a zero spread.

    pytest turns every warning into an error here; drift-check printed four of numpy's.
    """
    rng = np.random.default_rng(4)
    reference = pd.DataFrame({"visits": rng.poisson(3, 600) * 1.0, "spend": rng.normal(50, 9, 600)})
    current = pd.DataFrame({"visits": [2.0] * 1000, "spend": [41.5] * 1000})
    profile = build_profile(reference, ["visits", "spend"], [], sample_rows=600)
    path = build_report(profile, current, tmp_path / "report.html", max_rows=500, verdict=our_check(profile, current))
    assert "Verdict on the full data" in path.read_text(encoding="utf-8")
