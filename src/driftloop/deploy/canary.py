"""Canary judgement from the slots' own ``/metrics``: two scrapes make a window, a window gets a verdict.

Pure: the rollout scrapes, this module reads the Prometheus text (metric names from ``serving/metrics.py``),
subtracts, and decides. Every request a slot handles is timed in ``driftloop_request_latency_seconds`` (by
endpoint, errors included) and every rejected or failed one is counted in ``driftloop_request_errors_total``,
so the fault rate = server faults / requests and p99 comes from the latency buckets, summed over endpoints.
Rejected input (a 4xx) is the client's doing, not the candidate's: only ``SERVER_FAULTS`` count against it.

A window is a sample, and a small one says little through a rate or a p99: on 20 requests p99 is the slowest one.
So every window is also judged by counts. A candidate within a fault-rate limit r fails a request with chance at
most r, and one whose p99 is within a latency limit answers slower than it with chance at most 1%: k such requests
out of n happen with chance at most P(Binomial(n, r) ≥ k). Below ``BEYOND_CHANCE`` the candidate is over the
limit, whatever the window's size, so a candidate slow enough to starve its own windows of requests is still
caught. The chance assumes requests independent of each other. A stall that delays several at once makes such
counts likelier, and that is why the bar is 1 in 10,000 and not 1 in 100.
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
# A window's count over a limit with less chance than this, for a candidate within the limit, is an alarm.
BEYOND_CHANCE = 1e-4
P99_EXCEEDANCE = 0.01  # the share of requests slower than its p99


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


def pooled(first: Window | None, second: Window | None) -> Window | None:
    """Two windows of the same slot as one: a canary's steps so far, for the candidate or the old version."""
    if first is None or second is None:
        return first or second
    return Window(
        seconds=first.seconds + second.seconds,
        requests=first.requests + second.requests,
        errors={
            r: first.errors.get(r, 0.0) + second.errors.get(r, 0.0) for r in set(first.errors) | set(second.errors)
        },
        buckets={
            b: first.buckets.get(b, 0.0) + second.buckets.get(b, 0.0) for b in set(first.buckets) | set(second.buckets)
        },
        predictions=first.predictions + second.predictions,
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


def slower_than(buckets: dict[float, float], seconds: float) -> float:
    """How many requests certainly took longer than ``seconds``: those above the first bucket bound at or past it.

    A bucket that straddles ``seconds`` is not counted, so the count errs low: it can only make an alarm rarer.
    """
    if not buckets:
        return 0.0
    total = max(buckets.values())
    within = min((count for bound, count in buckets.items() if bound >= seconds), default=total)
    return max(0.0, total - within)


def chance_of_at_least(k: float, n: float, p: float) -> float:
    """P(Binomial(n, p) ≥ k): how likely ``k`` or more of ``n`` requests are over a limit each passes with chance p."""
    hits, trials = math.ceil(k), round(n)
    if hits <= 0:
        return 1.0
    if hits > trials:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)

    def log_pmf(i: int) -> float:
        return (
            math.lgamma(trials + 1)
            - math.lgamma(i + 1)
            - math.lgamma(trials - i + 1)
            + i * log_p
            + (trials - i) * log_q
        )

    if hits > trials * p:  # the upper tail, summed from k until its terms no longer count
        tail = 0.0
        for i in range(hits, trials + 1):
            term = math.exp(log_pmf(i))
            tail += term
            if term < tail * 1e-17:
                break
        return min(1.0, tail)
    return max(0.0, 1.0 - sum(math.exp(log_pmf(i)) for i in range(hits)))


@dataclass(frozen=True)
class Thresholds:
    """When a candidate's window raises an alarm.

    A window's fault rate and p99 are compared with ``max_error_rate`` and ``max_p99_ms`` from ``min_requests``
    requests on. Its p99 is compared with ``max_p99_ratio`` × the old version's only from ``min_requests_for_ratio``
    on, in both windows: with fewer, a p99 is the slowest request or two (a new container's first, cold ones), and
    a healthy candidate was rolled back for 15.7 ms against 4.6 ms measured on 62 requests. Every window also
    alarms on a count beyond chance (the module's docstring). ``relative_floor_ms``: the ratio applies only above this,
    because 1 ms against 0.3 ms is scheduling noise on a busy host, not a regression.
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


def judge(
    candidate: Window,
    baseline: Window | None,
    thresholds: Thresholds,
    *,
    ratio_of_p99s: bool = True,
    baseline_name: str = "old version",
) -> Judgement:
    """Error rate and p99 of the candidate against absolute thresholds and against the old version (``baseline``).

    Each limit alarms when the candidate's figure is over it on enough requests, or when its count of requests
    over it is beyond chance on any number of them. ``ratio_of_p99s=False`` leaves out the comparison of the two
    p99s and keeps the count over the ratio's limit: for windows pooled over steps, which keep a new container's
    cold first requests in every step's judgement.
    """
    seen = f"candidate: {candidate.describe()}; {baseline_name}: {baseline.describe() if baseline else 'none'}"
    if candidate.requests <= 0:
        return Judgement(None, f"no alarm: the candidate got no traffic, nothing to judge ({seen})")
    enough = thresholds.min_requests_for_ratio
    old_p99 = baseline.p99_ms if baseline is not None and baseline.requests >= enough else None
    alarm = (
        _fault_alarm(candidate, thresholds)
        or _p99_alarm(candidate, thresholds)
        or (_ratio_alarm(candidate, old_p99, thresholds, ratio_of_p99s) if old_p99 else None)
    )
    if alarm is not None:
        return Judgement(alarm, seen)
    requests = f"{candidate.requests:.0f} requests"
    counts = "no count over a limit is beyond chance"
    if candidate.requests < thresholds.min_requests:
        return Judgement(None, f"no alarm: {requests} are too few for a rate or a p99, and {counts} ({seen})")
    if old_p99 and candidate.requests < enough:
        return Judgement(
            None,
            f"no alarm: {requests} are too few to compare p99s (that needs {enough}: fewer make a p99 the slowest "
            f"one or two), and {counts} ({seen})",
        )
    return Judgement(None, f"no alarm ({seen})")


@dataclass(frozen=True)
class SoFar:
    """The candidate's and the old version's requests over a canary's steps so far, each pooled into one window."""

    candidate: Window | None = None
    old: Window | None = None

    def add(self, candidate: Window, old: Window | None) -> SoFar:
        return SoFar(pooled(self.candidate, candidate), pooled(self.old, old))


def judge_step(this_step: Window, old_this_step: Window | None, so_far: SoFar, thresholds: Thresholds) -> Judgement:
    """A canary step's verdict (``so_far`` includes this step): its own window, then every step so far as one.

    The step is compared with the old version's requests of the same step when they are enough for a p99, and
    otherwise with the old version's requests so far: at 100% it gets none, and beside a slow candidate that
    holds the clients it may get few. Such a candidate's own windows may each be too small to judge; the steps
    pooled are judged by every rule but the comparison of p99s (``judge``).
    """
    enough = thresholds.min_requests_for_ratio
    same_time = old_this_step is not None and old_this_step.requests >= enough
    so_far_name = "old version over the steps so far"
    if same_time:
        verdict = judge(this_step, old_this_step, thresholds, baseline_name="old version in this step")
    else:
        verdict = judge(this_step, so_far.old, thresholds, baseline_name=so_far_name)
    whole = so_far.candidate
    if verdict.alarm is not None or whole is None or whole.requests <= this_step.requests:
        return verdict
    overall = judge(whole, so_far.old, thresholds, ratio_of_p99s=False, baseline_name=so_far_name)
    if overall.alarm is None:
        return verdict
    return Judgement(
        f"over the canary's steps so far ({whole.requests:.0f} requests): {overall.alarm}",
        f"steps so far: {overall.detail}; this step's candidate: {this_step.describe()}",
    )


def _beyond_chance(over: float, requests: float, share: float) -> float | None:
    """The chance of ``over`` of ``requests`` over a limit each passes with chance ``share``; None if not beyond it."""
    chance = chance_of_at_least(over, requests, share)
    return chance if chance < BEYOND_CHANCE else None


def _fault_alarm(candidate: Window, thresholds: Thresholds) -> str | None:
    faults = sum(candidate.faults.values())
    rate = faults / candidate.requests
    limit = thresholds.max_error_rate
    reasons = ", ".join(f"{reason} {count:.0f}" for reason, count in sorted(candidate.faults.items()))
    if candidate.requests >= thresholds.min_requests and rate > limit:
        return f"server fault rate {rate:.2%} > {limit:.2%} ({reasons})"
    chance = _beyond_chance(faults, candidate.requests, limit)
    if chance is not None:
        return (
            f"server faults on {faults:.0f} of {candidate.requests:.0f} requests ({reasons}): a fault rate within "
            f"{limit:.2%} does that with chance {chance:.1e}"
        )
    return None


def _p99_alarm(candidate: Window, thresholds: Thresholds) -> str | None:
    p99, limit = candidate.p99_ms, thresholds.max_p99_ms
    if candidate.requests >= thresholds.min_requests and p99 is not None and p99 > limit:
        return f"p99 {p99:.1f} ms > {limit:g} ms"
    return _slow_requests_alarm(candidate, limit, f"{limit:g}")


def _ratio_alarm(candidate: Window, old_p99: float, thresholds: Thresholds, ratio_of_p99s: bool) -> str | None:
    ratio_limit = thresholds.max_p99_ratio
    limit_ms = max(ratio_limit * old_p99, thresholds.relative_floor_ms)
    p99 = candidate.p99_ms
    enough = candidate.requests >= thresholds.min_requests_for_ratio
    if ratio_of_p99s and enough and p99 is not None and p99 > limit_ms:
        return f"p99 {p99:.1f} ms is {p99 / old_p99:.1f}× the old version's {old_p99:.1f} ms (limit {ratio_limit:g}×)"
    limit = (
        f"{ratio_limit:g}× the old version's p99 of {old_p99:.1f} ms"
        if limit_ms > thresholds.relative_floor_ms
        else f"the ratio's floor; {ratio_limit:g}× the old version's p99 of {old_p99:.1f} ms is below it"
    )
    return _slow_requests_alarm(candidate, limit_ms, f"{limit_ms:.1f}", f" ({limit})")


def _slow_requests_alarm(candidate: Window, limit_ms: float, shown: str, why: str = "") -> str | None:
    """The count of requests slower than ``limit_ms`` (written ``shown``), if beyond chance for a p99 within it."""
    over = slower_than(candidate.buckets, limit_ms / 1000)
    chance = _beyond_chance(over, candidate.requests, P99_EXCEEDANCE)
    if chance is None:
        return None
    return (
        f"{over:.0f} of {candidate.requests:.0f} requests slower than {shown} ms{why}: a p99 within {shown} ms "
        f"does that with chance {chance:.1e}"
    )
