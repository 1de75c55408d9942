"""Drift check: driftloop's core.drift beside Evidently 0.7.23's DataDriftPreset, on the same synthetic data.

Run: .venv/bin/python bench/bench_drift.py [--quick | --sizes 1000000x20 300000x100 | --chunked-only]
     (full: 100k×20, 100k×100, 1M×20, 300k×100, then a 10M×20 window in chunks; about 15 minutes, most of it
     Evidently; prints two tables)

Data: 80% numerical columns (normal, every fourth one Poisson counts with ties), 20% categorical (5 levels);
in the current frame every other column of each kind is shifted, so half the columns drift. Reference and
current have the same number of rows and different seeds.

Every measurement runs in its own subprocess, so one's peak memory (ru_maxrss) does not include the other's:
  prepare    generate the reference, build_profile, save_profile (done once, at training time; timed apart)
  ours       generate the current frame only, then time everything a check computes on it: load_profile,
             check_drift with the model output's test and the importance-weighted share (rule "either"), the
             label-free estimate, the label check and target drift on the 10% of rows labelled, and the segments
             of cat_000; the features' tests on a thread beside the rest, as the drift flow runs them (median
             of 3 runs)
  plain      the same statistics written the plain way, from the raw reference and current columns, one thread:
             scipy's wasserstein_distance / ks_2samp / chisquare, np.unique counts + Jensen-Shannon, np.interp
             for the estimate: the limit the profile's precomputation and threads are measured against
  evidently  generate both frames, then time Report([DataDriftPreset()], include_tests=True).run and read it back
             (Evidently's preset computes the feature columns only)
  chunked    a 10M×20 window generated and checked in 1M-row chunks (io.window_spill: spilled to Parquet, tested
             a column at a time); beside it the in-memory check of the same rows: same verdict, time, peak memory.
             (An address-space cap, RLIMIT_AS, is no measure here: numpy and pyarrow reserve far more address
             space than they use, and a 2 GB cap failed a 1M-row chunk's allocation.)
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
CHUNKED_ROWS, CHUNKED_COLS, CHUNK_ROWS = 10_000_000, 20, 1_000_000
LABELLED_SHARE = 0.1
SEGMENT = "cat_000"
TARGET_PLAIN_RATIO = 2.0
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


def with_outputs(frame: pd.DataFrame, seed: int, shifted: bool) -> pd.DataFrame:
    """A binary model's logged outputs beside the features: its score, the class it answered, 10% labelled."""
    rng = np.random.default_rng(seed + 100)
    score = rng.beta(2.0 if shifted else 3.0, 2.0, len(frame))
    label = np.where(score >= 0.5, "yes", "no").astype(object)
    truth = np.where(rng.random(len(frame)) < score, "yes", "no").astype(object)
    actual = np.where(rng.random(len(frame)) < LABELLED_SHARE, truth, None)
    return frame.assign(probability=score, label=label, actual=actual)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker_prepare(rows: int, cols: int, directory: Path) -> dict:
    from driftloop.core.drift import build_profile
    from driftloop.core.performance_estimate import fit_calibration
    from driftloop.core.task import Task, TaskKind
    from driftloop.io.reference import save_profile

    numeric, categorical = columns(cols)
    reference = with_outputs(make_frame(rows, cols, REFERENCE_SEED, shifted=False), REFERENCE_SEED, False)
    start = time.perf_counter()
    # Importances as training keeps them (any positive numbers): the weighted share is computed in every check.
    importances = {name: 1.0 / (1 + i) for i, name in enumerate([*numeric, *categorical])}
    task = Task(TaskKind.BINARY, ("no", "yes"))
    truth = (np.random.default_rng(7).random(rows) < reference["probability"]).astype(int)
    profile = build_profile(
        reference,
        numeric,
        categorical,
        importances=importances,
        predictions=reference["probability"].to_numpy(),
        calibration=fit_calibration(task, reference["probability"].to_numpy(), truth),
        target=pd.Series(np.where(truth == 1, "yes", "no")),
        segments=[SEGMENT],
    )
    built = time.perf_counter() - start
    paths = save_profile(profile, directory)
    return {"build_s": built, "bytes": sum(p.stat().st_size for p in paths), "peak_mb": peak_mb()}


def worker_ours(rows: int, cols: int, directory: Path) -> dict:
    from driftloop.core.background import in_background
    from driftloop.core.drift import check_drift, check_target_drift
    from driftloop.core.label_check import check_labels, labelled_rows
    from driftloop.core.performance_estimate import estimate_performance
    from driftloop.core.segments import check_segments
    from driftloop.core.task import Task, TaskKind
    from driftloop.io.reference import load_profile

    task = Task(TaskKind.BINARY, ("no", "yes"))
    current = with_outputs(make_frame(rows, cols, CURRENT_SEED, shifted=True), CURRENT_SEED, True)
    before = peak_mb()
    times, loads = [], []
    for _ in range(OUR_REPEATS):
        start = time.perf_counter()
        profile = load_profile(directory)
        loaded = time.perf_counter()
        # As flows/drift.py: the features' tests on a thread beside the other figures.
        features = in_background(check_drift, profile, current, rule="either", predictions=current["probability"])
        labelled = labelled_rows(current)
        estimate_performance(profile.calibration, task, current["probability"].to_numpy(),
                             current["label"].to_numpy(), 0.8, 0.05, 100)  # fmt: skip
        check_labels(task, labelled["label"].to_numpy(), labelled["actual"].to_numpy(), 0.8, 100, 0.05)
        check_target_drift(profile, task, labelled["actual"], 100)
        check_segments(profile, current, [SEGMENT], task, drift_share=0.5, min_rows=100, label_min_rows=100)
        verdict = features.result()
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


def worker_plain(rows: int, cols: int) -> dict:
    """The same statistics, the plain way: from the raw columns, with scipy and numpy, on one thread."""
    from scipy import stats
    from scipy.spatial import distance

    numeric, categorical = columns(cols)
    reference = with_outputs(make_frame(rows, cols, REFERENCE_SEED, shifted=False), REFERENCE_SEED, False)
    current = with_outputs(make_frame(rows, cols, CURRENT_SEED, shifted=True), CURRENT_SEED, True)
    truth = np.where(np.random.default_rng(7).random(rows) < reference["probability"], "yes", "no")
    sample = reference.sample(n=min(5000, rows), random_state=0)

    def js(ref: np.ndarray, cur: np.ndarray) -> float:
        keys, ref_counts = np.unique(ref.astype(str), return_counts=True)
        cur_keys, cur_counts = np.unique(cur.astype(str), return_counts=True)
        union = np.union1d(keys, cur_keys)
        p = np.zeros(union.size)
        q = np.zeros(union.size)
        p[np.searchsorted(union, keys)] = ref_counts
        q[np.searchsorted(union, cur_keys)] = cur_counts
        return float(distance.jensenshannon(p / p.sum(), q / q.sum()))

    def chi2(ref: np.ndarray, cur: np.ndarray) -> float:
        union = np.union1d(ref.astype(str), cur.astype(str))
        p = np.array([np.count_nonzero(ref.astype(str) == k) for k in union], dtype=float)
        q = np.array([np.count_nonzero(cur.astype(str) == k) for k in union], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(stats.chisquare(q, p * q.sum() / p.sum()).pvalue)

    before = peak_mb()
    start = time.perf_counter()
    for name in numeric:
        ref = reference[name].to_numpy(dtype=float)
        stats.wasserstein_distance(ref, current[name].to_numpy(dtype=float)) / max(float(np.std(ref)), 0.001)
    for name in categorical:
        js(reference[name].to_numpy(), current[name].to_numpy())
    stats.wasserstein_distance(reference["probability"], current["probability"])  # the model's output
    labelled = current[current["actual"].notna()]
    js(truth, labelled["actual"].to_numpy())  # target drift
    float(np.mean(labelled["label"].to_numpy() == labelled["actual"].to_numpy()))  # the label check
    order = np.argsort(reference["probability"].to_numpy())  # the estimate: calibrate, then average
    calibrated = np.interp(current["probability"], reference["probability"].to_numpy()[order],
                           (truth[order] == "yes").astype(float))  # fmt: skip
    right = np.where(current["label"] == "yes", calibrated, 1 - calibrated)
    float(right.mean()), float(np.sum(right * (1 - right)))
    for value in np.unique(current[SEGMENT].astype(str)):  # segments: the sample's rows of the value vs the window's
        ref_rows, cur_rows = sample[sample[SEGMENT] == value], current[current[SEGMENT] == value]
        for name in numeric:
            stats.ks_2samp(ref_rows[name].to_numpy(dtype=float), cur_rows[name].to_numpy(dtype=float))
        for name in categorical:
            chi2(ref_rows[name].to_numpy(), cur_rows[name].to_numpy())
    return {"seconds": time.perf_counter() - start, "before_mb": before, "peak_mb": peak_mb()}


def worker_chunked(rows: int, cols: int, directory: Path, in_memory: bool) -> dict:
    """A window of ``rows`` rows made of CHUNK_ROWS-row chunks, checked in chunks (or, to compare, in memory)."""
    from driftloop.core.drift import check_drift
    from driftloop.io.reference import load_profile
    from driftloop.io.window_spill import check_drift_in_chunks

    profile = load_profile(directory / "reference")

    def chunks() -> object:
        for index in range(rows // CHUNK_ROWS):
            frame = make_frame(CHUNK_ROWS, cols, CURRENT_SEED + index, shifted=True)
            yield with_outputs(frame, CURRENT_SEED + index, True)

    before = peak_mb()
    start = time.perf_counter()
    if in_memory:
        window = pd.concat(list(chunks()), ignore_index=True)  # type: ignore[call-overload]
        verdict = check_drift(profile, window, rule="either", predictions=window["probability"])
    else:
        spill = directory / "spill"
        spill.mkdir()
        verdict = check_drift_in_chunks(profile, chunks(), spill, prediction_column="probability",  # type: ignore[arg-type]
                                        rule="either")  # fmt: skip
    return {
        "seconds": time.perf_counter() - start,
        "before_mb": before,
        "peak_mb": peak_mb(),
        "verdict": verdict.as_dict(),
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


def _size(text: str) -> tuple[int, int]:
    rows, _, cols = text.lower().partition("x")
    try:
        return int(rows), int(cols)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is ROWSxCOLS, like 1000000x20, not {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument("--chunked-only", action="store_true", help="only the 10M-row window in chunks")
    parser.add_argument(
        "--sizes", nargs="+", type=_size, metavar="ROWSxCOLS", help="only these sizes (e.g. 1000000x20), no 10M window"
    )
    parser.add_argument(
        "--worker", choices=["prepare", "ours", "plain", "evidently", "chunked", "in-memory"], help=argparse.SUPPRESS
    )
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cols", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "prepare":
            result = worker_prepare(args.rows, args.cols, args.dir)
        elif args.worker == "ours":
            result = worker_ours(args.rows, args.cols, args.dir)
        elif args.worker == "plain":
            result = worker_plain(args.rows, args.cols)
        elif args.worker in ("chunked", "in-memory"):
            result = worker_chunked(args.rows, args.cols, args.dir, in_memory=args.worker == "in-memory")
        else:
            result = worker_evidently(args.rows, args.cols)
        print("RESULT " + json.dumps(result))
        return

    if args.chunked_only:
        print("\n".join(chunked_table()))
        return
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    load = os.getloadavg()[0]
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), load average {load:.2f} at start; "
        f"numpy {np.__version__}, pandas {pd.__version__}; ours = median of {OUR_REPEATS}, Evidently = one run"
    )
    header = (
        f"{'rows × cols':>14} {'Evidently s':>12} {'plain s':>8} {'ours s':>8} {'(load s)':>9} {'speedup':>8} "
        f"{'vs plain':>8} "
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
            plain = run_worker("plain", rows, cols, directory)
            theirs = run_worker("evidently", rows, cols, directory)
        agree = compare(ours, theirs)
        speedup = theirs["seconds"] / ours["seconds"]
        ratio = ours["seconds"] / plain["seconds"]
        print(
            f"{f'{rows:,} × {cols}':>14} {theirs['seconds']:>12.2f} {plain['seconds']:>8.3f} {ours['seconds']:>8.3f} "
            f"{ours['load_s']:>9.3f} {speedup:>7.0f}× {ratio:>7.2f}× "
            f"{theirs['peak_mb']:>14,.0f} {ours['peak_mb']:>13,.0f} {ours['before_mb']:>9,.0f} "
            f"{yes(agree['methods']):>8} {yes(agree['flags']):>6} {yes(agree['verdict']):>8} "
            f"{agree['max_rel']:>13.1e} {prepared['bytes'] / 1e6:>11.1f} {prepared['build_s']:>8.2f}",
            flush=True,
        )
        if rows >= 100_000:
            checks.append(f"{rows:,}×{cols}: speedup {speedup:.0f}× (target ≥ {TARGET_SPEEDUP}×) {yes(speedup >= 50)}")
            checks.append(
                f"{rows:,}×{cols}: ours / plain {ratio:.2f}× (target ≤ {TARGET_PLAIN_RATIO}×) "
                f"{yes(ratio <= TARGET_PLAIN_RATIO)}"
            )
        if (rows, cols) in TARGET_SECONDS:
            limit = TARGET_SECONDS[(rows, cols)]
            checks.append(
                f"{rows:,}×{cols}: ours {ours['seconds']:.2f} s (target ≤ {limit} s) {yes(ours['seconds'] <= limit)}"
            )
        if (rows, cols) in ISSUE_BASELINE:
            baseline = ISSUE_BASELINE[(rows, cols)]
            checks.append(f"{rows:,}×{cols}: Evidently {theirs['seconds']:.1f} s here, {baseline} s in the issue")
    if not args.quick and not args.sizes:
        checks += chunked_table()
    print()
    print("\n".join(checks))
    print(f"load average {os.getloadavg()[0]:.2f} at the end (2 cores; other processes share them)")


def chunked_table() -> list[str]:
    """The 10M-row window: in chunks under an address-space cap, and in memory; verdicts compared."""
    print()
    header = f"{'10M × 20 window':>22} {'seconds':>8} {'peak MB':>8} {'verdict':>8} {'share':>6}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        directory = Path(tmp)
        run_worker("prepare", CHUNK_ROWS, CHUNKED_COLS, directory / "reference")
        chunked = run_worker("chunked", CHUNKED_ROWS, CHUNKED_COLS, directory)
        whole = run_worker("in-memory", CHUNKED_ROWS, CHUNKED_COLS, directory)
    for name, result in (("in chunks of 1M rows", chunked), ("in memory", whole)):
        verdict = result["verdict"]
        print(
            f"{name:>22} {result['seconds']:>8.1f} {result['peak_mb']:>8,.0f} {verdict['status']:>8} "
            f"{verdict['share']:>6.2f}",
            flush=True,
        )
    same = chunked["verdict"] == whole["verdict"]
    return [
        f"10M×20 in chunks: same verdict as in memory, column for column: {yes(same)}; peak "
        f"{chunked['peak_mb']:,.0f} MB vs {whole['peak_mb']:,.0f} MB in memory"
    ]


if __name__ == "__main__":
    main()
