"""`driftloop score` (batch inference on Dask) beside bare onnxruntime on the same rows in one process.

Run: .venv/bin/python bench/bench_score.py [--quick | --rows N ...]
     (full: 1M and 10M rows, 1 and 2 Dask workers, then 10M rows under a memory cap; about 15 minutes)

The champion is the bundled churn model trained by the real CLI into a scratch home. The input is the bundled
churn table resampled (seeded) to N rows, as a directory of 250,000-row Parquet files (19 features + an id).

  limit   one process, one thread: every file read, to_model_frame, then the version's serving graph's
          session.run, as the server's single-threaded session; its rows/s is the limit a worker could reach
  bare    the same, session.run alone (features prepared beforehand, not timed): onnxruntime's own rate
  score   `driftloop score DIR --out OUT --key id --workers W` end to end (cluster start, validation, scoring,
          Parquet writing, 1% logged to the prediction log), as a subprocess; wall time
"per core" is score's rows/s divided by its workers, beside the limit's (the target: ≥ 50% of it). "phase" is the
scoring itself as the command reports it ("scored … in S s": from the first task to the last answer written, the
cluster already up), the part the limit measures; the command's wall time adds its fixed costs (imports, the
registry, the model's fetch, starting and stopping the cluster). "peak" is the largest resident memory of the score
command and its worker processes, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one table, no download bars
sys.path.insert(0, str(Path(__file__).resolve().parent))
from driftloop.settings import TELEMETRY_OFF  # noqa: E402

from common import ROOT, VENV_BIN, train_versions  # noqa: E402

FILE_ROWS = 250_000
FULL = [(1_000_000, 1), (1_000_000, 2), (10_000_000, 1), (10_000_000, 2)]
QUICK = [(500_000, 1), (500_000, 2)]
CAPPED_WORKER_MEMORY = "700MB"  # each worker's limit in the capped 10M run (the input is several GB in memory)


def make_input(directory: Path, rows: int) -> Path:
    """The churn table resampled to ``rows`` rows, as Parquet files of FILE_ROWS rows."""
    source = pd.read_csv(ROOT / "src" / "driftloop" / "data" / "churn" / "churn.csv.gz")
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, start in enumerate(range(0, rows, FILE_ROWS)):
        count = min(FILE_ROWS, rows - start)
        part = source.iloc[rng.integers(0, len(source), count)].reset_index(drop=True)
        part.insert(0, "id", np.arange(start, start + count))
        part.drop(columns=["churn"]).to_parquet(directory / f"part-{index:04d}.parquet", index=False)
    return directory


def limit(home: Path, directory: Path) -> tuple[float, float, int]:
    """(rows/s read+prepare+run, rows/s run alone, rows) in this process, one thread."""
    from driftloop.core.features import to_model_frame
    from driftloop.core.schema import DatasetSchema
    from driftloop.io.bundle import find_model_file
    from driftloop.io.onnx_runtime import OnnxModel
    from driftloop.io.registry import ModelRegistry
    from driftloop.settings import Settings

    registry = ModelRegistry("churn", Settings(home=home).tracking_uri)
    version = str(registry.champion().version)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = registry.download_model_dir(version, Path(tmp))
        schema = DatasetSchema.model_validate_json(find_model_file(model_dir, "schema.json").read_text())
        graph = find_model_file(model_dir, "serving.onnx").read_bytes()
    model = OnnxModel.from_bytes(graph, schema, intra_op_num_threads=1)
    whole = run_only = 0.0
    rows = 0
    for path in sorted(directory.glob("*.parquet")):
        started = time.perf_counter()
        frame = to_model_frame(pd.read_parquet(path), schema)
        feed = model.grouped_feed(
            frame[schema.numeric].to_numpy(dtype=np.float32), frame[schema.categorical].to_numpy(dtype=object)
        )
        ran = time.perf_counter()
        model.run(feed)
        done = time.perf_counter()
        whole += done - started
        run_only += done - ran
        rows += len(frame)
    return rows / whole, rows / run_only, rows


def score(home: Path, directory: Path, out: Path, workers: int, memory: str = "auto") -> tuple[float, float, str]:
    """(wall seconds, peak MB of the command and its workers, the command's summary line)."""
    env = {**os.environ, **TELEMETRY_OFF, "DRIFTLOOP_HOME": str(home), "DRIFTLOOP_START_MLFLOW_UI": "false"}
    env.pop("PREFECT_API_URL", None)
    argv = [str(VENV_BIN / "driftloop"), "score", str(directory), "--out", str(out), "--key", "id"]
    argv += ["--workers", str(workers), "--memory-limit", memory, "--log-fraction", "0.01"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: list[float] = []
    sampler = threading.Thread(target=_sample_peak, args=(process, peaks), daemon=True)
    sampler.start()
    # The end is the command's own: waited for here, not seen by the sampler up to 0.2 s late. Its output is read
    # after, so the command must not fill the pipe: it prints a few lines.
    process.wait()
    seconds = time.perf_counter() - started
    sampler.join()
    peak = max(peaks, default=0.0)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"driftloop score failed ({process.returncode}):\n{stderr[-3000:]}")
    line = next((x for x in stdout.splitlines() if x.startswith("scored")), stdout.strip())
    return seconds, peak, line


def _sample_peak(process: subprocess.Popen[str], peaks: list[float]) -> None:
    """The largest resident memory of ``process`` and its children together, sampled every 0.2 s until it ends."""
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
            peaks.append(sum(p.memory_info().rss for p in family if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500k rows only")
    parser.add_argument("--rows", type=int, nargs="+", help="these sizes, 1 and 2 workers each (the capped run: 10M)")
    args = parser.parse_args()
    runs = QUICK if args.quick else [(r, w) for r in args.rows for w in (1, 2)] if args.rows else FULL
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f} at "
        f"start; {psutil.virtual_memory().total / 2**30:.0f} GB RAM"
    )
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        work = Path(tmp)
        home = work / "home"
        train_versions(home, ["hist_gradient_boosting"])
        inputs: dict[int, Path] = {}
        header = (
            f"{'rows':>11} {'workers':>7} {'limit r/s':>10} {'bare r/s':>10} {'score s':>8} {'score r/s':>10} "
            f"{'per core':>9} {'of limit':>8} {'phase s':>8} {'of limit':>8} {'peak MB':>8} {'input MB':>9}"
        )
        print(header)
        print("-" * len(header))
        checks = []
        for rows, workers in runs:
            if rows not in inputs:
                inputs[rows] = make_input(work / f"in-{rows}", rows)
                measured = limit(home, inputs[rows])
            seconds, peak, line = score(home, inputs[rows], work / f"out-{rows}-{workers}", workers)
            rate = rows / seconds
            per_core = rate / workers
            phase = scoring_seconds(line)
            phase_share = rows / phase / workers / measured[0]
            size = sum(p.stat().st_size for p in inputs[rows].glob("*.parquet")) / 2**20
            print(
                f"{rows:>11,} {workers:>7} {measured[0]:>10,.0f} {measured[1]:>10,.0f} {seconds:>8.1f} {rate:>10,.0f} "
                f"{per_core:>9,.0f} {per_core / measured[0]:>7.0%} {phase:>8.1f} {phase_share:>7.0%} {peak:>8,.0f} "
                f"{size:>9,.0f}",
                flush=True,
            )
            checks.append(
                f"{rows:,} rows, {workers} worker(s): {per_core / measured[0]:.0%} of the limit per core end to end "
                f"(target ≥ 50%) {'yes' if per_core >= 0.5 * measured[0] else 'NO'}; the scoring phase alone "
                f"{phase_share:.0%}"
            )
        if 10_000_000 in inputs:
            rows = 10_000_000
            in_memory = pd.read_parquet(inputs[rows] / "part-0000.parquet").memory_usage(deep=True).sum()
            frame_mb = in_memory * (rows / FILE_ROWS) / 2**20
            seconds, peak, line = score(home, inputs[rows], work / "out-capped", 2, CAPPED_WORKER_MEMORY)
            checks.append(
                f"10M rows ({frame_mb:,.0f} MB as one pandas frame) with 2 workers capped at {CAPPED_WORKER_MEMORY} "
                f"each: completed in {seconds:.0f} s, peak {peak:,.0f} MB for the command and its workers"
            )
    print()
    print("\n".join(checks))
    print(f"load average {os.getloadavg()[0]:.2f} at the end; this process's peak {peak_self():,.0f} MB")


def scoring_seconds(line: str) -> float:
    """The seconds of the command's own summary line: ``scored N rows of … in S s (…)``."""
    found = re.search(r" in ([0-9.]+) s \(", line)
    if found is None:
        raise RuntimeError(f"no scoring time in the command's summary: {line!r}")
    return float(found.group(1))


def peak_self() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
