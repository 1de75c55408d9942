"""Canary judgement from the slots' own ``/metrics``: two scrapes make a window, a window gets a verdict.

Pure: the rollout scrapes, this module reads the Prometheus text (metric names from ``serving/metrics.py``),
subtracts, and decides. Every request a slot handles is timed in ``driftloop_request_latency_seconds`` (by
endpoint, errors included) and every rejected or failed one is counted in ``driftloop_request_errors_total``,
so the fault rate = server faults / requests and p99 comes from the latency buckets, summed over endpoints.
Rejected input (a 4xx) is the client's doing, not the candidate's: only ``SERVER_FAULTS`` count against it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from driftloop.errors import DeployError

if TYPE_CHECKING:
    from driftloop.settings import Settings

REQUEST_LATENCY = "driftloop_request_latency_seconds"
REQUEST_ERRORS = "driftloop_request_errors"
PREDICTIONS = "driftloop_predictions"
MODEL_INFO = "driftloop_model_info"
# Error reasons that are the server's fault (500: an unexpected error; 503: no model loaded).
SERVER_FAULTS = frozenset({"internal", "not_ready"})


@dataclass(frozen=True)
class Scrape:
    """The counters of one slot at one moment (``at``: seconds on a monotonic clock)."""

    at: float
    requests: float = 0.0
    errors: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound → cumulative count
    predictions: float = 0.0
    version: str | None = None


def parse_metrics(text: str, at: float) -> Scrape:
    """Read a slot's ``/metrics`` text.

    Raises:
        DeployError: the text is not Prometheus exposition, or has no request latency histogram (not a driftloop
            server).
    """
    requests = predictions = 0.0
    errors: dict[str, float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    version = None
    seen_latency = False
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as error:
        raise DeployError(f"unreadable /metrics: {error}") from None
    for family in families:
        if family.name == REQUEST_LATENCY:
            seen_latency = True
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets[float(sample.labels["le"])] += sample.value
                elif sample.name.endswith("_count"):
                    requests += sample.value
        elif family.name == REQUEST_ERRORS:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    errors[sample.labels.get("reason", "unknown")] += sample.value
        elif family.name == PREDICTIONS:
            predictions += sum(s.value for s in family.samples if s.name.endswith("_total"))
        elif family.name == MODEL_INFO:
            version = next((s.labels.get("version") for s in family.samples if s.value == 1), version)
    if not seen_latency:
        raise DeployError(f"/metrics has no {REQUEST_LATENCY} histogram: is this a driftloop model server?")
    return Scrape(at, requests, dict(errors), dict(buckets), predictions, version)


@dataclass(frozen=True)
class Window:
    """What one slot did between two scrapes."""

    seconds: float
    requests: float
    errors: dict[str, float]
    buckets: dict[float, float]
    predictions: float

    @property
    def error_count(self) -> float:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float | None:
        return self.error_count / self.requests if self.requests > 0 else None

    @property
    def faults(self) -> dict[str, float]:
        return {reason: count for reason, count in self.errors.items() if reason in SERVER_FAULTS}

    @property
    def fault_rate(self) -> float | None:
        return sum(self.faults.values()) / self.requests if self.requests > 0 else None

    def quantile_ms(self, q: float) -> float | None:
        seconds = histogram_quantile(q, self.buckets)
        return None if seconds is None else seconds * 1000

    @property
    def p99_ms(self) -> float | None:
        return self.quantile_ms(0.99)

    def describe(self) -> str:
        if self.requests <= 0:
            return f"no requests in {self.seconds:.1f}s"
        p99 = self.p99_ms
        p99_text = "n/a" if p99 is None else f"{p99:.1f} ms"
        return (
            f"{self.requests:.0f} requests in {self.seconds:.1f}s, server faults {self.fault_rate or 0.0:.2%}, "
            f"rejected input {self.error_rate or 0.0:.2%}, p99 {p99_text}"
        )


def window(before: Scrape, after: Scrape) -> Window:
    """The difference of two scrapes of the same slot; a counter that went down (a restart) counts from zero."""
    if after.requests < before.requests:
        before = Scrape(before.at)
    errors = {
        reason: delta
        for reason in set(before.errors) | set(after.errors)
        if (delta := after.errors.get(reason, 0.0) - before.errors.get(reason, 0.0)) > 0
    }
    buckets = {le: count - before.buckets.get(le, 0.0) for le, count in after.buckets.items()}
    return Window(
        seconds=max(0.0, after.at - before.at),
        requests=after.requests - before.requests,
        errors=errors,
        buckets=buckets,
        predictions=max(0.0, after.predictions - before.predictions),
    )


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` on cumulative bucket counts: linear within the bucket holding rank q.

    None with no observations. A rank in the +Inf bucket gives the largest finite bound (as Prometheus does).
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is outside 0..1")
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound if len(bounds) > 1 else None
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-2] if len(bounds) > 1 else None


@dataclass(frozen=True)
class Thresholds:
    """When a candidate's window raises an alarm.

    ``min_requests``: fewer requests than this in the candidate's window say nothing (no alarm, and the
    decision record says so). ``relative_floor_ms``: the ratio to the old p99 applies only above this, because
    1 ms against 0.3 ms is scheduling noise on a busy host, not a regression. ``min_requests_for_ratio``: the
    ratio needs this many requests in both windows; with fewer, a p99 is the slowest request or two (a new
    container's first, cold ones), and a healthy candidate was rolled back for 15.7 ms against 4.6 ms measured on
    62 requests. The absolute ``max_p99_ms`` still applies to small windows.
    """

    max_error_rate: float
    max_p99_ms: float
    max_p99_ratio: float
    min_requests: int = 20
    relative_floor_ms: float = 10.0
    min_requests_for_ratio: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            max_error_rate=settings.rollout_max_error_rate,
            max_p99_ms=settings.rollout_max_p99_ms,
            max_p99_ratio=settings.rollout_max_p99_ratio,
        )


@dataclass(frozen=True)
class Judgement:
    """One window's verdict: ``alarm`` names what tripped (None: no alarm), ``detail`` says what was seen."""

    alarm: str | None
    detail: str


def judge(candidate: Window, baseline: Window | None, thresholds: Thresholds) -> Judgement:
    """Error rate and p99 of the candidate against absolute thresholds and against the old version (``baseline``)."""
    seen = f"candidate: {candidate.describe()}; old: {baseline.describe() if baseline else 'none'}"
    if candidate.requests <= 0:
        return Judgement(None, f"no alarm: the candidate got no traffic, nothing to judge ({seen})")
    if candidate.requests < thresholds.min_requests:
        return Judgement(None, f"no alarm: {candidate.requests:.0f} requests are too few to judge ({seen})")
    rate = candidate.fault_rate or 0.0
    if rate > thresholds.max_error_rate:
        reasons = ", ".join(f"{reason} {count:.0f}" for reason, count in sorted(candidate.faults.items()))
        return Judgement(f"server fault rate {rate:.2%} > {thresholds.max_error_rate:.2%} ({reasons})", seen)
    p99 = candidate.p99_ms
    if p99 is not None and p99 > thresholds.max_p99_ms:
        return Judgement(f"p99 {p99:.1f} ms > {thresholds.max_p99_ms:g} ms", seen)
    enough = thresholds.min_requests_for_ratio
    old_p99 = baseline.p99_ms if baseline is not None and baseline.requests >= enough else None
    if p99 is not None and old_p99 is not None and old_p99 > 0 and p99 > thresholds.relative_floor_ms:
        ratio = p99 / old_p99
        if ratio > thresholds.max_p99_ratio and candidate.requests >= enough:
            return Judgement(
                f"p99 {p99:.1f} ms is {ratio:.1f}× the old version's {old_p99:.1f} ms "
                f"(limit {thresholds.max_p99_ratio:g}×)",
                seen,
            )
        if ratio > thresholds.max_p99_ratio:
            return Judgement(
                None,
                f"no alarm: p99 {ratio:.1f}× the old version's, but on {candidate.requests:.0f} requests (the ratio "
                f"needs {enough}: fewer make p99 the slowest one or two) ({seen})",
            )
    return Judgement(None, f"no alarm ({seen})")
