"""Orchestration overhead: the training flow under Prefect vs the same steps called as plain functions.

Both variants run the same library code on the bundled churn data against the same MLflow SQLite store; the
Prefect variant runs `train_model` against a real `prefect server start` (task runs, states, artifacts, the split
cache), the plain variant calls each task's undecorated function (`.fn`) in the same order, without artifacts.
Rounds are interleaved so machine noise hits both alike. Run: `.venv/bin/python bench/bench_train.py [rounds]`.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path


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
    export = export_candidate.fn(candidate, split, snapshot.schema, uri, run.run_id, 1e-5)
    save_reference.fn(split, snapshot.schema, uri, run.run_id, s.seed)
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


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
