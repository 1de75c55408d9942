"""Which share decides a drift verdict, and what fired under it.

Light on purpose: the settings and the project file name the rules without importing the statistics.
"""

from __future__ import annotations

from typing import Literal

DriftStatus = Literal["drift", "no drift", "insufficient data"]
JUDGED: tuple[DriftStatus, ...] = ("drift", "no drift")  # a check that tested the features; its share means something
DriftRule = Literal["share", "weighted", "either"]
DRIFT_RULES: tuple[DriftRule, ...] = ("share", "weighted", "either")
# What may open a drift episode: the features' verdict (by the rule), the estimate without labels, the label check.
EpisodeTrigger = Literal["features", "estimate", "labels"]
EPISODE_TRIGGERS: tuple[EpisodeTrigger, ...] = ("features", "labels", "estimate")  # the order reasons are named in


def episode_reasons(
    triggers: tuple[EpisodeTrigger, ...], features: bool, estimate: bool, labels: bool
) -> tuple[EpisodeTrigger, ...]:
    """Which of the policy's triggers fired: the features drifted, the estimate or the labels say degraded."""
    fired = {"features": features, "estimate": estimate, "labels": labels}
    return tuple(trigger for trigger in EPISODE_TRIGGERS if trigger in triggers and fired[trigger])


def apply_rule(
    rule: DriftRule, share: float, weighted: float | None, drift_share: float
) -> tuple[DriftStatus, tuple[str, ...], str]:
    """(status, the shares that reached ``drift_share``, a note when ``rule`` fell back to the plain share)."""
    note = ""
    if weighted is None and rule != "share":
        note = "no importance weights in the reference profile: the plain share decides"
        rule = "share"
    candidates: list[tuple[str, float | None]] = []
    if rule in ("share", "either"):
        candidates.append(("share", share))
    if rule in ("weighted", "either"):
        candidates.append(("weighted share", weighted))
    fired = tuple(f"{label} {value:.2f}" for label, value in candidates if value is not None and value >= drift_share)
    return ("drift" if fired else "no drift"), fired, note
