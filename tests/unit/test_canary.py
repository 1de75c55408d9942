"""Canary judgement on the text the real server's metrics render (serving.metrics.ServingMetrics)."""

from __future__ import annotations

import math

import pytest

from driftloop.deploy.canary import Thresholds, Window, histogram_quantile, judge, parse_metrics, window
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


def test_too_few_requests_are_not_judged_even_with_faults() -> None:
    verdict = judge(make_window(5, errors=2), make_window(400), THRESHOLDS)
    assert verdict.alarm is None
    assert "too few to judge" in verdict.detail


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
    assert "the ratio needs 100" in verdict.detail
    # The same slowdown on every request of a window big enough to measure a p99 is an alarm ...
    slow = judge(make_window(150, seconds_each=0.016), busy_old, THRESHOLDS)
    assert slow.alarm is not None
    assert "the old version's" in slow.alarm
    # ... and so is one too few for the ratio but over the absolute limit.
    assert judge(make_window(62, seconds_each=0.4), busy_old, THRESHOLDS).alarm is not None
    # A small old window is no baseline.
    assert judge(make_window(150, seconds_each=0.016), make_window(60, seconds_each=0.004), THRESHOLDS).alarm is None


def test_relative_alarm_ignores_noise_below_the_floor_and_tiny_windows() -> None:
    # 4 ms against 0.2 ms is 20×, but both are well under the 10 ms floor.
    assert judge(make_window(100, seconds_each=0.004), make_window(100, seconds_each=0.0002), THRESHOLDS).alarm is None
    few = judge(make_window(5, seconds_each=0.4), None, THRESHOLDS)
    assert few.alarm is None
    assert "too few" in few.detail


def test_thresholds_from_settings() -> None:
    settings = Settings(rollout_max_error_rate=0.05, rollout_max_p99_ms=100, rollout_max_p99_ratio=2)
    got = Thresholds.from_settings(settings)
    assert (got.max_error_rate, got.max_p99_ms, got.max_p99_ratio) == (0.05, 100, 2)
