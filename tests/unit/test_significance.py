import numpy as np
import pytest
from sklearn import metrics as skm

from driftloop.core import significance
from driftloop.core.significance import MAX_BOOTSTRAP_ROWS, paired_bootstrap, weighted_metric

SKLEARN = {
    "roc_auc": lambda y, p: skm.roc_auc_score(y, p),
    "accuracy": lambda y, p: skm.accuracy_score(y, p > 0.5),
    "log_loss": lambda y, p: skm.log_loss(y, p, labels=[0, 1]),
    "precision": lambda y, p: skm.precision_score(y, p > 0.5, zero_division=0),
    "recall": lambda y, p: skm.recall_score(y, p > 0.5, zero_division=0),
    "f1": lambda y, p: skm.f1_score(y, p > 0.5, zero_division=0),
}


def _data(rows: int, seed: int, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    # Rounded scores: many ties, which the AUC must count one half.
    score = np.round(1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1.5, rows)))), 2)
    return y, score


@pytest.mark.parametrize("metric", sorted(SKLEARN))
def test_unit_weights_give_sklearns_value(metric: str) -> None:
    y, score = _data(3000, seed=1)
    assert weighted_metric(metric, y, score)[0] == pytest.approx(SKLEARN[metric](y, score), abs=1e-12)


@pytest.mark.parametrize("metric", sorted(SKLEARN))
def test_integer_weights_equal_repeating_rows(metric: str) -> None:
    y, score = _data(400, seed=2)
    weights = np.random.default_rng(3).poisson(1.0, size=(4, y.size)).astype(float)
    values = weighted_metric(metric, y, score, weights)
    for row, value in zip(weights.astype(int), values, strict=True):
        repeated = np.repeat(np.arange(y.size), row)
        assert value == pytest.approx(SKLEARN[metric](y[repeated], score[repeated]), abs=1e-12)


def test_unknown_metric_is_named() -> None:
    with pytest.raises(ValueError, match="no significance test for metric 'rmse'"):
        weighted_metric("rmse", np.array([0, 1]), np.array([0.2, 0.8]))


def test_the_same_model_is_never_significantly_different() -> None:
    y, score = _data(2000, seed=4)
    result = paired_bootstrap("roc_auc", y, score, score, seed=0)
    assert result.improvement == 0
    assert (result.low, result.high) == (0, 0)
    assert not result.significantly_better
    assert not result.significantly_worse


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_better_model_is_significantly_better_and_the_reverse_worse(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 1500)
    strong = 1 / (1 + np.exp(-(2.0 * (2 * y - 1) + rng.normal(0, 1, y.size))))
    weak = 1 / (1 + np.exp(-(0.5 * (2 * y - 1) + rng.normal(0, 1, y.size))))
    better = paired_bootstrap("roc_auc", y, strong, weak, resamples=500, seed=seed)
    assert better.significantly_better
    assert better.low > 0.05
    worse = paired_bootstrap("roc_auc", y, weak, strong, resamples=500, seed=seed)
    assert worse.significantly_worse
    assert worse.improvement == pytest.approx(-better.improvement)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_two_models_of_equal_skill_are_not_significantly_different(seed: int) -> None:
    # Each model sees the label through its own independent noise: the same skill, different mistakes.
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 2, 1500)
    first = 1 / (1 + np.exp(-((2 * y - 1) + rng.normal(0, 1, y.size))))
    second = 1 / (1 + np.exp(-((2 * y - 1) + rng.normal(0, 1, y.size))))
    result = paired_bootstrap("roc_auc", y, first, second, confidence=0.99, resamples=500, seed=seed)
    assert result.low < 0 < result.high


def test_log_loss_improvement_points_the_right_way() -> None:
    y, score = _data(2000, seed=5, signal=2.0)
    blurred = 0.5 + (score - 0.5) * 0.3  # the same ranking, worse calibration: higher log loss
    result = paired_bootstrap("log_loss", y, score, blurred, seed=0)
    assert result.candidate < result.champion
    assert result.improvement > 0
    assert result.significantly_better


def test_seeded_and_reproducible() -> None:
    y, a = _data(1000, seed=6)
    _, b = _data(1000, seed=7)
    assert paired_bootstrap("f1", y, a, b, seed=9) == paired_bootstrap("f1", y, a, b, seed=9)
    assert paired_bootstrap("f1", y, a, b, seed=9) != paired_bootstrap("f1", y, a, b, seed=10)


def test_large_sets_are_sampled_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(significance, "MAX_BOOTSTRAP_ROWS", 500)
    y, a = _data(2000, seed=8)
    result = significance.paired_bootstrap("accuracy", y, a, a[::-1].copy(), resamples=200)
    assert (result.rows, result.rows_used) == (2000, 500)
    assert "on a sample of 500 rows" in result.describe()
    assert MAX_BOOTSTRAP_ROWS == 50_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": 1.0}, "confidence must lie in"),
        ({"resamples": 10}, "at least 100 bootstrap resamples"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, float], match: str) -> None:
    y, a = _data(100, seed=9)
    with pytest.raises(ValueError, match=match):
        paired_bootstrap("roc_auc", y, a, a, **kwargs)  # type: ignore[arg-type]


def test_unequal_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_bootstrap("roc_auc", np.array([0, 1]), np.array([0.1, 0.9]), np.array([0.5]))


# ------------------------------------------------------------------------------------------ DeLong (ROC AUC)


def _brute_force_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong's difference and its variance straight from the definition: every positive against every negative."""

    def placements(score: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        pos, neg = score[y == 1], score[y == 0]
        wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return float(wins.mean()), wins.mean(axis=1), wins.mean(axis=0)

    auc_a, pa, na = placements(a)
    auc_b, pb, nb = placements(b)
    variance = np.var(pa - pb, ddof=1) / pa.size + np.var(na - nb, ddof=1) / na.size
    return auc_a - auc_b, float(variance)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_its_definition_and_sklearn(seed: int) -> None:
    y, a = _data(400, seed=seed)
    _, b = _data(400, seed=seed + 100)
    b = np.where(y == 1, b, a)  # correlated with a, as two models of the same rows are
    got = significance.delong_difference(y, a, b, confidence=0.95)
    difference, variance = _brute_force_delong(y, a, b)
    assert got.candidate == pytest.approx(skm.roc_auc_score(y, a), abs=1e-12)
    assert got.champion == pytest.approx(skm.roc_auc_score(y, b), abs=1e-12)
    assert got.improvement == pytest.approx(difference, abs=1e-12)
    half_width = 1.959963984540054 * np.sqrt(variance)
    assert (got.low, got.high) == pytest.approx((difference - half_width, difference + half_width), abs=1e-9)
    assert (got.method, got.resamples) == ("DeLong", 0)


def test_delong_and_the_bootstrap_agree_on_the_interval() -> None:
    y, a = _data(5000, seed=3, signal=1.2)
    _, b = _data(5000, seed=4, signal=1.0)
    delong = significance.delong_difference(y, a, b)
    bootstrap = paired_bootstrap("roc_auc", y, a, b, resamples=2000, seed=0)
    width_delong, width_bootstrap = delong.high - delong.low, bootstrap.high - bootstrap.low
    assert width_delong == pytest.approx(width_bootstrap, rel=0.15)
    assert delong.improvement == pytest.approx(bootstrap.improvement, abs=1e-12)


def test_delong_is_wrong_one_time_in_twenty_at_95_percent_on_equal_models() -> None:
    """Two models of equal skill (independent noise on the same signal): 'significant' about 5% of the time."""
    rng = np.random.default_rng(11)
    trials, significant = 400, 0
    for _ in range(trials):
        signal = rng.normal(size=300)
        y = (signal + rng.normal(size=300) > 0).astype(np.int64)
        a, b = signal + rng.normal(size=300), signal + rng.normal(size=300)
        result = significance.delong_difference(y, a, b)
        significant += result.significantly_better or result.significantly_worse
    assert 0.02 <= significant / trials <= 0.09


def test_compare_metric_uses_delong_for_roc_auc_only() -> None:
    y, a = _data(500, seed=5)
    _, b = _data(500, seed=6)
    assert significance.compare_metric("roc_auc", y, a, b).method == "DeLong"
    assert significance.compare_metric("accuracy", y, a, b, resamples=200).method == "paired bootstrap"


def test_delong_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="needs both classes; got 3 positive and 0 negative"):
        significance.delong_difference(np.ones(3), np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1]))


@pytest.mark.parametrize(
    ("candidate", "champion", "says"),
    [
        (0.8312, 0.8101, "roc_auc 0.8312 vs 0.8101: 0.0211 better, 95% CI of the improvement [-0.0100, +0.0500]"),
        (0.7614, 0.8361, "roc_auc 0.7614 vs 0.8361: 0.0747 worse, 95% CI of the improvement [-0.0100, +0.0500]"),
    ],
)
def test_a_difference_is_described_as_better_or_worse_by_how_much(candidate: float, champion: float, says: str) -> None:
    difference = significance.MetricDifference(
        metric="roc_auc", rows=800, rows_used=800, candidate=candidate, champion=champion,
        improvement=candidate - champion, low=-0.01, high=0.05, confidence=0.95, resamples=0, method="DeLong",
    )  # fmt: skip
    assert difference.describe() == says
