"""One server serving three models against three servers serving one each: the same traffic, the same core.

Run: `.venv/bin/python bench/bench_many_models.py [--quick] [--home DIR]` from the repository root (default: 10 s
per run, 3 rounds, about 6 minutes with training; --quick: 5 s, 1 round). Needs `wrk` and `taskset`.

What it does, in one run so the ratios share the machine's mood:
  1. trains champions `churn` (binary, logistic_regression), `wine` (multiclass, random_forest) and `diabetes`
     (regression, gradient_boosting) into one DRIFTLOOP_HOME, as bench_serving.py does (or reuses --home);
  2. starts, pinned to core 0 (`taskset -c 0`):
       one server     `driftloop serve --model-name churn --model-name wine --model-name diabetes`
       three servers  `driftloop serve --model-name M`, once per model (three processes sharing core 0)
     both with validation, metrics and the prediction log on (one SQLite log in the home, as `driftloop up` runs);
  3. drives each setup with three `wrk -t1` at once, one per model (/models/M/predict on the one server, /predict
     on each of the three), pinned to core 1, at 5 connections per model (15 in all) and at 1 (3 in all), rounds
     interleaved (one, three, one, three, ...), and keeps each setup's median round by total throughput;
  4. prints per model and in total: requests/s, p50 and p99, the ratio one/three, and the resident memory of each
     setup (informational: nothing is asserted).
Every process it starts is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bench_serving import (
    LOAD_CORE,
    TASK_SERVERS,
    Prepared,
    Server,
    Target,
    WrkRun,
    prepare,
    run_wrk,
    running,
    settle,
)

from driftloop.settings import TELEMETRY_OFF

from common import VENV_BIN, free_port, has_champion, train_versions

MODELS = ("churn", "wine", "diabetes")
PER_MODEL_CONNECTIONS = (5, 1)
ONE, THREE = "one server", "three servers"


@dataclass
class Setup:
    name: str
    servers: list[Server]
    targets: dict[str, Target]  # model -> its target
    rounds: dict[int, list[dict[str, WrkRun]]] = field(default_factory=dict)  # connections -> per round


def _bodies(prep: Prepared) -> dict[str, bytes]:
    import json

    def dump(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    by_model = {task.model.name: dump({"features": task.features}) for task in prep.tasks.values()}
    return {"churn": dump({"features": prep.row}), **by_model}


def make_setups(prep: Prepared, work: Path) -> list[Setup]:
    base = {**os.environ, **TELEMETRY_OFF, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "DRIFTLOOP_PREDICTION_LOG", "DRIFTLOOP_MODEL_NAME"):
        base.pop(key, None)
    env = {**base, "DRIFTLOOP_HOME": str(prep.home)}
    driftloop = str(VENV_BIN / "driftloop")
    bodies = _bodies(prep)

    port = free_port()
    names = [arg for model in MODELS for arg in ("--model-name", model)]
    one = Server(ONE, [driftloop, "serve", "--port", str(port), *names], env, "/ready", port, work / "one.log")
    one_targets = {m: Target(one, f"/models/{m}/predict", bodies[m]) for m in MODELS}

    three: list[Server] = []
    three_targets = {}
    for model in MODELS:
        port = free_port()
        server = Server(
            f"{THREE}: {model}", [driftloop, "serve", "--port", str(port), "--model-name", model], env, "/ready", port,
            work / f"three-{model}.log",
        )  # fmt: skip
        three.append(server)
        three_targets[model] = Target(server, "/predict", bodies[model])
    return [Setup(ONE, [one], one_targets), Setup(THREE, three, three_targets)]


def check_bodies(setup: Setup) -> None:
    with httpx.Client(timeout=30.0) as client:
        for model, target in setup.targets.items():
            answer = client.post(
                target.server.url + target.path, content=target.body, headers={"content-type": "application/json"}
            )
            if answer.status_code != 200:
                raise RuntimeError(f"{setup.name}: {model} answered {answer.status_code}: {answer.text[:300]}")


def drive(setup: Setup, connections: int, seconds: int, servers: list[Server]) -> dict[str, WrkRun]:
    """Three wrk at once, one per model, each with ``connections``; each model's run."""
    with ThreadPoolExecutor(len(MODELS)) as pool:
        futures = {m: pool.submit(run_wrk, t, connections, seconds, servers) for m, t in setup.targets.items()}
        return {model: future.result() for model, future in futures.items()}


def _total(runs: dict[str, WrkRun]) -> float:
    return sum(run.rps for run in runs.values())


def _median_round(rounds: list[dict[str, WrkRun]]) -> dict[str, WrkRun]:
    ordered = sorted(rounds, key=_total)
    return ordered[len(ordered) // 2]


def _memory(setup: Setup) -> float:
    return sum(server.memory().get("rss", 0.0) for server in setup.servers)


def report(setups: list[Setup], memory: dict[str, float], seconds: int, rounds: int) -> None:
    one, three = setups
    print(f"\n=== one server with three models vs three servers (core 0), {rounds} round(s) x {seconds} s, median ===")
    for conns in PER_MODEL_CONNECTIONS:
        first, other = _median_round(one.rounds[conns]), _median_round(three.rounds[conns])
        print(f"\n{conns} connection(s) per model ({conns * len(MODELS)} in all)")
        print(f"{'model':<10} {'one: req/s':>11} {'p50 ms':>7} {'p99 ms':>7} | {'three: req/s':>12} {'p50 ms':>7} "
              f"{'p99 ms':>7} | {'one/three':>9}")  # fmt: skip
        for model in MODELS:
            a, b = first[model], other[model]
            print(f"{model:<10} {a.rps:>11,.0f} {a.p50_ms:>7.2f} {a.p99_ms:>7.2f} | {b.rps:>12,.0f} {b.p50_ms:>7.2f} "
                  f"{b.p99_ms:>7.2f} | {a.rps / b.rps:>8.2f}x")  # fmt: skip
        total_one, total_three = _total(first), _total(other)
        errors = sum(r.non2xx + r.socket_errors for r in (*first.values(), *other.values()))
        flag = f"   !!! {errors} non-2xx/socket errors" if errors else ""
        print(f"{'total':<10} {total_one:>11,.0f} {'':>7} {'':>7} | {total_three:>12,.0f} {'':>7} {'':>7} | "
              f"{total_one / total_three:>8.2f}x{flag}")  # fmt: skip
    print(f"\nresident memory after warm-up: one server {memory[ONE]:.0f} MiB, three servers {memory[THREE]:.0f} MiB "
          f"(one/three {memory[ONE] / memory[THREE]:.2f}x)")  # fmt: skip
    print("Baseline: three servers, one per model (what one model per server costs). Informational; nothing asserted.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s per run, 1 round")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run [10; quick 5]")
    parser.add_argument("--rounds", type=int, help="interleaved rounds [3; quick 1]")
    parser.add_argument("--home", type=Path, help="reuse this DRIFTLOOP_HOME (from bench_serving.py --home)")
    args = parser.parse_args()
    seconds = args.seconds or (5 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 3)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install -y {tool})")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPU cores: the servers are pinned to core 0 and wrk to core 1")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-many-"))
    try:
        for model in TASK_SERVERS.values():
            model.write_data(work)
        home = (args.home or work / "home").resolve()
        home.mkdir(parents=True, exist_ok=True)
        churn = [] if has_champion(home, "churn") else ["logistic_regression"]
        missing = [m.train_args(work) for m in TASK_SERVERS.values() if not has_champion(home, m.name)]
        if churn or missing:
            print(f"training the champions {home} lacks ...", flush=True)
            train_versions(home, churn, missing)
        prep = prepare(home, work, None)
        os.sched_setaffinity(0, {int(LOAD_CORE)})
        setups = make_setups(prep, work)
        every = {server.name: server for setup in setups for server in setup.servers}
        with running(every, timeout=120):
            servers = list(every.values())
            for setup in setups:
                check_bodies(setup)
                drive(setup, 5, 2, servers)  # warm-up
            memory = {setup.name: _memory(setup) for setup in setups}
            for round_no in range(1, rounds + 1):
                for conns in PER_MODEL_CONNECTIONS:
                    for setup in setups:
                        settle(servers)
                        runs = drive(setup, conns, seconds, servers)
                        setup.rounds.setdefault(conns, []).append(runs)
                        shown = "  ".join(f"{m} {r.rps:,.0f}" for m, r in runs.items())
                        print(f"  round {round_no}  {setup.name:<13} c={conns}/model  {_total(runs):>8,.0f} req/s "
                              f"({shown})", flush=True)  # fmt: skip
        report(setups, memory, seconds, rounds)
        spread = [statistics.pstdev(_total(r) for r in s.rounds[5]) for s in setups if len(s.rounds[5]) > 1]
        if spread:
            print(f"(spread of the rounds' totals at 5/model: {', '.join(f'{v:,.0f}' for v in spread)} req/s)")
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
