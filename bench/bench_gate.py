"""The promotion gate's cost: intervals per segment vs the single pooled comparison the gate used to make.

The old gate computed ROC AUC once per model on a pooled holdout and compared the two numbers. The gate now scores
both models on the same rows and puts an interval on the difference on three segments (the reference holdout, the
recent labelled window's holdout, all of them): DeLong's for ROC AUC (the default), a paired bootstrap of 2,000
replicates for other metrics (shown here on ROC AUC too, to compare). For context, a HistGradientBoosting fit on
as many rows (what a retrain spends anyway). Synthetic scores, seeded; times are medians of a few repeats.
Run: `.venv/bin/python bench/bench_gate.py [rows ...]`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from driftloop.core.gates import ALL, RECENT, REFERENCE, GatePolicy, compare_segments
from driftloop.core.significance import paired_bootstrap


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _holdout(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    y = (signal + rng.normal(size=rows) > 0).astype(np.int64)
    champion = 1 / (1 + np.exp(-(signal + rng.normal(scale=1.0, size=rows))))
    candidate = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.9, size=rows))))
    recent = np.zeros(rows, dtype=bool)
    recent[: rows // 3] = True
    return y, candidate, champion, {REFERENCE: ~recent, RECENT: recent, ALL: np.ones(rows, dtype=bool)}


def main(sizes: list[int]) -> None:
    policy = GatePolicy()
    print(f"gate policy: {policy.primary_metric}, {policy.confidence:.0%} intervals on 3 segments")
    print(
        f"{'holdout rows':>12}  {'pooled (old)':>12}  {'DeLong x3':>10}  {'ratio':>6}  {'bootstrap x3':>12}  "
        f"{'ratio':>6}  {'HGB fit':>8}"
    )
    for rows in sizes:
        pooled, delong, bootstrap, fit = _measure(rows, policy)
        print(
            f"{rows:>12,}  {pooled * 1000:>10.1f}ms  {delong * 1000:>8.1f}ms  {delong / pooled:>5.1f}x  "
            f"{bootstrap * 1000:>10.0f}ms  {bootstrap / pooled:>5.0f}x  {fit:>7.2f}s"
        )


def _measure(rows: int, policy: GatePolicy) -> tuple[float, float, float, float]:
    """Seconds: the old pooled comparison, the gate (DeLong), the bootstrap on the same segments, one fit."""
    y, candidate, champion, segments = _holdout(rows, seed=rows)
    repeats = 5 if rows <= 20_000 else 2
    pooled = _median_seconds(lambda: (roc_auc_score(y, candidate), roc_auc_score(y, champion)), repeats)
    delong = _median_seconds(lambda: compare_segments(y, candidate, champion, segments, policy, seed=0), repeats)

    def bootstrap_segments() -> None:
        for mask in segments.values():
            paired_bootstrap("roc_auc", y[mask], candidate[mask], champion[mask], resamples=policy.resamples)

    bootstrap = _median_seconds(bootstrap_segments, 1)
    features = np.random.default_rng(rows).normal(size=(rows, 20))
    fit = _median_seconds(lambda: HistGradientBoostingClassifier(max_iter=100).fit(features, y), 1)
    return pooled, delong, bootstrap, fit


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1_000, 10_000, 50_000, 200_000])
