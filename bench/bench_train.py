"""Training benchmarks, two of them.

Orchestration overhead (default): the training flow under Prefect vs the same steps called as plain functions.
Both variants run the same library code on the bundled churn data against the same MLflow SQLite store; the
Prefect variant runs `train_model` against a real `prefect server start` (task runs, states, artifacts, the split
cache), the plain variant calls each task's undecorated function (`.fn`) in the same order, without artifacts.
Rounds are interleaved so machine noise hits both alike. Run: `.venv/bin/python bench/bench_train.py [rounds]`.

Scale (`--scale 100000 1000000 5000000`): a generated snapshot of ROWS × 20 columns (15 numeric, 5 categorical, a
binary target) written as CSV, trained two ways, each in its own subprocess so each peak RSS is its own:
  plain      pandas.read_csv, train_test_split (the same holdout share), the same pipeline (core.pipeline,
             HistGradientBoosting) fitted on the training rows, skl2onnx export: the limit
  driftloop  the training flow's steps as plain calls (no Prefect server: its cost is the other benchmark's):
             load + validate + hash, split, fit (on the training rows), evaluate + permutation importance, ONNX
             export + parity, reference profile, register; each stage timed. As in the flow, storing the
             snapshot runs on a thread beside the fit and the reference profile beside export; the total is the
             wall time, so the overlapped stages' seconds add up to more than it
Each process trains twice and the second run is the one timed: the first, on the snapshot's first 5,000 rows,
pays the imports and one-time caches, and its wall time is printed apart (`_scale_worker`).
Printed: seconds per stage; the work around the fit, (driftloop − its fit) − (plain − its fit), as a share of the
plain run; peak RSS against the in-memory frame (pandas memory_usage(deep=True) of the snapshot as read).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(rounds: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="driftloop-bench-"))
    port = _free_port()
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(home),
            "DRIFTLOOP_PREFECT_PORT": str(port),
            "DRIFTLOOP_START_MLFLOW_UI": "false",
        }
    )
    from driftloop.io import services
    from driftloop.settings import get_settings

    settings = get_settings()
    specs = services.local_specs(settings)
    t0 = time.perf_counter()
    services.start_all(specs, timeout=180)
    print(f"prefect server ready in {time.perf_counter() - t0:.1f}s (home {home})")
    os.environ.update(settings.process_env())
    try:
        _run(rounds)
    finally:
        for spec in specs:
            services.stop(spec)


def _plain_training(model_name: str) -> None:
    """The flow's steps without Prefect: the same library calls, in the same order."""
    from driftloop.core.gates import GatePolicy, decide_promotion
    from driftloop.settings import get_settings
    from tasks.data import load_snapshot, split_snapshot, store_training_snapshot
    from tasks.model import (
        compare_with_champion,
        evaluate_candidate,
        export_candidate,
        fit_candidate,
        save_reference,
        score_champion,
    )
    from tasks.registry import promote_model, register_model
    from tasks.tracking import close_run, open_run

    s = get_settings()
    uri = s.tracking_uri
    policy = GatePolicy()
    snapshot = load_snapshot.fn(s.data_path, s.schema_path)
    split = split_snapshot.fn(snapshot, fraction=s.holdout_fraction, seed=s.seed)
    champion = score_champion.fn(model_name, uri, split, snapshot.schema)
    run = open_run.fn(uri, s.experiment_name, s.mlflow_artifacts, "bench-plain", {})
    store_training_snapshot.fn(uri, s.mlflow_artifacts, run.run_id, snapshot, str(s.data_path))
    candidate = fit_candidate.fn(split, snapshot.schema, "hist_gradient_boosting", None, s.seed)
    evaluation = evaluate_candidate.fn(candidate, split, snapshot.schema, uri, run.run_id, s.seed)
    export = export_candidate.fn(candidate, split, snapshot.schema, uri, run.run_id, 1e-5, evaluation)
    save_reference.fn(split, snapshot.schema, uri, run.run_id, s.seed, evaluation)
    segments = compare_with_champion.fn(
        evaluation, champion, split, snapshot.schema, snapshot.base_rows, policy, s.seed
    )
    decision = decide_promotion(
        evaluation.metrics.as_dict(),
        champion.metrics.as_dict() if champion.metrics else None,
        champion.version,
        export.parity.passed,
        export.parity.summary(),
        policy,
        segments=segments,
        pinned_by=champion.pinned_by,
    )
    tags = {
        "driftloop.parity": "passed" if export.parity.passed else "failed",
        "driftloop.schema": snapshot.schema.name,
        "driftloop.schema_fingerprint": snapshot.schema.fingerprint(),
        **decision.tags(),
    }
    version = register_model.fn(model_name, uri, export.onnx_model_uri, run.run_id, tags, "bench")
    if decision.promote:
        promote_model.fn(model_name, uri, version, "bench", "bench", expected_champion=champion.version, automatic=True)
    close_run.fn(uri, run.run_id, True)


def _run(rounds: int) -> None:
    from prefect.logging import disable_run_logger

    from flows.train import train_model

    timings: dict[str, list[float]] = {"prefect flow": [], "plain calls": []}
    # One warm-up of each: imports, first-time MLflow schema creation, first flow registration.
    train_model(model_name="bench-flow")
    _plain_training("bench-plain")
    for _ in range(rounds):
        t0 = time.perf_counter()
        train_model(model_name="bench-flow")
        timings["prefect flow"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with disable_run_logger():
            _plain_training("bench-plain")
        timings["plain calls"].append(time.perf_counter() - t0)

    flow_s = statistics.median(timings["prefect flow"])
    plain_s = statistics.median(timings["plain calls"])
    print(f"\ntraining on the bundled churn data, {rounds} interleaved rounds, median wall time")
    print(f"{'variant':<14} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in timings.items():
        print(f"{name:<14} {statistics.median(values):>9.2f} {min(values):>7.2f} {max(values):>7.2f}")
    print(
        f"orchestration overhead: {flow_s - plain_s:+.2f} s per run "
        f"({flow_s / plain_s:.2f}x the plain calls; baseline = plain calls)"
    )


SCALE_NUMERIC, SCALE_CATEGORICAL = 15, 5
SCALE_LEVELS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")


def _scale_snapshot(rows: int, directory: Path) -> tuple[Path, Path]:
    """ROWS rows of a known world as CSV, and its schema; written in 500k-row pieces to stay small."""
    import numpy as np
    import yaml

    data, schema_file = directory / "snapshot.csv", directory / "snapshot.schema.yaml"
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 1, SCALE_NUMERIC)
    written = 0
    while written < rows:
        n = min(500_000, rows - written)
        numeric = rng.normal(0, 1, (n, SCALE_NUMERIC))
        levels = rng.integers(0, len(SCALE_LEVELS), (n, SCALE_CATEGORICAL))
        logit = numeric @ weights * 0.5 + (levels[:, 0] == 1) - (levels[:, 1] == 2)
        target = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
        import pandas as pd

        frame = pd.DataFrame(numeric.round(5), columns=[f"num_{i:02d}" for i in range(SCALE_NUMERIC)])
        for j in range(SCALE_CATEGORICAL):
            frame[f"cat_{j}"] = np.asarray(SCALE_LEVELS, dtype=object)[levels[:, j]]
        frame["label"] = target
        frame.to_csv(data, mode="a" if written else "w", header=not written, index=False)
        written += n
    schema = {
        "name": "scale",
        "target": {"name": "label", "classes": ["no", "yes"], "positive": "yes"},
        "features": [{"name": f"num_{i:02d}", "kind": "numeric"} for i in range(SCALE_NUMERIC)]
        + [
            {"name": f"cat_{j}", "kind": "categorical", "categories": list(SCALE_LEVELS)}
            for j in range(SCALE_CATEGORICAL)
        ],
    }
    schema_file.write_text(yaml.safe_dump(schema, sort_keys=False))
    return data, schema_file


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scale_plain(data: Path, schema_file: Path, model_name: str) -> dict[str, float]:
    del model_name  # nothing is registered
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from driftloop.core.features import encode_target, to_model_frame
    from driftloop.core.pipeline import build_pipeline
    from driftloop.io.datasets import load_schema
    from driftloop.io.onnx_export import export_onnx
    from driftloop.settings import get_settings

    stages: dict[str, float] = {}
    t = time.perf_counter()
    schema = load_schema(schema_file)
    raw = pd.read_csv(data)
    stages["read"] = time.perf_counter() - t
    frame_mb = raw.memory_usage(deep=True).sum() / 1e6
    t = time.perf_counter()
    train, _ = train_test_split(raw, test_size=get_settings().holdout_fraction, random_state=42)
    stages["split"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline = build_pipeline(schema, "hist_gradient_boosting", seed=42)
    pipeline.fit(to_model_frame(train, schema), encode_target(train[schema.target.name], schema))
    stages["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    export_onnx(pipeline, schema)
    stages["export"] = time.perf_counter() - t
    return {**stages, "frame_mb": frame_mb, "peak_mb": _peak_mb()}


def _scale_driftloop(data: Path, schema_file: Path, model_name: str) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    from driftloop.settings import get_settings
    from tasks.data import load_snapshot, split_snapshot, store_training_snapshot
    from tasks.model import evaluate_candidate, export_candidate, fit_candidate, save_reference, score_champion
    from tasks.registry import register_model
    from tasks.tracking import close_run, open_run

    s = get_settings()
    uri = s.tracking_uri
    stages: dict[str, float] = {}

    def timed(name: str, call: Any, *args: Any) -> Any:
        t = time.perf_counter()
        result = call(*args)
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
        return result

    started = time.perf_counter()
    snapshot = timed("load + validate + hash", load_snapshot.fn, data, schema_file)
    split = timed("split", split_snapshot.fn, snapshot, s.holdout_fraction, s.seed)
    champion = timed("other", score_champion.fn, model_name, uri, split, snapshot.schema)
    run = timed("other", open_run.fn, uri, s.experiment_name, s.mlflow_artifacts, "bench-scale", {})
    with ThreadPoolExecutor(max_workers=1) as beside:  # the flow's submitted tasks (flows/train.py)
        store = beside.submit(timed, "store snapshot (beside the fit)", store_training_snapshot.fn, uri,
                              s.mlflow_artifacts, run.run_id, snapshot, str(data))  # fmt: skip
        candidate = timed("fit", fit_candidate.fn, split, snapshot.schema, "hist_gradient_boosting", None, s.seed)
        store.result()
        evaluation = timed("evaluate + importance", evaluate_candidate.fn, candidate, split, snapshot.schema, uri,
                           run.run_id, s.seed)  # fmt: skip
        reference = beside.submit(timed, "reference profile (beside export)", save_reference.fn, split,
                                  snapshot.schema, uri, run.run_id, s.seed, evaluation)  # fmt: skip
        export = timed("export + parity", export_candidate.fn, candidate, split, snapshot.schema, uri, run.run_id,
                       1e-5, evaluation)  # fmt: skip
        reference.result()
    timed("other", register_model.fn, model_name, uri, export.onnx_model_uri, run.run_id, {}, "bench")
    timed("other", close_run.fn, uri, run.run_id, True)
    del champion
    return {**stages, "wall_s": time.perf_counter() - started, "peak_mb": _peak_mb()}


WARM_UP_ROWS = 5_000
NOT_STAGES = {"peak_mb", "first_run_s", "frame_mb", "wall_s"}


def _scale_worker(kind: str, data: Path, schema_file: Path) -> None:
    """One variant in a process of its own, timed on its second run.

    The first run trains on the snapshot's first ``WARM_UP_ROWS`` rows: it pays the imports and the process's
    one-time caches (MLflow's scan of the installed packages, skops' trusted types), which a long-lived worker
    pays once and a flow run in a fresh container pays every time. Its wall time is printed apart.
    """
    import json

    run = _scale_plain if kind == "plain" else _scale_driftloop
    warm_up = data.with_name(f"warm-up-{kind}.csv")
    with data.open() as source:
        warm_up.write_text("".join(line for _, line in zip(range(WARM_UP_ROWS + 1), source, strict=False)))
    t = time.perf_counter()
    run(warm_up, schema_file, "scale-warm-up")
    first_run_s = time.perf_counter() - t
    result = run(data, schema_file, "scale")
    print("RESULT " + json.dumps({**result, "first_run_s": first_run_s}))


def _scale(sizes: list[int]) -> None:
    import json
    import subprocess

    print(f"{'rows':>10} {'CSV MB':>7} {'frame MB':>9} {'plain s':>8} {'ours s':>8} {'around fit':>11} "
          f"{'plain peak':>11} {'ours peak':>10} {'ours / frame':>13} {'first run: plain, ours':>23}")  # fmt: skip
    details = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-train-scale-") as tmp:
            directory = Path(tmp)
            data, schema_file = _scale_snapshot(rows, directory)
            results = {}
            for kind in ("plain", "driftloop"):
                env = {**os.environ, "DRIFTLOOP_HOME": str(directory / f"home-{kind}")}
                done = subprocess.run(
                    [sys.executable, __file__, "--scale-worker", kind, str(data), str(schema_file)],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode != 0 or not lines:
                    raise SystemExit(f"{kind} at {rows:,} rows failed:\n{done.stderr[-3000:]}")
                results[kind] = json.loads(lines[-1].removeprefix("RESULT "))
            plain, ours = results["plain"], results["driftloop"]
            plain_s = sum(v for k, v in plain.items() if k not in NOT_STAGES)
            ours_s = ours["wall_s"]  # its stages overlap where the flow runs two at once
            around = (ours_s - ours["fit"] - plain_s + plain["fit"]) / plain_s
            print(
                f"{rows:>10,} {data.stat().st_size / 1e6:>7.0f} {plain['frame_mb']:>9.0f} {plain_s:>8.1f} "
                f"{ours_s:>8.1f} {around:>+10.0%} {plain['peak_mb']:>9,.0f} MB {ours['peak_mb']:>7,.0f} MB "
                f"{ours['peak_mb'] / plain['frame_mb']:>12.1f}× "
                f"{plain['first_run_s']:>12.1f} s {ours['first_run_s']:>6.1f} s",
                flush=True,
            )
            details.append((rows, plain, ours))
    print("\nper stage, seconds (driftloop | plain)")
    for rows, plain, ours in details:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in ours.items() if k not in NOT_STAGES)
        plain_stages = ", ".join(f"{k} {v:.1f}" for k, v in plain.items() if k not in NOT_STAGES)
        print(f"{rows:>10,}: {stages} | {plain_stages}")
    print(
        f"first run: each variant's first training in its fresh process, on {WARM_UP_ROWS:,} rows (imports, caches); "
        "the figures above are its second run, as in a long-lived worker"
    )
    print("targets: work around the fit ≤ +30% of the plain run; peak ≤ 3× the in-memory frame")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--scale-worker":
        _scale_worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--scale":
        _scale([int(n) for n in sys.argv[2:]] or [100_000, 1_000_000, 5_000_000])
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
