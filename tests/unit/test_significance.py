import numpy as np
import pytest
from sklearn import metrics as skm

from driftloop.core import significance
from driftloop.core.significance import MAX_BOOTSTRAP_ROWS, paired_bootstrap, weighted_metric
from driftloop.core.task import TASK_METRICS, TaskKind

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


# ------------------------------------------------------------------------------------------ multiclass and regression

MULTICLASS_SKLEARN = {
    "accuracy": lambda y, p: skm.accuracy_score(y, np.argmax(p, axis=1)),
    "log_loss": lambda y, p: skm.log_loss(y, p, labels=list(range(p.shape[1]))),
    "macro_f1": lambda y, p: skm.f1_score(
        y, np.argmax(p, axis=1), labels=list(range(p.shape[1])), average="macro", zero_division=0
    ),
    "roc_auc_ovr": lambda y, p: skm.roc_auc_score(
        y, p, multi_class="ovr", average="macro", labels=list(range(p.shape[1]))
    ),
}
REGRESSION_SKLEARN = {
    "rmse": lambda y, v: skm.root_mean_squared_error(y, v),
    "mae": lambda y, v: skm.mean_absolute_error(y, v),
    "r2": lambda y, v: skm.r2_score(y, v),
}


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _multiclass_model(
    rng: np.random.Generator, y: np.ndarray, classes: int, signal: float, ties: bool = False
) -> np.ndarray:
    """Probabilities from logits that favour the true class by ``signal`` under unit Gaussian noise."""
    logits = signal * np.eye(classes)[y] + rng.normal(0, 1, (y.size, classes))
    # Whole-number logits repeat across rows, so every column holds ties the AUC must count one half.
    return _softmax(np.round(logits) if ties else logits)


def _multiclass_data(rows: int, classes: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    return y, _multiclass_model(rng, y, classes, signal=1.0, ties=ties)


def _regression_data(rows: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, rows)
    return y, y + rng.normal(0.3, noise, rows)


def test_every_task_metric_has_a_weighted_form() -> None:
    for kind in TaskKind:
        assert set(significance.WEIGHTED_METRICS[kind]) == set(TASK_METRICS[kind])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", [3, 5])
@pytest.mark.parametrize("metric", sorted(MULTICLASS_SKLEARN))
def test_multiclass_unit_weights_give_sklearns_value(metric: str, classes: int, seed: int, ties: bool) -> None:
    y, proba = _multiclass_data(2000, classes, seed, ties)
    expected = MULTICLASS_SKLEARN[metric](y, proba)
    assert weighted_metric(metric, y, proba, kind=TaskKind.MULTICLASS)[0] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", sorted(REGRESSION_SKLEARN))
def test_regression_unit_weights_give_sklearns_value(metric: str, seed: int) -> None:
    y, predicted = _regression_data(2000, seed)
    expected = REGRESSION_SKLEARN[metric](y, predicted)
    assert weighted_metric(metric, y, predicted, kind=TaskKind.REGRESSION)[0] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("metric", sorted(MULTICLASS_SKLEARN))
def test_multiclass_integer_weights_equal_repeating_rows(metric: str) -> None:
    y, proba = _multiclass_data(400, 4, seed=2, ties=True)
    weights = np.random.default_rng(3).poisson(1.0, size=(4, y.size)).astype(float)
    weights[0, :3] = [2, 0, 1]
    values = weighted_metric(metric, y, proba, weights, TaskKind.MULTICLASS)
    for row, value in zip(weights.astype(int), values, strict=True):
        repeated = np.repeat(np.arange(y.size), row)
        assert value == pytest.approx(MULTICLASS_SKLEARN[metric](y[repeated], proba[repeated]), abs=1e-9)


@pytest.mark.parametrize("metric", sorted(REGRESSION_SKLEARN))
def test_regression_integer_weights_equal_repeating_rows(metric: str) -> None:
    y, predicted = _regression_data(400, seed=2)
    weights = np.random.default_rng(3).poisson(1.0, size=(4, y.size)).astype(float)
    weights[0, :3] = [2, 0, 1]
    values = weighted_metric(metric, y, predicted, weights, TaskKind.REGRESSION)
    for row, value in zip(weights.astype(int), values, strict=True):
        repeated = np.repeat(np.arange(y.size), row)
        assert value == pytest.approx(REGRESSION_SKLEARN[metric](y[repeated], predicted[repeated]), abs=1e-9)


def test_multiclass_log_loss_renormalises_rows_that_do_not_sum_to_one() -> None:
    y, proba = _multiclass_data(1000, 3, seed=4)
    proba32 = proba.astype(np.float32)  # a model's output: rows sum to 1 only up to float32 rounding
    assert not np.all(proba32.astype(np.float64).sum(axis=1) == 1)
    normalised = proba32 / proba32.sum(axis=1, keepdims=True, dtype=np.float64)
    got = weighted_metric("log_loss", y, proba32, kind=TaskKind.MULTICLASS)[0]
    assert got == pytest.approx(MULTICLASS_SKLEARN["log_loss"](y, normalised), abs=1e-12)
    doubled = weighted_metric("log_loss", y, 2 * proba, kind=TaskKind.MULTICLASS)[0]
    assert doubled == pytest.approx(MULTICLASS_SKLEARN["log_loss"](y, proba), abs=1e-12)


def test_regression_targets_are_not_truncated_to_integers() -> None:
    y = np.array([0.4, 1.6, 2.5, 3.9])
    predicted = np.array([0.5, 1.5, 2.0, 4.0])
    assert weighted_metric("mae", y, predicted, kind=TaskKind.REGRESSION)[0] == pytest.approx(0.2)
    result = paired_bootstrap("mae", y, predicted, y, kind=TaskKind.REGRESSION, resamples=100)
    assert (result.candidate, result.champion) == (pytest.approx(0.2), 0.0)


def test_r2_of_constant_targets_is_undefined() -> None:
    y = np.full(5, 0.1)
    assert np.isnan(weighted_metric("r2", y, y + 1, kind=TaskKind.REGRESSION)[0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("metric", sorted(MULTICLASS_SKLEARN))
def test_a_better_multiclass_model_is_significantly_better_and_the_reverse_worse(metric: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 1500)
    strong = _multiclass_model(rng, y, 3, signal=3.0)
    weak = _multiclass_model(rng, y, 3, signal=1.0)
    kind = TaskKind.MULTICLASS
    better = paired_bootstrap(metric, y, strong, weak, resamples=500, seed=seed, kind=kind)
    assert better.significantly_better
    worse = paired_bootstrap(metric, y, weak, strong, resamples=500, seed=seed, kind=kind)
    assert worse.significantly_worse
    assert worse.improvement == pytest.approx(-better.improvement)


def _jittered(rng: np.random.Generator, proba: np.ndarray) -> np.ndarray:
    """The same probabilities plus noise far below any gap between them, renormalised."""
    jittered = np.abs(proba + rng.normal(0, 1e-9, proba.shape))
    return jittered / jittered.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "roc_auc_ovr"])
def test_a_multiclass_model_against_itself_with_tiny_noise_is_not_significantly_different(
    metric: str, seed: int
) -> None:
    # Labels and rankings survive the noise, so every replicate's difference is exactly zero.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 1500)
    proba = _multiclass_model(rng, y, 3, signal=1.0)
    result = paired_bootstrap(
        metric, y, _jittered(rng, proba), proba, resamples=500, seed=seed, kind=TaskKind.MULTICLASS
    )
    assert (result.improvement, result.low, result.high) == (0, 0, 0)
    assert not result.significantly_better
    assert not result.significantly_worse


def test_log_loss_of_a_model_against_itself_with_tiny_noise_is_rarely_significant() -> None:
    """Log loss moves with any noise, so at 95% about one comparison in twenty is 'significant' by chance.

    The percentile bootstrap runs a little above that on these skewed per-row differences (9 of these 100).
    """
    trials, significant = 100, 0
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 3, 1500)
        proba = _multiclass_model(rng, y, 3, signal=1.0)
        result = paired_bootstrap(
            "log_loss", y, _jittered(rng, proba), proba, resamples=500, seed=seed, kind=TaskKind.MULTICLASS
        )
        assert abs(result.improvement) < 1e-6
        assert result.low < result.high
        significant += result.significantly_better or result.significantly_worse
    assert significant <= 15


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("metric", sorted(REGRESSION_SKLEARN))
def test_a_better_regressor_is_significantly_better_and_an_identical_one_is_not(metric: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, 1000)
    close = y + rng.normal(0, 0.5, y.size)
    far = y + rng.normal(0, 2.0, y.size)
    kind = TaskKind.REGRESSION
    better = paired_bootstrap(metric, y, close, far, resamples=500, seed=seed, kind=kind)
    assert better.significantly_better
    assert not better.significantly_worse
    assert paired_bootstrap(metric, y, far, close, resamples=500, seed=seed, kind=kind).significantly_worse
    same = paired_bootstrap(metric, y, close, close.copy(), resamples=500, seed=seed, kind=kind)
    assert (same.improvement, same.low, same.high) == (0, 0, 0)
    assert not same.significantly_better
    assert not same.significantly_worse


@pytest.mark.parametrize(
    ("metric", "kind"),
    [("rmse", TaskKind.REGRESSION), ("mae", TaskKind.REGRESSION), ("log_loss", TaskKind.MULTICLASS)],
)
def test_lower_is_better_metrics_count_a_lower_candidate_as_an_improvement(metric: str, kind: TaskKind) -> None:
    rng = np.random.default_rng(7)
    if kind is TaskKind.REGRESSION:
        y = rng.normal(0, 1, 800)
        good, bad = y + rng.normal(0, 0.2, y.size), y + rng.normal(0, 1.0, y.size)
    else:
        y = rng.integers(0, 3, 800)
        good, bad = _multiclass_model(rng, y, 3, signal=3.0), _multiclass_model(rng, y, 3, signal=0.5)
    result = paired_bootstrap(metric, y, good, bad, resamples=300, kind=kind)
    assert result.candidate < result.champion
    assert result.improvement == pytest.approx(result.champion - result.candidate)
    assert result.improvement > 0
    assert result.low > 0


@pytest.mark.parametrize(
    ("kind", "metric", "valid"),
    [
        (TaskKind.MULTICLASS, "roc_auc", "accuracy, log_loss, macro_f1, roc_auc_ovr"),
        (TaskKind.REGRESSION, "accuracy", "rmse, mae, r2"),
        (TaskKind.BINARY, "macro_f1", "roc_auc, accuracy, log_loss, precision, recall, f1"),
    ],
)
def test_an_unknown_metric_for_the_kind_names_the_valid_ones(kind: TaskKind, metric: str, valid: str) -> None:
    y, score = np.array([0, 1, 2, 0]), np.full((4, 3), 1 / 3)
    if kind is not TaskKind.MULTICLASS:
        score = np.array([0.2, 0.8, 0.6, 0.1])
    with pytest.raises(
        ValueError, match=f"no significance test for metric '{metric}' of a {kind} model; choose one of: {valid}$"
    ):
        weighted_metric(metric, y, score, kind=kind)
    with pytest.raises(ValueError, match=f"choose one of: {valid}$"):
        paired_bootstrap(metric, y, score, score, kind=kind)
    with pytest.raises(ValueError, match=f"choose one of: {valid}$"):
        significance.compare_metric(metric, y, score, score, kind=kind)


def test_only_binary_roc_auc_uses_delong() -> None:
    assert significance.interval_method("roc_auc") == "DeLong"
    assert significance.interval_method("roc_auc", TaskKind.BINARY) == "DeLong"
    assert significance.interval_method("roc_auc_ovr", TaskKind.MULTICLASS) == "paired bootstrap"
    assert significance.interval_method("r2", TaskKind.REGRESSION) == "paired bootstrap"
    y, a = _multiclass_data(300, 3, seed=1)
    _, b = _multiclass_data(300, 3, seed=2)
    kind = TaskKind.MULTICLASS
    compared = significance.compare_metric("roc_auc_ovr", y, a, b, resamples=200, seed=3, kind=kind)
    assert compared.method == "paired bootstrap"
    assert compared == paired_bootstrap("roc_auc_ovr", y, a, b, resamples=200, seed=3, kind=kind)


def test_large_multiclass_sets_are_sampled_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(significance, "MAX_BOOTSTRAP_ROWS", 500)
    y, a = _multiclass_data(2000, 4, seed=8)
    b = a[::-1].copy()
    result = significance.paired_bootstrap("macro_f1", y, a, b, resamples=200, kind=TaskKind.MULTICLASS)
    assert (result.rows, result.rows_used) == (2000, 500)
    assert result.candidate == pytest.approx(MULTICLASS_SKLEARN["macro_f1"](y, a), abs=1e-12)
    assert result.low <= result.improvement <= result.high


@pytest.mark.parametrize(
    ("y", "candidate", "champion", "match"),
    [
        (np.array([0, 1, 2]), np.full(3, 0.5), np.full(3, 0.5), r"shape \(rows, classes ≥ 2\)"),
        (np.array([0, 1, 2]), np.full((3, 3), 1 / 3), np.full((2, 3), 1 / 3), "same non-zero number"),
        (np.array([0, 1, 2]), np.full((3, 3), 1 / 3), np.full((3, 4), 1 / 4), "different shapes"),
        (np.array([0, 1, 3]), np.full((3, 3), 1 / 3), np.full((3, 3), 1 / 3), r"class indices 0\.\.2"),
        (np.array([0, 1, -1]), np.full((3, 3), 1 / 3), np.full((3, 3), 1 / 3), r"class indices 0\.\.2"),
    ],
)
def test_malformed_multiclass_inputs_are_refused(
    y: np.ndarray, candidate: np.ndarray, champion: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        paired_bootstrap("accuracy", y, candidate, champion, resamples=100, kind=TaskKind.MULTICLASS)
