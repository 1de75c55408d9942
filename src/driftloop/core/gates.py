"""The promotion gate: may a candidate take the champion alias, and why (or why not).

Point estimates on a few thousand rows cannot tell a better model from a worse one by a few thousandths, so
against a champion the gate compares both models on the same holdout rows, segment by segment (the champion's
own holdout, the recent labelled rows, all of them), with an interval of the difference (``core.significance``:
DeLong's for ROC AUC, a paired bootstrap for other metrics). A retrain must improve significantly where it was
meant to help; no candidate may be significantly worse on any segment (a retrain: by more than its tolerance, so a
large holdout's narrow interval on the old rows cannot block a retrain that fixes a shift).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from driftloop.core import lineage
from driftloop.core.significance import MetricDifference, compare_metric, interval_method
from driftloop.core.task import DEFAULT_FLOORS, PRIMARY_METRIC, TASK_METRICS, TaskKind
from driftloop.core.task import HIGHER_IS_BETTER as _HIGHER_IS_BETTER

METRIC_NAMES: tuple[str, ...] = tuple(_HIGHER_IS_BETTER)

# Absorbs float noise so that a candidate exactly at a floor or at the tolerance passes (0.8 - 0.795 > 0.005).
_EPSILON = 1e-9
_MAX_REASON_TAG_CHARS = 4_000

Verdict = Literal["promote", "refuse"]

# Holdout segments: the champion's own holdout rows, the recent labelled rows held out, and both together.
REFERENCE = "reference"
RECENT = "recent"
ALL = "all"
# An ordinary run on other data than the champion's: the champion's own holdout rows its snapshot lacks.
CHAMPION_DATA = "rows only the champion had"
# A class metric on a segment with fewer rows of either class than this is not tested (too few to mean anything).
MIN_ROWS_PER_CLASS = 5


def _check_metric_name(name: str, what: str, kind: TaskKind) -> None:
    if name not in TASK_METRICS[kind]:
        raise ValueError(
            f"unknown {what} {name!r} for a {kind} model; valid metric names: {', '.join(TASK_METRICS[kind])}"
        )


@dataclass(frozen=True)
class GatePolicy:
    """What a candidate must achieve to be promoted.

    Attributes:
        kind: The task the policy judges (its metrics and their defaults: ``core.task``).
        primary_metric: The metric compared with the champion; None: the task's (ROC AUC, one-vs-rest ROC AUC, R²).
        floors: Minimum value per metric; for a lower-is-better metric (log_loss, rmse, mae) it is a ceiling. None:
            the task's defaults.
        tolerance: How much worse than the champion on the primary metric (point estimate, whole holdout) a
            candidate may be and still be promoted. 0 means at least equal; a negative value means it must beat
            the champion by that much. A retrain's positive tolerance is also its other segments' margin
            (``worse_margin``).
        improve_on: The segment where the candidate must be significantly better (a retrain: ``recent``, or
            ``all`` when it retrains on a changed source); None for an ordinary training run.
        min_effect: With ``improve_on``: the interval's lower end must lie above this improvement.
        confidence: Coverage of the intervals (DeLong's for ROC AUC, a paired bootstrap for other metrics).
        min_segment_rows: A segment with fewer holdout rows is not tested (and, as ``improve_on``, refuses).
        resamples: Bootstrap replicates per segment (metrics other than ROC AUC).
        truth_changed: A retrain asked for by a drift check whose label check counted: on labelled live traffic
            the champion fell short of its holdout, so the old rows' labels no longer say what is true now. The
            candidate is then held to ``recent`` alone: its floors are judged there (``floors_on``), and
            ``reference`` and ``all`` (mostly old rows) are compared and reported, not held to (``margin_on``): a
            model that learns the new truth must be worse on the old one.
    """

    primary_metric: str | None = None
    floors: Mapping[str, float] | None = None
    tolerance: float = 0.005
    improve_on: str | None = None
    min_effect: float = 0.0
    confidence: float = 0.95
    min_segment_rows: int = 50
    resamples: int = 2000
    kind: TaskKind = TaskKind.BINARY
    truth_changed: bool = False

    @property
    def worse_margin(self) -> float:
        """How much worse on a segment a candidate may be shown to be before that refuses it.

        0 for an ordinary run: a candidate shown to be worse on its own holdout is refused (``margin_on`` gives
        the exception: rows only the champion had). A retrain (``improve_on``) may be
        worse elsewhere by up to a positive tolerance: with thousands of holdout rows an interval is narrow enough
        to call 0.0006 of R² on the old rows "significantly worse", and a retrain that fixes a shift would never pass.
        """
        return max(self.tolerance, 0.0) if self.improve_on is not None else 0.0

    @property
    def floors_on(self) -> str | None:
        """The holdout segment the floors judge: None, the whole holdout; ``recent`` once the truth changed."""
        return RECENT if self.truth_changed else None

    def margin_on(self, segment: str) -> float:
        """How much worse on ``segment`` a candidate may be shown to be before that refuses it.

        ``worse_margin``, except on ``CHAMPION_DATA``: rows the candidate was not given, where it may be worse by up
        to a positive tolerance, as a retrain may be on the old rows.
        """
        if self.truth_changed and segment in (REFERENCE, ALL):
            return math.inf
        return max(self.tolerance, 0.0) if segment == CHAMPION_DATA else self.worse_margin

    def __post_init__(self) -> None:
        kind = TaskKind(self.kind)
        primary = self.primary_metric or PRIMARY_METRIC[kind]
        _check_metric_name(primary, "primary metric", kind)
        floors: dict[str, float] = {}
        for name, value in (DEFAULT_FLOORS[kind] if self.floors is None else self.floors).items():
            _check_metric_name(name, "floor metric", kind)
            if not math.isfinite(value):
                raise ValueError(f"the floor for {name} must be a finite number, got {value!r}")
            floors[name] = float(value)
        if not -1 < self.tolerance < 1:  # also refuses NaN
            raise ValueError(
                f"tolerance must lie between -1 and 1 (a difference of {primary}, the metric compared with the "
                f"champion; 0.005 by default, a negative value demands an improvement), got {self.tolerance!r}"
            )
        if not math.isfinite(self.min_effect) or self.min_effect < 0:
            raise ValueError(f"min_effect must be a finite number ≥ 0, got {self.min_effect!r}")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must lie in [0.5, 1), got {self.confidence!r}")
        if self.min_segment_rows < 10:
            raise ValueError(f"min_segment_rows must be at least 10, got {self.min_segment_rows!r}")
        if self.resamples < 100:
            raise ValueError(f"resamples must be at least 100, got {self.resamples!r}")
        if self.truth_changed and self.improve_on != RECENT:
            raise ValueError("truth_changed is a retrain's on recent labelled rows (improve_on='recent')")
        # A private copy, so the caller's dict cannot change a policy after the fact.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "primary_metric", primary)
        object.__setattr__(self, "floors", floors)
        object.__setattr__(self, "tolerance", float(self.tolerance))

    @property
    def primary(self) -> str:
        """The primary metric (``primary_metric``, resolved to the task's default when it was None)."""
        return str(self.primary_metric)

    @property
    def floor_values(self) -> Mapping[str, float]:
        """The floors (``floors``, resolved to the task's defaults when it was None)."""
        return self.floors or {}

    def higher_is_better(self, metric: str) -> bool:
        """Direction of ``metric``; ValueError for an unknown name."""
        _check_metric_name(metric, "metric", self.kind)
        return _HIGHER_IS_BETTER[metric]

    def describe(self) -> list[str]:
        """The policy as short lines for people."""
        primary_direction = "higher" if self.higher_is_better(self.primary) else "lower"
        lines = [f"primary metric: {self.primary} ({primary_direction} is better)"]
        if self.tolerance > 0:
            lines.append(f"tolerance: may be up to {self.tolerance:g} worse than the champion")
        elif self.tolerance == 0:
            lines.append("tolerance: 0 (must be at least as good as the champion)")
        else:
            lines.append(f"tolerance: {self.tolerance:g} (must beat the champion by at least {-self.tolerance:g})")
        if self.floor_values:
            parts = [
                f"{name} {'≥' if self.higher_is_better(name) else '≤'} {value:g}"
                for name, value in self.floor_values.items()
            ]
            waiver = (
                f" (judged on {self.floors_on}; one the champion misses too there refuses only a candidate worse than "
                "the champion there)"
                if self.floors_on
                else ""
            )
            lines.append("floors: " + ", ".join(parts) + waiver)
        else:
            lines.append("floors: none")
        method = interval_method(self.primary, self.kind)
        if method == "paired bootstrap":
            method += f" ({self.resamples} resamples)"
        lines.append(
            f"segments: {self.confidence:.0%} {method} intervals on every segment with at least "
            f"{self.min_segment_rows} holdout rows; significantly worse on "
            + (f"any but {REFERENCE} and {ALL}" if self.truth_changed else "any")
            + (f", by more than {self.worse_margin:g}," if self.worse_margin > 0 else "")
            + " refuses"
        )
        if self.improve_on:
            lines.append(
                f"retrain: must be significantly better on {self.improve_on} (interval above {self.min_effect:g})"
            )
        if self.truth_changed:
            lines.append(f"the champion fell short on live labels: {REFERENCE} and {ALL} are reported, not held to")
        return lines

    def as_dict(self) -> dict[str, object]:
        """The policy as plain values, to record on a version so a retrain applies the same one."""
        return {
            "kind": self.kind.value,
            "primary_metric": self.primary,
            "floors": dict(self.floor_values),
            "tolerance": self.tolerance,
            "min_effect": self.min_effect,
            "confidence": self.confidence,
            "min_segment_rows": self.min_segment_rows,
            "resamples": self.resamples,
        }


@dataclass(frozen=True)
class SegmentComparison:
    """Both models on one segment of the holdout.

    Attributes:
        segment: ``reference``, ``recent``, ``all`` or ``CHAMPION_DATA``.
        rows: Holdout rows in the segment.
        difference: The paired comparison; None when the segment is too small to test (``note`` says why).
        note: Why the segment was not tested, or "".
    """

    segment: str
    rows: int
    difference: MetricDifference | None
    note: str = ""

    def describe(self) -> str:
        if self.difference is None:
            return f"{self.segment} ({self.rows} rows): not tested, {self.note}"
        return f"{self.segment} ({self.rows} rows): {self.difference.describe()}"


def compare_segments(
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    segments: Mapping[str, np.ndarray],
    policy: GatePolicy,
    seed: int,
) -> tuple[SegmentComparison, ...]:
    """Compare the two models' scores (``core.task.Task.scores``) on each segment (a boolean mask over the rows).

    Segments with fewer than ``policy.min_segment_rows`` rows, or (classifiers) fewer than ``MIN_ROWS_PER_CLASS``
    rows of some class among those the segment holds, are listed but not tested. A binary segment needs both
    classes; a multiclass one at least two.
    """
    classifier = policy.kind is not TaskKind.REGRESSION
    y = np.asarray(y, dtype=np.int64 if classifier else np.float64)
    comparisons = []
    for offset, (name, mask) in enumerate(segments.items()):
        rows = int(np.count_nonzero(mask))
        note = ""
        if classifier:
            counts = np.bincount(y[mask]) if rows else np.zeros(2, dtype=np.int64)
            if policy.kind is TaskKind.BINARY:
                counts = np.pad(counts, (0, max(0, 2 - counts.size)))
            present = counts[counts > 0] if policy.kind is TaskKind.MULTICLASS else counts
            smallest_class = int(present.min()) if present.size >= 2 else 0
            if rows < policy.min_segment_rows or smallest_class < MIN_ROWS_PER_CLASS:
                note = (
                    f"too few rows for a meaningful test: {rows} (need {policy.min_segment_rows}, with at least "
                    f"{MIN_ROWS_PER_CLASS} of each class; the smaller class has {smallest_class})"
                )
        elif rows < policy.min_segment_rows:
            note = f"too few rows for a meaningful test: {rows} (need {policy.min_segment_rows})"
        if note:
            comparisons.append(SegmentComparison(name, rows, None, note))
            continue
        difference = compare_metric(
            policy.primary,
            y[mask],
            np.asarray(candidate)[mask],
            np.asarray(champion)[mask],
            confidence=policy.confidence,
            resamples=policy.resamples,
            seed=seed + offset,
            kind=policy.kind,
        )
        comparisons.append(SegmentComparison(name, rows, difference))
    return tuple(comparisons)


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict with everything needed to explain it."""

    verdict: Verdict
    reasons: tuple[str, ...]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    deltas: dict[str, float]
    policy: GatePolicy
    parity_passed: bool
    parity_summary: str
    rule: str = ""
    segments: tuple[SegmentComparison, ...] = ()
    ignored_columns: tuple[str, ...] = ()  # the snapshot's columns the schema does not name

    @property
    def promote(self) -> bool:
        """True when the verdict is ``promote``."""
        return self.verdict == "promote"

    def refused(self, reason: str) -> PromotionDecision:
        """This decision turned into a refusal for ``reason`` (something changed after the gate passed)."""
        return replace(self, verdict="refuse", reasons=(reason, *self.reasons))

    def with_ignored_columns(self, columns: Sequence[str]) -> PromotionDecision:
        return replace(self, ignored_columns=tuple(columns))

    def noted(self, note: str, *, last: bool = False) -> PromotionDecision:
        """This decision with ``note`` first among its reasons (``last``: after them)."""
        return replace(self, reasons=(*self.reasons, note) if last else (note, *self.reasons))

    def tags(self) -> dict[str, str]:
        """MLflow model-version tags recording the decision."""
        reason = _shortened("; ".join(self.reasons))
        tags = {lineage.GATE: self.verdict, lineage.GATE_REASON: reason, lineage.GATE_RULE: self.rule}
        if self.segments:
            tags[lineage.GATE_SEGMENTS] = json.dumps(
                [_segment_record(comparison) for comparison in self.segments], separators=(",", ":")
            )
        if self.ignored_columns:
            tags[lineage.IGNORED_COLUMNS] = _shortened(json.dumps(list(self.ignored_columns)))
        return tags

    def markdown(self) -> str:
        """A decision record for the Prefect UI: verdict, metrics table, reasons, policy."""
        champion_label = f"champion v{self.champion_version}" if self.champion_version else "champion"
        lines = [f"# Gate verdict: **{self.verdict.upper()}**", ""]
        if self.champion is None:
            lines.append("No champion yet: the candidate is judged on the floors and ONNX parity alone.")
        else:
            lines.append(f"Candidate compared with {champion_label} on **{self.policy.primary}**.")
        lines += ["", f"| metric | candidate | {champion_label} | delta |", "|---|---:|---:|---:|"]
        for name in _ordered_metrics(self.candidate, self.champion or {}):
            label = name
            if name in _HIGHER_IS_BETTER:
                label += " ↑" if _HIGHER_IS_BETTER[name] else " ↓"
            if name == self.policy.primary:
                label = f"**{label}** (primary)"
            champion_value = self.champion.get(name) if self.champion is not None else None
            delta = self.deltas.get(name)
            lines.append(
                f"| {label} | {_cell(self.candidate.get(name))} | {_cell(champion_value)} "
                f"| {'—' if delta is None else f'{delta:+.4f}'} |"
            )
        if self.segments:
            lines += [
                "",
                f"## Segments: {self.policy.primary} on the same holdout rows",
                "",
                "| segment | rows | candidate | champion | improvement | interval | verdict |",
                "|---|---:|---:|---:|---:|---|---|",
            ]
            lines += [_segment_row(comparison) for comparison in self.segments]
        lines += ["", f"**Rule**: {self.rule}", "", "## Reasons", ""]
        lines += [f"- {reason}" for reason in self.reasons]
        lines += ["", "## Data", ""]
        ignored = ", ".join(f"`{name}`" for name in self.ignored_columns)
        lines.append(
            f"- Columns not in the schema, ignored: {ignored}" if ignored else "- Every column is in the schema."
        )
        lines += ["", "## Policy", ""]
        lines += [f"- {line}" for line in self.policy.describe()]
        parity = "passed" if self.parity_passed else "FAILED"
        detail = f" ({self.parity_summary})" if self.parity_summary else ""
        lines.append(f"- ONNX parity (always required): {parity}{detail}")
        return "\n".join(lines) + "\n"


def _shortened(text: str) -> str:
    return text if len(text) <= _MAX_REASON_TAG_CHARS else text[: _MAX_REASON_TAG_CHARS - 1] + "…"


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _segment_row(comparison: SegmentComparison) -> str:
    difference = comparison.difference
    if difference is None:
        return f"| {comparison.segment} | {comparison.rows} | — | — | — | — | not tested: {comparison.note} |"
    verdict = (
        "significantly better"
        if difference.significantly_better
        else "significantly worse"
        if difference.significantly_worse
        else "no significant difference"
    )
    interval = f"{difference.confidence:.0%} [{difference.low:+.4f}, {difference.high:+.4f}]"
    return (
        f"| {comparison.segment} | {comparison.rows} | {difference.candidate:.4f} | {difference.champion:.4f} "
        f"| {difference.improvement:+.4f} | {interval} | {verdict} |"
    )


def _segment_record(comparison: SegmentComparison) -> dict[str, object]:
    difference = comparison.difference
    if difference is None:
        return {"segment": comparison.segment, "rows": comparison.rows, "tested": False}
    return {
        "segment": comparison.segment,
        "rows": comparison.rows,
        "candidate": round(difference.candidate, 6),
        "champion": round(difference.champion, 6),
        "improvement": round(difference.improvement, 6),
        "low": round(difference.low, 6),
        "high": round(difference.high, 6),
    }


def _ordered_metrics(*tables: Mapping[str, float]) -> list[str]:
    present = {name for table in tables for name in table}
    known = [name for name in METRIC_NAMES if name in present]
    return known + sorted(present - set(known))


def _finite(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _missing_sentence(metrics: Mapping[str, float], name: str, whose: str, why: str) -> str:
    if name in metrics:
        return f"{whose} {name} is {metrics[name]!r}, not a number, {why}"
    return f"{whose} has no {name} metric, {why}"


def decide_promotion(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    champion_version: str | None,
    parity_passed: bool,
    parity_summary: str,
    policy: GatePolicy,
    segments: Sequence[SegmentComparison] = (),
    pinned_by: str | None = None,
    floor_metrics: Mapping[str, float] | None = None,
    champion_floor_metrics: Mapping[str, float] | None = None,
) -> PromotionDecision:
    """Decide whether the candidate may become champion; every failed check becomes a reason.

    Refused when ONNX parity failed, when any floor is not met, when a metric the policy needs is missing or
    not a number, when the champion is pinned (``pinned_by`` says by whom and why), and against a champion:

    - when the candidate is significantly worse on any tested segment;
    - for an ordinary run (``policy.improve_on`` None), when its primary metric on the whole holdout is worse
      than the champion's by more than ``policy.tolerance``;
    - for a retrain, unless it is significantly better on ``policy.improve_on`` (the interval's lower end above
      ``policy.min_effect``); a segment too small to test refuses, saying so.

    The floors judge ``candidate`` (the whole holdout's metrics), or ``floor_metrics``: the candidate's on the
    segment ``policy.floors_on`` names, which a policy with one requires. There (once the truth changed), a floor
    the candidate misses does not refuse it when the champion misses that floor too on the same rows
    (``champion_floor_metrics``) and the candidate is not worse there: the floor must not keep the worse of two
    models serving, the champion below it on the truth of now. An ordinary run's floors are absolute: a user who
    raises one above the champion means it.
    """
    if (policy.floors_on is None) != (floor_metrics is None):
        raise ValueError(
            f"floor_metrics are the candidate's on {policy.floors_on or 'no segment'}: give them then only"
        )
    if policy.floors_on is None and champion_floor_metrics is not None:
        raise ValueError("champion_floor_metrics are the champion's on policy.floors_on, which is None: give none")
    judged = candidate if floor_metrics is None else floor_metrics
    on = "" if policy.floors_on is None else f" on {policy.floors_on}"
    champion_label = f"champion v{champion_version}" if champion_version else "the champion"
    failures: list[str] = []
    if not parity_passed:
        detail = f" ({parity_summary})" if parity_summary else ""
        failures.append(
            f"ONNX parity check failed{detail}: a model whose ONNX export disagrees with the trained "
            "model is never promoted"
        )

    floor_failures, waived = _judge_floors(policy, judged, champion_floor_metrics, on, champion_label)
    failures += floor_failures

    if pinned_by is not None:
        failures.append(f"champion pinned by {pinned_by}: automatic promotions are refused (the version is registered)")

    primary = policy.primary
    higher = _HIGHER_IS_BETTER[primary]
    cand_primary = _finite(candidate, primary)
    if cand_primary is None and primary not in policy.floor_values:
        failures.append(_missing_sentence(candidate, primary, "candidate", "so it cannot be compared"))

    champion_metrics = {k: float(v) for k, v in champion.items()} if champion is not None else None
    comparison = ""
    segment_findings: list[str] = []
    if champion_metrics is not None:
        segment_failures, segment_findings = _judge_segments(segments, policy, champion_label)
        failures += segment_failures
    if champion_metrics is not None and policy.improve_on is None:
        champ_primary = _finite(champion_metrics, primary)
        if champ_primary is None:
            failures.append(
                _missing_sentence(
                    champion_metrics, primary, champion_label, "so the candidate cannot be compared with it"
                )
            )
        elif cand_primary is not None:
            shortfall = (champ_primary - cand_primary) if higher else (cand_primary - champ_primary)
            delta = cand_primary - champ_primary
            if shortfall > policy.tolerance + _EPSILON:
                if policy.tolerance >= 0:
                    allowed = f"the policy allows at most {policy.tolerance:g} worse"
                else:
                    allowed = f"the policy requires beating the champion by at least {-policy.tolerance:g}"
                failures.append(
                    f"{primary} {cand_primary:.4f} vs {champion_label} {champ_primary:.4f} ({delta:+.4f}); {allowed}"
                )
            else:
                word = "better than" if shortfall < -_EPSILON else ("equal to" if shortfall <= _EPSILON else "")
                relation = word or f"within the tolerance of {policy.tolerance:g} of"
                comparison = (
                    f"{primary} {cand_primary:.4f} is {relation} {champion_label} {champ_primary:.4f} ({delta:+.4f})"
                )

    candidate_metrics = {k: float(v) for k, v in candidate.items()}
    deltas: dict[str, float] = {}
    if champion_metrics is not None:
        for name in _ordered_metrics(candidate_metrics, champion_metrics):
            cand_value = _finite(candidate_metrics, name)
            champ_value = _finite(champion_metrics, name)
            if cand_value is not None and champ_value is not None:
                deltas[name] = cand_value - champ_value

    if failures:
        verdict: Verdict = "refuse"
        reasons = tuple(failures)
    else:
        verdict = "promote"
        met = [name for name in policy.floor_values if name not in waived]
        if met:
            values = ", ".join(f"{name} {judged[name]:.4f}" for name in met) if on else ""
            every = "every other floor" if waived else "every floor"
            floors_met = f"meets {every}{on}" + (f" ({values})" if values else "") + " and "
        else:
            floors_met = "" if waived else "has no floors to meet and "
        if champion_metrics is None:
            reasons = (f"no champion yet; the candidate {floors_met}passed ONNX parity",)
        else:
            reasons = (
                *filter(None, [comparison]),
                *segment_findings,
                *waived.values(),
                f"the candidate {floors_met}passed ONNX parity",
            )

    return PromotionDecision(
        verdict=verdict,
        reasons=reasons,
        candidate=candidate_metrics,
        champion=champion_metrics,
        champion_version=champion_version,
        deltas=deltas,
        policy=policy,
        parity_passed=parity_passed,
        parity_summary=parity_summary,
        rule=_rule(policy, champion_metrics is not None),
        segments=tuple(segments) if champion_metrics is not None else (),
    )


def _judge_floors(
    policy: GatePolicy,
    judged: Mapping[str, float],
    champion_judged: Mapping[str, float] | None,
    on: str,
    champion_label: str,
) -> tuple[list[str], dict[str, str]]:
    """(failures, waived floors by metric): ``judged`` against each floor, beside the champion on the same rows.

    Given ``champion_judged``, a floor the candidate misses is waived when the champion misses it too and the
    candidate is not worse: the floor would otherwise keep the worse of two models below it serving (a champion
    whose world changed). Without it, every floor is absolute.
    """
    failures: list[str] = []
    waived: dict[str, str] = {}
    for name, floor in policy.floor_values.items():
        value = _finite(judged, name)
        higher = _HIGHER_IS_BETTER[name]
        bound = "floor" if higher else "ceiling"
        if value is None:
            failures.append(_missing_sentence(judged, name, f"candidate{on}", f"so its {bound} cannot be checked"))
            continue
        if _meets(value, floor, higher):
            continue
        missed = f"{name} {value:.4f}{on} is {'below' if higher else 'above'} the {bound} of {floor:.4f}"
        theirs = None if champion_judged is None else _finite(champion_judged, name)
        if (
            theirs is not None
            and not _meets(theirs, floor, higher)
            and (value >= theirs if higher else value <= theirs)
        ):
            waived[name] = (
                f"{missed}, and {champion_label}'s is {theirs:.4f} on the same rows: the {bound} is not held "
                "against a candidate that is not worse than a champion missing it too"
            )
        else:
            failures.append(missed)
    return failures, waived


def _meets(value: float, bound: float, higher_is_better: bool) -> bool:
    """``value`` meets a floor (or, lower being better, a ceiling) of ``bound``, float noise absorbed."""
    return value >= bound - _EPSILON if higher_is_better else value <= bound + _EPSILON


def _rule(policy: GatePolicy, has_champion: bool) -> str:
    """The rule this decision applied, in one sentence (shown beside the verdict)."""
    if not has_champion:
        return "first version: the floors and ONNX parity"
    tested = f"{policy.confidence:.0%} {interval_method(policy.primary, policy.kind)} interval on {policy.primary}"
    margin = f" by more than {policy.worse_margin:g}" if policy.worse_margin > 0 else ""
    if policy.improve_on is None:
        theirs = policy.margin_on(CHAMPION_DATA)
        return (
            f"not significantly worse on any segment{margin} ({tested}; on {CHAMPION_DATA}, by more than "
            f"{theirs:g}) and within {policy.tolerance:g} of the champion on the whole holdout"
        )
    if policy.truth_changed:
        return (
            f"retrain: significantly better on {policy.improve_on} (interval above {policy.min_effect:g}; {tested}); "
            f"the champion fell short on the labels of live traffic, so the old rows ({REFERENCE}, {ALL}) are "
            "reported, not held to"
        )
    return (
        f"retrain: significantly better on {policy.improve_on} (interval above {policy.min_effect:g}) and not "
        f"significantly worse on any segment{margin} ({tested})"
    )


def _judge_segments(
    segments: Sequence[SegmentComparison], policy: GatePolicy, champion_label: str
) -> tuple[list[str], list[str]]:
    """(failures, findings) from the segment comparisons against ``champion_label``."""
    failures: list[str] = []
    findings: list[str] = []
    for comparison in segments:
        difference = comparison.difference
        margin = policy.margin_on(comparison.segment)
        if difference is not None and difference.worse_beyond(margin):
            beyond = f" (beyond the tolerance of {margin:g})" if margin > 0 else ""
            failures.append(f"significantly worse than {champion_label} on {comparison.describe()}{beyond}")
    if policy.improve_on is not None:
        target = next((c for c in segments if c.segment == policy.improve_on), None)
        if target is None:
            failures.append(f"no {policy.improve_on} segment to test the improvement on: there were no such rows")
        elif target.difference is None:
            failures.append(f"cannot tell whether the retrain helps on {policy.improve_on}: {target.note}")
        elif not target.difference.low > policy.min_effect:
            failures.append(
                f"no significant improvement on {target.describe()}; the interval must lie above {policy.min_effect:g}"
            )
        else:
            findings.append(f"significantly better on {target.describe()}")
    others = [c for c in segments if c.segment != policy.improve_on]
    held = [c for c in others if math.isfinite(policy.margin_on(c.segment))]
    tested = [c.describe() for c in held if c.difference is not None]
    if tested:
        findings.append("not significantly worse on " + "; ".join(tested))
    released = [
        c.describe() for c in others if not math.isfinite(policy.margin_on(c.segment)) and c.difference is not None
    ]
    if released:
        findings.append("not held to the old rows (the champion fell short on live labels): " + "; ".join(released))
    findings += [c.describe() for c in others if c.difference is None]
    return failures, findings
