"""Canary judgement on the text the real server's metrics render (serving.metrics.ServingMetrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from driftloop.deploy.canary import (
    SoFar,
    Thresholds,
    Window,
    chance_of_at_least,
    histogram_quantile,
    judge,
    judge_step,
    parse_metrics,
    pooled,
    slower_than,
    window,
)
from driftloop.errors import DeployError
from driftloop.serving.metrics import ServingMetrics
from driftloop.settings import Settings

THRESHOLDS = Thresholds(max_error_rate=0.01, max_p99_ms=250, max_p99_ratio=3.0, min_requests=20)


def serve(
    metrics: ServingMetrics,
    latencies: list[float],
    errors: int = 0,
    endpoint: str = "predict",
    reason: str = "invalid_value",
) -> None:
    """What the server records per request: one latency each; the first ``errors`` of them failed (``reason``)."""
    for index, seconds in enumerate(latencies):
        metrics.request_timer("churn", endpoint).observe(seconds)
        if index < errors:
            metrics.count_error("churn", endpoint, reason)
        else:
            metrics.count_predictions("churn", "7", "No")


def scrape(metrics: ServingMetrics, at: float):  # noqa: ANN201 (a Scrape)
    return parse_metrics(metrics.render().decode(), at)


def test_parse_reads_requests_errors_buckets_and_version() -> None:
    metrics = ServingMetrics()
    metrics.set_model("churn", "7", "abc")
    serve(metrics, [0.003] * 5, errors=2)
    serve(metrics, [0.02], endpoint="predict_batch")
    got = scrape(metrics, 1.0)
    assert got.requests == 6
    assert got.errors == {"invalid_value": 2}
    assert got.predictions == 4  # 3 accepted on predict, 1 on predict_batch
    assert got.version == "7"
    assert got.buckets[math.inf] == 6
    assert got.buckets[0.005] == 5  # summed over endpoints
    assert got.buckets[0.025] == 6


def test_parse_refuses_text_that_is_not_a_driftloop_server() -> None:
    with pytest.raises(DeployError, match="driftloop_request_latency_seconds"):
        parse_metrics("# TYPE up gauge\nup 1\n", 0)
    with pytest.raises(DeployError, match="unreadable"):
        parse_metrics("this is {{ not prometheus", 0)


def test_window_subtracts_two_scrapes() -> None:
    metrics = ServingMetrics()
    serve(metrics, [0.001] * 10)
    before = scrape(metrics, 10.0)
    serve(metrics, [0.2] * 4, errors=1)
    after = scrape(metrics, 13.5)
    got = window(before, after)
    assert got.seconds == 3.5
    assert got.requests == 4
    assert got.errors == {"invalid_value": 1}
    assert got.error_rate == 0.25
    assert got.predictions == 3
    assert got.buckets[0.001] == 0
    assert got.buckets[math.inf] == 4
    assert 100 < got.p99_ms <= 250  # every request of the window was in the (0.1, 0.25] bucket


def test_window_after_a_restart_counts_from_zero() -> None:
    old = ServingMetrics()
    serve(old, [0.001] * 50)
    restarted = ServingMetrics()
    serve(restarted, [0.001] * 3)
    got = window(scrape(old, 0), scrape(restarted, 1))
    assert got.requests == 3


def test_histogram_quantile_matches_prometheus() -> None:
    inf = math.inf
    # 100 observations: 50 in (0, 1], 40 in (1, 2], 10 in (2, 4]
    buckets = {1.0: 50, 2.0: 90, 4.0: 100, inf: 100}
    assert histogram_quantile(0.5, buckets) == 1.0
    assert histogram_quantile(0.7, buckets) == pytest.approx(1.5)
    assert histogram_quantile(0.99, buckets) == pytest.approx(3.8)
    assert histogram_quantile(0.99, {1.0: 0, 2.0: 0, inf: 10}) == 2.0  # all above the last bound
    assert histogram_quantile(0.99, {1.0: 0, inf: 0}) is None
    assert histogram_quantile(0.5, {}) is None
    with pytest.raises(ValueError, match="outside"):
        histogram_quantile(1.5, buckets)


def make_window(
    requests: int,
    errors: int = 0,
    seconds_each: float = 0.002,
    reason: str = "internal",
    slowest: tuple[float, ...] = (),
) -> Window:
    """``requests`` requests taking ``seconds_each``, except the last few, which take ``slowest``."""
    metrics = ServingMetrics()
    before = scrape(metrics, 0)
    serve(metrics, [seconds_each] * (requests - len(slowest)) + list(slowest), errors=errors, reason=reason)
    return window(before, scrape(metrics, 5))


def test_no_traffic_is_no_alarm_and_says_so() -> None:
    verdict = judge(make_window(0), make_window(100), THRESHOLDS)
    assert verdict.alarm is None
    assert "no traffic" in verdict.detail


def test_healthy_candidate_is_no_alarm() -> None:
    verdict = judge(make_window(200, errors=1), make_window(800), THRESHOLDS)
    assert verdict.alarm is None
    assert "200 requests" in verdict.detail


def test_server_fault_rate_alarm_names_the_rate_and_the_reasons() -> None:
    verdict = judge(make_window(100, errors=5), make_window(400), THRESHOLDS)
    assert verdict.alarm is not None
    assert "server fault rate 5.00% > 1.00%" in verdict.alarm
    assert "internal 5" in verdict.alarm


def test_rejected_client_input_is_not_the_candidates_fault() -> None:
    verdict = judge(make_window(100, errors=30, reason="invalid_value"), make_window(400), THRESHOLDS)
    assert verdict.alarm is None
    assert "rejected input 30.00%" in verdict.detail


def test_too_few_requests_alarm_only_on_faults_beyond_chance() -> None:
    # 2 faults in 5 requests: a candidate within 1% does that with chance 1e-3, too likely to roll it back for ...
    verdict = judge(make_window(5, errors=2), make_window(400), THRESHOLDS)
    assert verdict.alarm is None
    assert "too few for a rate or a p99" in verdict.detail
    # ... 3 in 5 with chance 1e-5, and every one of 8 far less: a candidate that fails that much is caught however
    # little traffic it gets.
    for requests, errors in ((5, 3), (8, 8), (19, 4)):
        alarm = judge(make_window(requests, errors=errors), make_window(400), THRESHOLDS).alarm
        assert alarm is not None
        assert alarm.startswith(f"server faults on {errors} of {requests} requests (internal {errors})"), alarm


def test_absolute_p99_alarm() -> None:
    verdict = judge(make_window(100, seconds_each=0.4), None, THRESHOLDS)
    assert verdict.alarm is not None
    assert verdict.alarm.startswith("p99 ")
    assert "> 250 ms" in verdict.alarm


def test_relative_p99_alarm_against_the_old_version() -> None:
    slow = make_window(100, seconds_each=0.08)
    assert judge(slow, None, THRESHOLDS).alarm is None  # under the absolute 250 ms
    verdict = judge(slow, make_window(100, seconds_each=0.004), THRESHOLDS)
    assert verdict.alarm is not None
    assert "the old version's" in verdict.alarm
    assert "limit 3×" in verdict.alarm


def test_relative_alarm_needs_enough_requests_in_both_windows() -> None:
    # The case seen in a real rollout: a healthy candidate's 62 requests, one of them cold, against a busy old slot.
    cold = make_window(62, seconds_each=0.004, slowest=(0.0157,))
    busy_old = make_window(554, seconds_each=0.004)
    verdict = judge(cold, busy_old, THRESHOLDS)
    assert verdict.alarm is None
    assert "too few to compare p99s (that needs 100" in verdict.detail
    # The same slowdown on every request of a window big enough to measure a p99 is an alarm ...
    slow = judge(make_window(150, seconds_each=0.016), busy_old, THRESHOLDS)
    assert slow.alarm is not None
    assert "the old version's" in slow.alarm
    # ... and so is one too few for the ratio but over the absolute limit.
    assert judge(make_window(62, seconds_each=0.4), busy_old, THRESHOLDS).alarm is not None
    # A small old window is no baseline.
    assert judge(make_window(150, seconds_each=0.016), make_window(60, seconds_each=0.004), THRESHOLDS).alarm is None


def test_relative_alarm_ignores_noise_below_the_floor_and_one_slow_request_in_a_tiny_window() -> None:
    # 4 ms against 0.2 ms is 20×, but both are well under the 10 ms floor.
    assert judge(make_window(100, seconds_each=0.004), make_window(100, seconds_each=0.0002), THRESHOLDS).alarm is None
    few = judge(make_window(5, slowest=(0.4,)), None, THRESHOLDS)
    assert few.alarm is None
    assert "too few" in few.detail


def test_a_candidate_too_slow_to_get_many_requests_is_still_caught() -> None:
    """The rollout that promoted a candidate throttled to 1% of a CPU: it held its clients so long that each window
    got fewer requests than the point rules need (41, 17, 8: those numbers are from that run)."""
    old = make_window(347, seconds_each=0.002, slowest=(0.006,) * 6)
    # 10%: 41 requests, a quarter of them over 3× the old p99, none over 250 ms: the ratio's count.
    verdict = judge(make_window(41, slowest=(0.15,) * 10), old, THRESHOLDS)
    assert verdict.alarm is not None
    assert verdict.alarm.startswith(
        "10 of 41 requests slower than 21.3 ms (3× the old version's p99 of 7.1 ms): a p99 within 21.3 ms does that "
        "with chance "
    ), verdict.alarm
    # Against a faster old version the ratio's limit is its 10 ms floor, and the alarm says so.
    fast_old = make_window(347, seconds_each=0.002, slowest=(0.005,) * 4)
    floor = judge(make_window(41, slowest=(0.15,) * 10), fast_old, THRESHOLDS).alarm
    assert floor is not None
    assert floor.startswith(
        "10 of 41 requests slower than 10.0 ms (the ratio's floor; 3× the old version's p99 of 2.8 ms is below it)"
    ), floor
    # 50%: 17 requests, 6 of them over 250 ms: the absolute limit's count; 100%: 8, every one over it.
    for requests, slow in ((17, 6), (8, 8)):
        alarm = judge(make_window(requests, slowest=(0.9,) * slow), None, THRESHOLDS).alarm
        assert alarm is not None
        assert alarm.startswith(f"{slow} of {requests} requests slower than 250 ms: a p99 within 250 ms"), alarm
    # A count within chance is not enough: 2 of 41 over the ratio's limit (a new container's first requests).
    assert judge(make_window(41, slowest=(0.15,) * 2), old, THRESHOLDS).alarm is None


@pytest.mark.parametrize("requests", [5, 8, 12, 17, 41, 62, 99, 150])
def test_on_data_whose_truth_is_known_healthy_candidates_pass_and_slow_ones_are_caught(requests: int) -> None:
    """The old version and a healthy candidate answer alike (median 4 ms, p99 about 13 ms), the candidate with up
    to two cold first requests of up to 200 ms (one from 100 requests on: two of 150 would be its p99). A slow
    candidate answers 30 times slower, as the throttled one did. Over 100 seeds: no healthy candidate raises an
    alarm at any size; every slow one is caught from 17 requests on, and most on 5, 8 or 12."""
    rng = np.random.default_rng(requests)
    caught = 0
    for _ in range(100):
        old = make_window_of(rng.lognormal(math.log(0.004), 0.5, size=350))
        healthy = rng.lognormal(math.log(0.004), 0.5, size=requests)
        cold = rng.uniform(0.01, 0.2, size=rng.integers(0, 3 if requests < 100 else 2))
        healthy[: len(cold)] = cold
        verdict = judge(make_window_of(healthy), old, THRESHOLDS)
        assert verdict.alarm is None, verdict
        slow = make_window_of(30 * rng.lognormal(math.log(0.004), 0.5, size=requests))
        caught += judge(slow, old, THRESHOLDS).alarm is not None
    assert caught == 100 if requests >= 17 else caught >= 75, caught


@pytest.mark.parametrize("requests", [8, 41, 99])
def test_on_data_whose_truth_is_known_a_healthy_canary_passes_every_step_pooled(requests: int) -> None:
    """A whole canary of three steps, drawn as in the test above, the cold requests in the first: over 30 seeds no
    step raises an alarm, alone or with the steps before it."""
    rng = np.random.default_rng(1000 + requests)
    for _ in range(30):
        old = make_window_of(rng.lognormal(math.log(0.004), 0.5, size=350))
        steps = [rng.lognormal(math.log(0.004), 0.5, size=requests) for _ in range(3)]
        cold = rng.uniform(0.01, 0.2, size=rng.integers(0, 3))
        steps[0][: len(cold)] = cold
        so_far = SoFar()
        for latencies in steps:
            step = make_window_of(latencies)
            so_far = so_far.add(step, old)
            verdict = judge_step(step, old, so_far, THRESHOLDS)
            assert verdict.alarm is None, verdict


def test_a_step_is_judged_alone_and_with_the_steps_before_it() -> None:
    """Windows too small to judge add up: 15 requests with 2 over 250 ms are within chance, 30 with 4 are a p99
    over it. The old version's requests so far are the baseline where its own in the step are too few for a p99."""
    old = make_window(350, slowest=(0.004,) * 4)
    starved = make_window(15, slowest=(0.9, 0.9))
    so_far = SoFar().add(starved, old)
    first = judge_step(starved, old, so_far, THRESHOLDS)
    assert first.alarm is None
    assert "15 requests are too few for a rate or a p99, and no count over a limit is beyond chance" in first.detail
    assert "; old version in this step: 350 requests" in first.detail
    so_far = so_far.add(starved, None)  # 100%: the old version got nothing this step
    second = judge_step(starved, None, so_far, THRESHOLDS)
    assert second.alarm is not None
    assert second.alarm.startswith("over the canary's steps so far (30 requests): p99 "), second.alarm
    assert second.alarm.endswith("> 250 ms")
    assert second.detail.startswith("steps so far: candidate: 30 requests in 10.0s")
    assert "old version over the steps so far: 350 requests" in second.detail
    assert second.detail.endswith("this step's candidate: " + starved.describe())
    # A step's own alarm is reported as its own.
    healthy = make_window(15)
    faulty = make_window(30, errors=10)
    own = judge_step(faulty, old, SoFar().add(healthy, old).add(faulty, old), THRESHOLDS).alarm
    assert own is not None
    assert own.startswith("server fault rate 33.33% > 1.00%"), own


def test_a_healthy_candidates_cold_first_requests_do_not_fail_the_steps_pooled() -> None:
    """Two cold first requests of 62, against an old p99 of 8 ms: a 1.6% share of 124 pooled requests would make
    the pooled p99 one of them, 4× the old one; the steps pooled are judged by counts, and 2 of 124 is chance."""
    old = make_window(400, seconds_each=0.004, slowest=(0.008,) * 6)
    cold_start = make_window(62, seconds_each=0.004, slowest=(0.03, 0.03))
    warm = make_window(62, seconds_each=0.004)
    so_far = SoFar().add(cold_start, old)
    assert judge_step(cold_start, old, so_far, THRESHOLDS).alarm is None
    so_far = so_far.add(warm, old)
    assert so_far.candidate is not None
    assert judge(so_far.candidate, so_far.old, THRESHOLDS).alarm is not None  # the comparison of p99s would fire
    assert judge_step(warm, old, so_far, THRESHOLDS).alarm is None


def test_a_step_is_compared_with_the_old_version_at_the_same_time_when_it_can_be() -> None:
    """The host slowed down during the step: both versions' p99s rose together. The step's own old window has the
    requests for a p99, so the candidate is compared with it, not with the faster steps before."""
    earlier_old = make_window(400, seconds_each=0.004)
    slow_host_old = make_window(300, seconds_each=0.03)
    slow_host_candidate = make_window(150, seconds_each=0.03)
    so_far = SoFar().add(make_window(150), earlier_old).add(slow_host_candidate, slow_host_old)
    verdict = judge_step(slow_host_candidate, slow_host_old, so_far, THRESHOLDS)
    assert verdict.alarm is None
    assert "; old version in this step: 300 requests" in verdict.detail
    assert judge(slow_host_candidate, earlier_old, THRESHOLDS).alarm is not None  # against the earlier, faster ones


def make_window_of(latencies: np.ndarray) -> Window:
    metrics = ServingMetrics()
    before = scrape(metrics, 0)
    serve(metrics, latencies.tolist())
    return window(before, scrape(metrics, 5))


def test_windows_pool_into_one_baseline() -> None:
    first, second = make_window(100, errors=1), make_window(50, seconds_each=0.02)
    both = pooled(first, second)
    assert both is not None
    assert (both.requests, both.seconds, both.errors) == (150, 10, {"internal": 1})
    assert both.buckets[math.inf] == 150
    assert both.buckets[0.0025] == 100  # the first window's 2 ms requests; the second's 20 ms ones are above
    assert pooled(None, second) is second
    assert pooled(first, None) is first
    assert pooled(None, None) is None


def test_slower_than_counts_only_requests_certainly_over() -> None:
    buckets = make_window(10, seconds_each=0.002, slowest=(0.03, 0.3, 3.0)).buckets
    assert slower_than(buckets, 0.025) == 3  # 0.025 is a bound: all three are above it
    assert slower_than(buckets, 0.02) == 3  # the first bound at or past 0.02 is 0.025
    assert slower_than(buckets, 0.04) == 2  # 0.03 is in (0.025, 0.05]: maybe under 0.04, not counted
    assert slower_than(buckets, 2.5) == 1
    assert slower_than(buckets, 10.0) == 0  # past the last bound nothing is certain
    assert slower_than({}, 0.1) == 0


@pytest.mark.parametrize("p", [0.0001, 0.01, 0.3])
def test_chance_of_at_least_is_the_binomial_tail(p: float) -> None:
    for n in (1, 7, 41, 350, 20_000):
        for k in sorted({0, 1, 2, 3, n // 100, n // 10, n // 2, n, n + 1}):
            expected = float(binom.sf(k - 1, n, p)) if k > 0 else 1.0
            assert chance_of_at_least(k, n, p) == pytest.approx(expected, rel=1e-9, abs=1e-300), (k, n, p)
    assert chance_of_at_least(1, 10, 0.0) == 0.0
    assert chance_of_at_least(10, 10, 1.0) == 1.0


def test_thresholds_from_settings() -> None:
    settings = Settings(rollout_max_error_rate=0.05, rollout_max_p99_ms=100, rollout_max_p99_ratio=2)
    got = Thresholds.from_settings(settings)
    assert (got.max_error_rate, got.max_p99_ms, got.max_p99_ratio) == (0.05, 100, 2)
