"""Performance estimated without labels: driftloop's core.performance_estimate beside NannyML's CBPE, same data.

Run: .venv/bin/python bench/bench_estimate.py [--quick] [--nannyml-venv DIR]

NannyML is not a dependency of driftloop: it is installed (nannyml==0.13.1 and statsmodels, from the package
registry) into a throwaway virtual environment of this benchmark only (default: <tmp>/driftloop-bench-nannyml,
kept between runs), and run there in a subprocess on the same Parquet files.

Data: a binary world where P(y = 1 | x1) = sigmoid(3·x1) whatever the inputs' distribution, x2 noise. A logistic
regression is trained on 20,000 rows with x1 ~ N(0, 2); the reference is a holdout of 10,000 rows (scores and
truth); the analysis is one chunk per scenario, x1 ~ N(0, spread): unshifted (2.0), harmful shifts towards the
boundary (1.0, 0.5, 0.3), a harmless one away from it (4.0). Each chunk's realized accuracy and ROC AUC use its
true labels, which neither estimator sees.

Printed: per chunk, the realized value, ours and NannyML's; the mean absolute difference of each from the realized
values and from each other; the time of fit + estimate of each (NannyML's import excluded, ours imported too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from driftloop.core.performance_estimate import estimate_performance, fit_calibration
from driftloop.core.task import Task, TaskKind

NANNYML = "nannyml==0.13.1"
TASK = Task(TaskKind.BINARY, ("0", "1"))
SPREADS = (2.0, 1.0, 0.5, 0.3, 4.0)

NANNYML_SCRIPT = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
import nannyml as nml
reference, analysis, chunk = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
estimator = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true", metrics=["roc_auc", "accuracy"],
                     chunk_size=chunk, problem_type="classification_binary")
estimator.fit(reference)
result = estimator.estimate(analysis).filter(period="analysis").to_df()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "accuracy": result[("accuracy", "value")].tolist(),
                  "roc_auc": result[("roc_auc", "value")].tolist()}))
"""


def world(rows: int, seed: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(0.0, spread, rows), rng.normal(0.0, 1.0, rows)])
    y = (rng.random(rows) < 1 / (1 + np.exp(-3.0 * x[:, 0]))).astype(int)
    return x, y


def nannyml_python(directory: Path) -> Path:
    python = directory / "bin" / "python"
    if not python.exists():
        print(f"installing {NANNYML} into {directory} (once; needs the package registry) ...", flush=True)
        venv.create(directory, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", NANNYML, "statsmodels"], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000-row chunks instead of 20,000")
    parser.add_argument("--nannyml-venv", type=Path, default=Path(tempfile.gettempdir()) / "driftloop-bench-nannyml")
    args = parser.parse_args()
    chunk = 2_000 if args.quick else 20_000

    x, y = world(20_000, 0, 2.0)
    model = LogisticRegression().fit(x, y)
    ref_x, ref_y = world(10_000, 1, 2.0)
    ref_scores = model.predict_proba(ref_x)[:, 1]
    baseline = float(np.mean(TASK.predicted(ref_scores) == ref_y))
    chunks = [world(chunk, 10 + i, spread) for i, spread in enumerate(SPREADS)]
    scores = [model.predict_proba(cx)[:, 1] for cx, _ in chunks]

    start = time.perf_counter()
    calibration = fit_calibration(TASK, ref_scores, ref_y)
    ours = [
        estimate_performance(
            calibration, TASK, s, np.asarray(TASK.classes, dtype=object)[TASK.predicted(s)], baseline, 0.05, 1
        )
        for s in scores
    ]
    ours_seconds = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        reference = pd.DataFrame({"y_pred_proba": ref_scores, "y_pred": TASK.predicted(ref_scores), "y_true": ref_y})
        analysis = pd.DataFrame({"y_pred_proba": np.concatenate(scores)})
        analysis["y_pred"] = TASK.predicted(analysis["y_pred_proba"].to_numpy())
        reference.to_parquet(Path(tmp) / "reference.parquet")
        analysis.to_parquet(Path(tmp) / "analysis.parquet")
        python = nannyml_python(args.nannyml_venv)
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        completed = subprocess.run(
            [str(python), "-c", NANNYML_SCRIPT, f"{tmp}/reference.parquet", f"{tmp}/analysis.parquet", str(chunk)],
            check=True, capture_output=True, text=True, env=env,
        )  # fmt: skip
    theirs = json.loads(completed.stdout.strip().splitlines()[-1])

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}; "
          f"{chunk:,} rows per chunk; reference {len(ref_y):,} rows; holdout accuracy {baseline:.3f}")  # fmt: skip
    header = (
        f"{'x1 spread':>9}  {'acc real':>8} {'ours':>6} {'NannyML':>7}   {'AUC real':>8} {'ours':>6} {'NannyML':>7}"
        "   ours 95% (acc)  ours 95% (AUC)"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for i, spread in enumerate(SPREADS):
        (_, truth), estimate = chunks[i], ours[i]
        real_acc = float(np.mean(TASK.predicted(scores[i]) == truth))
        real_auc = float(roc_auc_score(truth, scores[i]))
        if estimate.accuracy_interval is None or estimate.roc_auc_interval is None:
            raise SystemExit(f"no estimate for spread {spread}: {estimate.summary()}")
        rows.append(
            (real_acc, estimate.accuracy, theirs["accuracy"][i], real_auc, estimate.roc_auc, theirs["roc_auc"][i])
        )
        (low, high), (auc_low, auc_high) = estimate.accuracy_interval, estimate.roc_auc_interval
        print(f"{spread:>9}  {real_acc:>8.3f} {estimate.accuracy:>6.3f} {theirs['accuracy'][i]:>7.3f}   "
              f"{real_auc:>8.3f} {estimate.roc_auc:>6.3f} {theirs['roc_auc'][i]:>7.3f}   "
              f"{low:.3f}–{high:.3f}     {auc_low:.3f}–{auc_high:.3f}")  # fmt: skip
    table = np.asarray(rows)
    for name, (real, us, them) in {"accuracy": (0, 1, 2), "ROC AUC": (3, 4, 5)}.items():
        print(f"{name}: mean |ours − realized| {np.abs(table[:, us] - table[:, real]).mean():.4f}, "
              f"|NannyML − realized| {np.abs(table[:, them] - table[:, real]).mean():.4f}, "
              f"|ours − NannyML| {np.abs(table[:, us] - table[:, them]).mean():.4f}")  # fmt: skip
    ratio = theirs["seconds"] / ours_seconds
    print(f"time (fit + estimate, {len(SPREADS)} chunks): ours {ours_seconds:.3f} s, NannyML {theirs['seconds']:.3f} s "
          f"({ratio:.1f}× ours)")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other processes share the cores)")


if __name__ == "__main__":
    main()
