"""Drift check: driftloop's core.drift beside Evidently 0.7.23's DataDriftPreset, on the same synthetic data.

Run: .venv/bin/python bench/bench_drift.py [--quick]
     (full: 100k×20, 100k×100, 1M×20, 300k×100; several minutes, nearly all of it Evidently; prints one table)

Data: 80% numerical columns (normal, every fourth one Poisson counts with ties), 20% categorical (5 levels);
in the current frame every other column of each kind is shifted, so half the columns drift. Reference and
current have the same number of rows and different seeds.

Every measurement runs in its own subprocess, so one's peak memory (ru_maxrss) does not include the other's:
  prepare    generate the reference, build_profile, save_profile (done once, at training time; timed apart)
  ours       generate the current frame only, then time load_profile + check_drift with the importance-weighted
             share on (rule "either"; median of 3 runs)
  evidently  generate both frames, then time Report([DataDriftPreset()], include_tests=True).run and read it back
"peak" is the subprocess's maximum RSS, data and imports included; "before" is the RSS before the timed step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FULL_SIZES = [(100_000, 20), (100_000, 100), (1_000_000, 20), (300_000, 100)]
QUICK_SIZES = [(5_000, 20), (20_000, 20), (10_000, 100)]
REFERENCE_SEED, CURRENT_SEED = 1, 2
OUR_REPEATS = 3
LEVELS = np.array(["alpha", "beta", "gamma", "delta", "epsilon"], dtype=object)
# Issue #5's measurement of Evidently on this box: seconds per size.
ISSUE_BASELINE = {(100_000, 20): 4.0, (100_000, 100): 28.0, (1_000_000, 20): 57.0, (300_000, 100): 89.0}
TARGET_SPEEDUP = 50
TARGET_SECONDS = {(300_000, 100): 3.0, (1_000_000, 20): 2.0}


def columns(cols: int) -> tuple[list[str], list[str]]:
    n_num = round(cols * 0.8)
    return [f"num_{i:03d}" for i in range(n_num)], [f"cat_{i:03d}" for i in range(cols - n_num)]


def make_frame(rows: int, cols: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numeric, categorical = columns(cols)
    data: dict[str, np.ndarray] = {}
    for i, name in enumerate(numeric):
        moved = shifted and i % 2 == 0
        if i % 4 == 3:
            data[name] = rng.poisson(12 if moved else 10, rows)
        else:
            scale = 1.0 + i % 3
            data[name] = rng.normal(i + (0.3 * scale if moved else 0.0), scale, rows)
    for i, name in enumerate(categorical):
        moved = shifted and i % 2 == 0
        p = [0.4, 0.3, 0.1, 0.1, 0.1] if moved else [0.2] * 5
        data[name] = LEVELS[rng.choice(LEVELS.size, size=rows, p=p)]
    return pd.DataFrame(data)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker_prepare(rows: int, cols: int, directory: Path) -> dict:
    from driftloop.core.drift import build_profile
    from driftloop.io.reference import save_profile

    numeric, categorical = columns(cols)
    reference = make_frame(rows, cols, REFERENCE_SEED, shifted=False)
    start = time.perf_counter()
    # Importances as training keeps them (any positive numbers): the weighted share is computed in every check.
    importances = {name: 1.0 / (1 + i) for i, name in enumerate([*numeric, *categorical])}
    profile = build_profile(reference, numeric, categorical, importances=importances)
    built = time.perf_counter() - start
    paths = save_profile(profile, directory)
    return {"build_s": built, "bytes": sum(p.stat().st_size for p in paths), "peak_mb": peak_mb()}


def worker_ours(rows: int, cols: int, directory: Path) -> dict:
    from driftloop.core.drift import check_drift
    from driftloop.io.reference import load_profile

    current = make_frame(rows, cols, CURRENT_SEED, shifted=True)
    before = peak_mb()
    times, loads = [], []
    for _ in range(OUR_REPEATS):
        start = time.perf_counter()
        profile = load_profile(directory)
        loaded = time.perf_counter()
        verdict = check_drift(profile, current, rule="either")
        times.append(time.perf_counter() - start)
        loads.append(loaded - start)
        del profile
    return {
        "seconds": statistics.median(times),
        "load_s": statistics.median(loads),
        "before_mb": before,
        "peak_mb": peak_mb(),
        "share": verdict.share,
        "drift": verdict.is_drift,
        "columns": {c.column: [c.method, c.threshold, c.score, c.drifted] for c in verdict.columns},
    }


def worker_evidently(rows: int, cols: int) -> dict:
    from driftloop.io.drift_report import evidently_column_verdicts  # imports Evidently (~3.5 s), not timed

    numeric, categorical = columns(cols)
    reference = make_frame(rows, cols, REFERENCE_SEED, shifted=False)
    current = make_frame(rows, cols, CURRENT_SEED, shifted=True)
    before = peak_mb()
    start = time.perf_counter()
    result = evidently_column_verdicts(reference, current, numeric, categorical)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "before_mb": before,
        "peak_mb": peak_mb(),
        "share": result.share,
        "drift": result.drift,
        "columns": {name: list(v) for name, v in result.columns.items()},
    }


def run_worker(kind: str, rows: int, cols: int, directory: Path) -> dict:
    argv = [sys.executable, __file__, "--worker", kind, "--rows", str(rows), "--cols", str(cols)]
    argv += ["--dir", str(directory)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def compare(ours: dict, theirs: dict) -> dict:
    names = sorted(ours["columns"])
    same_columns = names == sorted(theirs["columns"])
    methods = same_columns and all(ours["columns"][n][0] == theirs["columns"][n][0] for n in names)
    flags = same_columns and all(ours["columns"][n][3] == theirs["columns"][n][3] for n in names)
    verdict = ours["drift"] == theirs["drift"] and ours["share"] == theirs["share"]
    worst = 0.0
    for n in names if same_columns else []:
        a, b = ours["columns"][n][2], theirs["columns"][n][2]
        worst = max(worst, abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0)
    return {"methods": methods, "flags": flags, "verdict": verdict, "max_rel": worst}


def yes(value: bool) -> str:
    return "yes" if value else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument("--worker", choices=["prepare", "ours", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cols", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "prepare":
            result = worker_prepare(args.rows, args.cols, args.dir)
        elif args.worker == "ours":
            result = worker_ours(args.rows, args.cols, args.dir)
        else:
            result = worker_evidently(args.rows, args.cols)
        print("RESULT " + json.dumps(result))
        return

    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    load = os.getloadavg()[0]
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), load average {load:.2f} at start; "
        f"numpy {np.__version__}, pandas {pd.__version__}; ours = median of {OUR_REPEATS}, Evidently = one run"
    )
    header = (
        f"{'rows × cols':>14} {'Evidently s':>12} {'ours s':>8} {'(load s)':>9} {'speedup':>8} "
        f"{'Evid. peak MB':>14} {'ours peak MB':>13} {'(before)':>9} "
        f"{'methods':>8} {'flags':>6} {'verdict':>8} {'max rel diff':>13} {'profile MB':>11} {'build s':>8}"
    )
    print(header)
    print("-" * len(header))
    checks: list[str] = []
    for rows, cols in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
            directory = Path(tmp) / "reference"
            prepared = run_worker("prepare", rows, cols, directory)
            ours = run_worker("ours", rows, cols, directory)
            theirs = run_worker("evidently", rows, cols, directory)
        agree = compare(ours, theirs)
        speedup = theirs["seconds"] / ours["seconds"]
        print(
            f"{f'{rows:,} × {cols}':>14} {theirs['seconds']:>12.2f} {ours['seconds']:>8.3f} {ours['load_s']:>9.3f} "
            f"{speedup:>7.0f}× {theirs['peak_mb']:>14,.0f} {ours['peak_mb']:>13,.0f} {ours['before_mb']:>9,.0f} "
            f"{yes(agree['methods']):>8} {yes(agree['flags']):>6} {yes(agree['verdict']):>8} "
            f"{agree['max_rel']:>13.1e} {prepared['bytes'] / 1e6:>11.1f} {prepared['build_s']:>8.2f}",
            flush=True,
        )
        if rows >= 100_000:
            checks.append(f"{rows:,}×{cols}: speedup {speedup:.0f}× (target ≥ {TARGET_SPEEDUP}×) {yes(speedup >= 50)}")
        if (rows, cols) in TARGET_SECONDS:
            limit = TARGET_SECONDS[(rows, cols)]
            checks.append(
                f"{rows:,}×{cols}: ours {ours['seconds']:.2f} s (target ≤ {limit} s) {yes(ours['seconds'] <= limit)}"
            )
        if (rows, cols) in ISSUE_BASELINE:
            baseline = ISSUE_BASELINE[(rows, cols)]
            checks.append(f"{rows:,}×{cols}: Evidently {theirs['seconds']:.1f} s here, {baseline} s in the issue")
    print()
    print("\n".join(checks))
    print(f"load average {os.getloadavg()[0]:.2f} at the end (2 cores; other processes share them)")


if __name__ == "__main__":
    main()
