"""Drift checks with known figures, for the monitoring store's and the health metrics' tests."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from driftloop.core.check_record import CheckRecord, build_record
from driftloop.core.drift import DriftVerdict, build_profile, check_drift
from driftloop.core.label_check import check_labels
from driftloop.core.performance_estimate import Calibration, estimate_performance
from driftloop.core.task import Task, TaskKind

BINARY = Task(TaskKind.BINARY, ("no", "yes"))


def drift_verdict(seed: int, shift: float) -> DriftVerdict:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000)})
    # No shift: rows of the reference itself (no chance false alarm in a test about storage); else a moved "a".
    current = reference.iloc[::2].iloc[:800].copy()
    current["a"] += shift
    profile = build_profile(reference, ["a", "b"], [], importances={"a": 0.9, "b": 0.1})
    return check_drift(profile, current, drift_share=0.5, min_rows=100, rule="weighted")


def make_record(
    ts: datetime, model: str, seed: int, shift: float, labelled: int, version: str = "3", calibrated: bool = False
) -> CheckRecord:
    """A check of 800 rows, ``labelled`` of them labelled and all predicted right; ``shift`` moves column "a".

    With ``calibrated``, every row scored 0.7 by a calibrated model: estimated accuracy 0.7.
    """
    verdict = drift_verdict(seed, shift)
    predicted = np.array(["yes"] * labelled, dtype=object)
    labels = check_labels(BINARY, predicted, predicted.copy(), 0.9, 50, 0.05)
    calibration = Calibration("binary", np.array([0.0, 1.0]), np.array([0.0, 1.0])) if calibrated else None
    estimate = estimate_performance(calibration, BINARY, np.full(800, 0.7), np.full(800, "yes"), 0.9, 0.05, 100)
    action = "emit" if verdict.is_drift else "none"
    return build_record(ts, model, version, verdict, labels, estimate, None, action, None)
