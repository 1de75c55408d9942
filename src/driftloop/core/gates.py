"""The promotion gate: may a candidate take the champion alias, and why (or why not)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from driftloop.core import lineage
from driftloop.core.evaluation import HIGHER_IS_BETTER as _HIGHER_IS_BETTER

METRIC_NAMES: tuple[str, ...] = tuple(_HIGHER_IS_BETTER)

# Absorbs float noise so that a candidate exactly at a floor or at the tolerance passes (0.8 - 0.795 > 0.005).
_EPSILON = 1e-9
_MAX_REASON_TAG_CHARS = 4_000

Verdict = Literal["promote", "refuse"]


def _check_metric_name(name: str, what: str) -> None:
    if name not in _HIGHER_IS_BETTER:
        raise ValueError(f"unknown {what} {name!r}; valid metric names: {', '.join(METRIC_NAMES)}")


def _default_floors() -> dict[str, float]:
    return {"roc_auc": 0.70, "accuracy": 0.70}


@dataclass(frozen=True)
class GatePolicy:
    """What a candidate must achieve to be promoted.

    Attributes:
        primary_metric: The metric compared with the champion.
        floors: Minimum value per metric; for a lower-is-better metric (log_loss) it is a ceiling.
        tolerance: How much worse than the champion on the primary metric a candidate may be and still be
            promoted. 0 means at least equal; a negative value means it must beat the champion by that much.
    """

    primary_metric: str = "roc_auc"
    floors: Mapping[str, float] = field(default_factory=_default_floors)
    tolerance: float = 0.005

    def __post_init__(self) -> None:
        _check_metric_name(self.primary_metric, "primary metric")
        floors: dict[str, float] = {}
        for name, value in self.floors.items():
            _check_metric_name(name, "floor metric")
            if not math.isfinite(value):
                raise ValueError(f"the floor for {name} must be a finite number, got {value!r}")
            floors[name] = float(value)
        if not math.isfinite(self.tolerance):
            raise ValueError(f"tolerance must be a finite number, got {self.tolerance!r}")
        # A private copy, so the caller's dict cannot change a policy after the fact.
        object.__setattr__(self, "floors", floors)
        object.__setattr__(self, "tolerance", float(self.tolerance))

    def higher_is_better(self, metric: str) -> bool:
        """Direction of ``metric``; ValueError for an unknown name."""
        _check_metric_name(metric, "metric")
        return _HIGHER_IS_BETTER[metric]

    def describe(self) -> list[str]:
        """The policy as short lines for people."""
        primary_direction = "higher" if self.higher_is_better(self.primary_metric) else "lower"
        lines = [f"primary metric: {self.primary_metric} ({primary_direction} is better)"]
        if self.tolerance > 0:
            lines.append(f"tolerance: may be up to {self.tolerance:g} worse than the champion")
        elif self.tolerance == 0:
            lines.append("tolerance: 0 (must be at least as good as the champion)")
        else:
            lines.append(f"tolerance: {self.tolerance:g} (must beat the champion by at least {-self.tolerance:g})")
        if self.floors:
            parts = [
                f"{name} {'≥' if self.higher_is_better(name) else '≤'} {value:g}" for name, value in self.floors.items()
            ]
            lines.append("floors: " + ", ".join(parts))
        else:
            lines.append("floors: none")
        return lines


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

    @property
    def promote(self) -> bool:
        """True when the verdict is ``promote``."""
        return self.verdict == "promote"

    def tags(self) -> dict[str, str]:
        """MLflow model-version tags recording the decision."""
        reason = "; ".join(self.reasons)
        if len(reason) > _MAX_REASON_TAG_CHARS:
            reason = reason[: _MAX_REASON_TAG_CHARS - 1] + "…"
        return {lineage.GATE: self.verdict, lineage.GATE_REASON: reason}

    def markdown(self) -> str:
        """A decision record for the Prefect UI: verdict, metrics table, reasons, policy."""
        champion_label = f"champion v{self.champion_version}" if self.champion_version else "champion"
        lines = [f"# Gate verdict: **{self.verdict.upper()}**", ""]
        if self.champion is None:
            lines.append("No champion yet: the candidate is judged on the floors and ONNX parity alone.")
        else:
            lines.append(f"Candidate compared with {champion_label} on **{self.policy.primary_metric}**.")
        lines += ["", f"| metric | candidate | {champion_label} | delta |", "|---|---:|---:|---:|"]
        for name in _ordered_metrics(self.candidate, self.champion or {}):
            label = name
            if name in _HIGHER_IS_BETTER:
                label += " ↑" if _HIGHER_IS_BETTER[name] else " ↓"
            if name == self.policy.primary_metric:
                label = f"**{label}** (primary)"
            champion_value = self.champion.get(name) if self.champion is not None else None
            delta = self.deltas.get(name)
            lines.append(
                f"| {label} | {_cell(self.candidate.get(name))} | {_cell(champion_value)} "
                f"| {'—' if delta is None else f'{delta:+.4f}'} |"
            )
        lines += ["", "## Reasons", ""]
        lines += [f"- {reason}" for reason in self.reasons]
        lines += ["", "## Policy", ""]
        lines += [f"- {line}" for line in self.policy.describe()]
        parity = "passed" if self.parity_passed else "FAILED"
        detail = f" ({self.parity_summary})" if self.parity_summary else ""
        lines.append(f"- ONNX parity (always required): {parity}{detail}")
        return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


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
) -> PromotionDecision:
    """Decide whether the candidate may become champion; every failed check becomes a reason.

    Refused when ONNX parity failed, when any floor is not met, when a metric the policy needs is missing or
    not a number, or when the candidate is worse than the champion on the primary metric by more than
    ``policy.tolerance``.
    """
    failures: list[str] = []
    if not parity_passed:
        detail = f" ({parity_summary})" if parity_summary else ""
        failures.append(
            f"ONNX parity check failed{detail}: a model whose ONNX export disagrees with the trained "
            "model is never promoted"
        )

    for name, floor in policy.floors.items():
        value = _finite(candidate, name)
        bound = "floor" if _HIGHER_IS_BETTER[name] else "ceiling"
        if value is None:
            failures.append(_missing_sentence(candidate, name, "candidate", f"so its {bound} cannot be checked"))
        elif _HIGHER_IS_BETTER[name] and value < floor - _EPSILON:
            failures.append(f"{name} {value:.4f} is below the floor of {floor:.4f}")
        elif not _HIGHER_IS_BETTER[name] and value > floor + _EPSILON:
            failures.append(f"{name} {value:.4f} is above the ceiling of {floor:.4f}")

    primary = policy.primary_metric
    higher = _HIGHER_IS_BETTER[primary]
    cand_primary = _finite(candidate, primary)
    if cand_primary is None and primary not in policy.floors:
        failures.append(_missing_sentence(candidate, primary, "candidate", "so it cannot be compared"))

    champion_metrics = {k: float(v) for k, v in champion.items()} if champion is not None else None
    champion_label = f"champion v{champion_version}" if champion_version else "the champion"
    comparison = ""
    if champion_metrics is not None:
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
        floors_met = "meets every floor" if policy.floors else "has no floors to meet"
        if champion_metrics is None:
            reasons = (f"no champion yet; the candidate {floors_met} and passed ONNX parity",)
        else:
            reasons = (comparison, f"the candidate {floors_met} and passed ONNX parity")

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
    )
