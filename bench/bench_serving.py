"""The model server against its baselines: the tutorial's service, the framework's ceiling, `mlflow models serve`.

Run: `.venv/bin/python bench/bench_serving.py [--quick] [--estimator random_forest]` from the repository root
(default: 10 s per run, 3 rounds, about 11 minutes; --quick: 5 s, 1 round, about 4 minutes). Needs `wrk` and
`taskset`.

What it does, in one run so the ratios share the machine's mood:
  1. trains a champion `churn` v1 into a temporary DRIFTLOOP_HOME (`driftloop train`; or reuses --home) and
     dumps the same run's scikit-learn Pipeline to a joblib file for the tutorial's service; into the same home,
     also a multiclass champion `wine` (random_forest) and a regression champion `diabetes`
     (gradient_boosting), from scikit-learn's bundled datasets written to CSV with `driftloop schema infer`'d
     schemas (`driftloop train --data --schema --model-name`; with --home, only those of the two it lacks);
  2. starts, one at a time and each pinned to core 0 (`taskset -c 0`), on free ports:
       driftloop             `driftloop serve` (registry mode, validation + metrics + prediction log on)
       driftloop log-off     the same with DRIFTLOOP_PREDICTION_LOG=false
       driftloop multiclass  the same for the `wine` model (DRIFTLOOP_MODEL_NAME=wine; /predict only)
       driftloop regression  the same for the `diabetes` model (DRIFTLOOP_MODEL_NAME=diabetes; /predict only)
       driftloop cache       the same with the Redis prediction cache on (only if redis-server is installed;
                             Redis runs on the load generator's core)
       tutorial              bench/baselines/tutorial_app.py (FastAPI + joblib, predict + predict_proba per request)
       ceiling               bench/baselines/constant_app.py (a FastAPI route returning a constant)
       mlflow serve          `mlflow models serve -m models:/churn@champion --env-manager local --workers 1`
     The two baselines run under the uvicorn options `driftloop serve` uses (uvicorn's "auto" picks uvloop and
     httptools, both installed): one worker, uvloop, httptools, no access log. `mlflow models serve` runs as
     shipped (its uvicorn keeps the access log on).
  3. checks every request body answers 200, warms every target up, reads each server's memory;
  4. drives every target with `wrk -t1` pinned to core 1, at 16 and at 1 connection, rounds interleaved
     (A B C ... A B C ...), and keeps the median round;
  5. times 1,000-row batches with httpx, and prints one table, the extra figures and the targets (PASS/MISS,
     informational: nothing is asserted).
Every process it starts is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from driftloop.settings import TELEMETRY_OFF

from common import MULTICLASS, REGRESSION, ROOT, VENV_BIN, TaskModel, free_port, has_champion, train_versions

LUA = ROOT / "bench" / "wrk" / "post.lua"
SERVER_CORE = "0"
LOAD_CORE = "1"
UVICORN_OPTIONS = ("--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log")
CONNECTIONS = (16, 1)
BATCH_ROWS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")

OURS, OURS_NOLOG, TUTORIAL, CEILING, MLFLOW = "driftloop", "driftloop log-off", "tutorial", "ceiling", "mlflow serve"
OURS_CACHE = "driftloop cache"
OURS_MULTICLASS, OURS_REGRESSION = "driftloop multiclass", "driftloop regression"
TASK_SERVERS = {OURS_MULTICLASS: MULTICLASS, OURS_REGRESSION: REGRESSION}  # server -> the model it serves


# ---------------------------------------------------------------------------------------------------- processes


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 on: state, ppid, pgrp, session, ...


def session_pids(sid: int) -> list[int]:
    """Every live process in session ``sid`` (a server and whatever it forked)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(_stat_fields(int(entry.name))[3]) == sid:
                pids.append(int(entry.name))
    return sorted(pids)


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "Threads"):
                values[key] = int(rest.split()[0])
    return values


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    ready_seconds: float | None = None
    error: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float) -> None:
        """Start pinned to the server core, in its own session; wait until ready_path answers 200."""
        log = self.log_path.open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *self.argv],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = started + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    self.error = f"exited with code {self.proc.returncode} while starting:\n{self.log_tail()}"
                    return
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + self.ready_path).status_code == 200:
                        self.ready_seconds = time.perf_counter() - started
                        return
                time.sleep(0.02)
        self.error = f"not ready on {self.ready_path} within {timeout:.0f}s:\n{self.log_tail()}"

    @property
    def up(self) -> bool:
        return self.proc is not None and self.error is None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return session_pids(self.proc.pid) if self.proc is not None else []

    def memory(self) -> dict[str, float]:
        """MiB: the largest process (the one serving) and the whole session (mlflow serve has a CLI parent)."""
        per_pid = [memory_kib(pid) for pid in self.pids()]
        if not per_pid:
            return {}
        main = max(per_pid, key=lambda m: m.get("VmRSS", 0))
        return {
            "rss": main.get("VmRSS", 0) / 1024,
            "anon": main.get("RssAnon", 0) / 1024,
            "rss_tree": sum(m.get("VmRSS", 0) for m in per_pid) / 1024,
            "processes": len(per_pid),
            "threads": main.get("Threads", 0),
        }

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 8.0) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            for pid in self.pids():  # a child that left the process group but not the session
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and (self.proc.poll() is None or session_pids(self.proc.pid)):
                time.sleep(0.05)
            if self.proc.poll() is not None and not session_pids(self.proc.pid):
                return


# ---------------------------------------------------------------------------------------------------- load


@dataclass
class Target:
    server: Server
    path: str
    body: bytes
    connections: tuple[int, ...] = CONNECTIONS
    results: dict[int, list[WrkRun]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.server.name} {self.path}"


@dataclass(frozen=True)
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    other_cpu: float  # share of the server core busy with anything but the servers during the run


def _core_busy_ticks(core: str) -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            return user + nice + system + irq + softirq + steal
    return 0


def _session_ticks(sessions: set[int]) -> int:
    total = 0
    for pid in (pid for sid in sessions for pid in session_pids(sid)):
        with contextlib.suppress(OSError, IndexError):
            total += sum(int(v) for v in _stat_fields(pid)[11:13])  # utime, stime
    return total


def settle(servers: list[Server], limit: float = 15.0) -> float:
    """Wait until every server is idle (a background flush after one run must not slow the next); seconds waited."""
    started = time.perf_counter()
    sessions = {s.proc.pid for s in servers if s.proc is not None}

    while time.perf_counter() - started < limit:
        before = _session_ticks(sessions)
        time.sleep(0.25)
        if _session_ticks(sessions) - before <= 0.02 * CLK_TCK:  # under 8% of a core over the window
            break
    return time.perf_counter() - started


def run_wrk(target: Target, connections: int, seconds: int, servers: list[Server]) -> WrkRun:
    """One wrk run pinned to the load core; also measures the server core's busy time the servers did not use."""
    env = {**os.environ, "WRK_BODY": target.body.decode()}
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["-s", str(LUA), target.server.url + target.path]
    sessions = {s.proc.pid for s in servers if s.proc is not None}
    core0, servers0, started = _core_busy_ticks(SERVER_CORE), _session_ticks(sessions), time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    wall = time.perf_counter() - started
    # Busy time on the server core that the servers did not use: other processes, or the hypervisor (steal).
    other = ((_core_busy_ticks(SERVER_CORE) - core0) - (_session_ticks(sessions) - servers0)) / CLK_TCK
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed on {target.label} (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return WrkRun(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non2xx=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        other_cpu=max(other, 0.0) / wall,
    )


# ---------------------------------------------------------------------------------------------------- model + data


@dataclass(frozen=True)
class Prepared:
    home: Path
    joblib_path: Path
    estimator: str
    version: str
    columns: list[str]
    row: list[Any]  # one real holdout row, schema order, JSON types as read (ints stay ints)
    float_row: list[Any]  # the same row with every number as a float (MLflow's schema enforcement)
    batch: list[list[Any]]  # BATCH_ROWS holdout rows, missing values as null
    float_batch: list[list[Any]]
    train_seconds: float | None
    tasks: dict[str, TaskRequest]  # server name -> its model's request (the multiclass and regression servers)


@dataclass(frozen=True)
class TaskRequest:
    model: TaskModel
    version: str
    estimator: str
    features: dict[str, Any]  # one real holdout row of the model's dataset, by feature name


def prepare_task(home: Path, work: Path, model: TaskModel) -> TaskRequest:
    """The champion of ``model`` (trained from work/NAME.csv, see TaskModel.write_data) and one holdout row."""
    from mlflow import MlflowClient

    from driftloop.core.lineage import ESTIMATOR
    from driftloop.core.snapshot import split_holdout
    from driftloop.io.datasets import load_schema, read_snapshot
    from driftloop.settings import Settings

    settings = Settings(home=home)  # prepare() already pointed MLflow at this home
    version = MlflowClient().get_model_version_by_alias(model.name, "champion")
    schema = load_schema(work / f"{model.name}.yaml")
    frame = read_snapshot(work / f"{model.name}.csv")
    holdout = split_holdout(frame, schema, settings.holdout_fraction, settings.seed).holdout
    features = schema.features
    for record in holdout[[f.name for f in features]].astype(object).to_numpy().tolist():
        row = {f.name: _json_value(v, f.is_categorical, False) for v, f in zip(record, features, strict=True)}
        if None not in row.values():
            break
    return TaskRequest(model, str(version.version), version.tags.get(ESTIMATOR, "?"), row)


def _json_value(value: Any, categorical: bool, as_float: bool) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if categorical:
        return str(value)
    if as_float:
        return float(value)
    return value.item() if hasattr(value, "item") else value


def prepare(home: Path, work: Path, train_seconds: float | None) -> Prepared:
    """Dump the champion's scikit-learn Pipeline to joblib and pick request rows from the holdout."""
    import joblib
    import mlflow
    from mlflow import MlflowClient

    from driftloop.core.lineage import ESTIMATOR, SKLEARN_MODEL_URI
    from driftloop.core.snapshot import split_holdout
    from driftloop.io.datasets import load_schema, read_snapshot
    from driftloop.settings import Settings

    settings = Settings(home=home)
    mlflow.set_tracking_uri(settings.tracking_uri)
    version = MlflowClient().get_model_version_by_alias(settings.model_name, "champion")
    pipeline = mlflow.sklearn.load_model(version.tags[SKLEARN_MODEL_URI])
    joblib_path = work / "pipeline.joblib"
    joblib.dump(pipeline, joblib_path)

    schema = load_schema(settings.schema_path)
    frame = read_snapshot(settings.data_path)
    holdout = split_holdout(frame, schema, settings.holdout_fraction, settings.seed).holdout
    features = schema.features
    columns = [f.name for f in features]
    if list(pipeline.feature_names_in_) != columns:
        raise RuntimeError(f"the Pipeline's columns {list(pipeline.feature_names_in_)} are not the schema's {columns}")
    records = holdout[columns].astype(object).to_numpy().tolist()

    def encode(record: list[Any], as_float: bool) -> list[Any]:
        return [_json_value(v, f.is_categorical, as_float) for v, f in zip(record, features, strict=True)]

    complete = next(r for r in records if None not in encode(r, False))
    batch = (records * (BATCH_ROWS // len(records) + 1))[:BATCH_ROWS]
    return Prepared(
        home=home,
        joblib_path=joblib_path,
        estimator=version.tags.get(ESTIMATOR, "?"),
        version=str(version.version),
        columns=columns,
        row=encode(complete, False),
        float_row=encode(complete, True),
        batch=[encode(r, False) for r in batch],
        float_batch=[encode(r, True) for r in batch],
        train_seconds=train_seconds,
        tasks={name: prepare_task(home, work, model) for name, model in TASK_SERVERS.items()},
    )


# ---------------------------------------------------------------------------------------------------- servers


@contextlib.contextmanager
def redis_server(work: Path) -> Iterator[str | None]:
    """A redis-server on a free port, pinned to the load generator's core; None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not installed: no prediction-cache run (apt-get install -y redis-server)")
        yield None
        return
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)]
    process = subprocess.Popen(
        ["taskset", "-c", LOAD_CORE, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                time.sleep(0.1)
                continue
            yield f"redis://127.0.0.1:{port}/0"
            return
        print(f"redis-server did not answer on port {port}: no prediction-cache run")
        yield None
    finally:
        process.terminate()
        process.wait(timeout=10)


def make_servers(prep: Prepared, work: Path, redis_url: str | None) -> dict[str, Server]:
    base = {**os.environ, **TELEMETRY_OFF, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "DRIFTLOOP_PREDICTION_LOG", "DRIFTLOOP_MODEL_NAME"):
        base.pop(key, None)
    ours_env = {**base, "DRIFTLOOP_HOME": str(prep.home)}
    uvicorn = [str(VENV_BIN / "uvicorn")]

    def server(name: str, argv: list[str], env: dict[str, str], ready: str, port: int) -> Server:
        return Server(name, argv, env, ready, port, work / f"{name.replace(' ', '-')}.log")

    ours_port, nolog_port, tutorial_port, ceiling_port, mlflow_port, cache_port = (free_port() for _ in range(6))
    driftloop = str(VENV_BIN / "driftloop")
    tasks = {}
    for name, model in TASK_SERVERS.items():  # the same server as OURS, serving another model's champion
        port = free_port()
        env = {**ours_env, "DRIFTLOOP_MODEL_NAME": model.name}
        tasks[name] = server(name, [driftloop, "serve", "--port", str(port)], env, "/ready", port)
    cached = {}
    if redis_url:
        cached[OURS_CACHE] = server(
            OURS_CACHE,
            [driftloop, "serve", "--port", str(cache_port)],
            {**ours_env, "DRIFTLOOP_REDIS_URL": redis_url},
            "/ready",
            cache_port,
        )
    return {
        OURS: server(OURS, [driftloop, "serve", "--port", str(ours_port)], ours_env, "/ready", ours_port),
        OURS_NOLOG: server(
            OURS_NOLOG,
            [driftloop, "serve", "--port", str(nolog_port)],
            {**ours_env, "DRIFTLOOP_PREDICTION_LOG": "false"},
            "/ready",
            nolog_port,
        ),
        **tasks,
        TUTORIAL: server(
            TUTORIAL,
            [*uvicorn, "bench.baselines.tutorial_app:app", "--port", str(tutorial_port), *UVICORN_OPTIONS],
            {**base, "MODEL_PATH": str(prep.joblib_path)},
            "/health",
            tutorial_port,
        ),
        CEILING: server(
            CEILING,
            [*uvicorn, "bench.baselines.constant_app:app", "--port", str(ceiling_port), *UVICORN_OPTIONS],
            base,
            "/health",
            ceiling_port,
        ),
        MLFLOW: server(
            MLFLOW,
            [
                str(VENV_BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                "models:/churn@champion",
                "--env-manager",
                "local",
                "--workers",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
            ],
            {**base, "MLFLOW_TRACKING_URI": f"sqlite:///{prep.home / 'mlflow.db'}"},
            "/ping",
            mlflow_port,
        ),
        **cached,
    }  # fmt: skip


@contextlib.contextmanager
def running(servers: dict[str, Server], timeout: float) -> Iterator[None]:
    """Start the servers one after another (so times to ready do not contend), stop them all on the way out."""
    try:
        for server in servers.values():
            print(f"  starting {server.name:<20} on :{server.port} ...", end=" ", flush=True)
            server.start(timeout)
            print(f"ready in {server.ready_seconds:.2f}s" if server.up else "FAILED")
        yield
    finally:
        for server in servers.values():
            server.stop()


def make_targets(servers: dict[str, Server], prep: Prepared) -> list[Target]:
    def dump(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    features = dump({"features": prep.row})
    split = dump({"dataframe_split": {"columns": prep.columns, "data": [prep.float_row]}})
    targets = [
        Target(servers[OURS], "/predict", features),
        *(Target(servers[name], "/predict", dump({"features": task.features})) for name, task in prep.tasks.items()),
        Target(servers[TUTORIAL], "/predict", features),
        Target(servers[CEILING], "/predict", features),
        Target(servers[OURS_NOLOG], "/predict", features, connections=(16,)),
        Target(servers[OURS], "/invocations", split),
        Target(servers[MLFLOW], "/invocations", split),
    ]
    if OURS_CACHE in servers:  # the same body every time: every request after the first is a cache hit
        targets.insert(4 + len(prep.tasks), Target(servers[OURS_CACHE], "/predict", features, connections=(16,)))
    return [t for t in targets if t.server.up]


def check_bodies(targets: list[Target]) -> list[Target]:
    """One request per target: a non-200 means the body is wrong, so that target is left out, loudly."""
    good = []
    with httpx.Client(timeout=30.0) as client:
        for target in targets:
            response = client.post(
                target.server.url + target.path, content=target.body, headers={"content-type": "application/json"}
            )
            text = response.text if len(response.text) < 300 else response.text[:300] + "..."
            if response.status_code == 200:
                print(f"  {target.label:<32} 200 {text}")
                good.append(target)
            else:
                print(f"  !!! {target.label}: HTTP {response.status_code} {text}\n  !!! body: {target.body[:300]!r}")
    return good


def batch_latency(servers: dict[str, Server], prep: Prepared, requests: int) -> dict[str, tuple[float, float, str]]:
    """Median and p90 ms of 1,000-row requests (httpx, keep-alive, one at a time), interleaved across servers."""
    instances = {"instances": prep.batch}
    split = {"dataframe_split": {"columns": prep.columns, "data": prep.float_batch}}
    cases = [
        (servers[OURS], "/predict/batch", instances),
        (servers[TUTORIAL], "/predict/batch", instances),
        (servers[OURS], "/invocations", split),
        (servers[MLFLOW], "/invocations", split),
    ]
    cases = [(s, p, json.dumps(b, separators=(",", ":")).encode()) for s, p, b in cases if s.up]
    times: dict[str, list[float]] = {}
    status: dict[str, str] = {}
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=60.0) as client:
        for server, path, body in cases:  # warm-up, and the status each answers
            response = client.post(server.url + path, content=body, headers=headers)
            status[f"{server.name} {path}"] = f"HTTP {response.status_code}" + (
                "" if response.status_code == 200 else f" {response.text[:200]}"
            )
        for _ in range(requests):
            for server, path, body in cases:
                started = time.perf_counter()
                client.post(server.url + path, content=body, headers=headers)
                times.setdefault(f"{server.name} {path}", []).append((time.perf_counter() - started) * 1000)
    return {
        key: (statistics.median(values), statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0],
              status[key])
        for key, values in times.items()
    }  # fmt: skip


def prediction_log_rows(home: Path) -> str:
    path = home / "predictions.db"
    if not path.exists():
        return f"no {path.name} under the home"
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}  # noqa: S608
    return ", ".join(f"{table}: {n:,}" for table, n in counts.items()) or "no tables"


# ---------------------------------------------------------------------------------------------------- report


def _median_run(runs: list[WrkRun]) -> WrkRun:
    return sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]


def _fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}x" if value >= 10 else f"{value:.2f}x"


# (what, measured, reference, goal): the throughput targets, as ratios of req/s.
TARGETS = (
    ("/predict >= 30x the tutorial's req/s", (OURS, "/predict"), (TUTORIAL, "/predict"), 30.0),
    ("/predict >= 80% of the ceiling's req/s", (OURS, "/predict"), (CEILING, "/predict"), 0.8),
    ("multiclass /predict >= 80% of the ceiling", (OURS_MULTICLASS, "/predict"), (CEILING, "/predict"), 0.8),
    ("regression /predict >= 80% of the ceiling", (OURS_REGRESSION, "/predict"), (CEILING, "/predict"), 0.8),
    ("/invocations >= 10x mlflow models serve", (OURS, "/invocations"), (MLFLOW, "/invocations"), 10.0),
)


def report(
    targets: list[Target], servers: dict[str, Server], memory: dict[str, dict[str, float]], extras: dict[str, Any]
) -> None:
    runs_by = {(t.server.name, t.path, c): runs for t in targets for c, runs in t.results.items()}

    def ratio(measured: tuple[str, str], reference: tuple[str, str], conns: int) -> float | None:
        """Median over rounds of the per-round ratio: the two runs of a round met the same machine."""
        ours, base = runs_by.get((*measured, conns)), runs_by.get((*reference, conns))
        if not ours or not base:
            return None
        return statistics.median(a.rps / b.rps for a, b in zip(ours, base, strict=False) if b.rps > 0)

    print(f"\n{'=' * 118}\nmedian of {extras['rounds']} interleaved round(s) x {extras['seconds']} s; server on core "
          f"{SERVER_CORE}, wrk -t1 on core {LOAD_CORE}; model churn v{extras['version']} ({extras['estimator']}), "
          f"{extras['task_models']}; 1-row requests; ratios = median of the per-round ratios")  # fmt: skip
    header = (
        f"{'server':<20} {'endpoint':<13} {'conns':>5} {'req/s':>9} {'range':>15} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'vs tutorial':>11} {'vs ceiling':>10} {'vs mlflow':>9} {'noise':>6}"
    )
    print(header + "\n" + "-" * len(header))
    for conns in CONNECTIONS:
        for target in targets:
            runs = target.results.get(conns)
            if not runs:
                continue
            run = _median_run(runs)
            me = (target.server.name, target.path)
            predict, invocations = target.path == "/predict", target.path == "/invocations"
            churn = target.server.name not in TASK_SERVERS  # the tutorial serves churn only
            spread = f"{min(r.rps for r in runs):,.0f}-{max(r.rps for r in runs):,.0f}"
            print(
                f"{target.server.name:<20} {target.path:<13} {conns:>5} {run.rps:>9,.1f} {spread:>15} "
                f"{run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {sum(r.non2xx + r.socket_errors for r in runs):>7} "
                f"{_fmt_ratio(ratio(me, (TUTORIAL, '/predict'), conns) if predict and churn else None):>11} "
                f"{_fmt_ratio(ratio(me, (CEILING, '/predict'), conns) if predict else None):>10} "
                f"{_fmt_ratio(ratio(me, (MLFLOW, '/invocations'), conns) if invocations else None):>9} "
                f"{max(r.other_cpu for r in runs):>6.2f}"
            )
    print(
        f"noise = the largest share of core {SERVER_CORE} (the servers' core) busy with anything but the servers "
        "(other processes, steal) during any of the row's runs"
    )
    for target in targets:
        bad = [r for runs in target.results.values() for r in runs if r.non2xx or r.socket_errors]
        if bad:
            non2xx, sock = sum(r.non2xx for r in bad), sum(r.socket_errors for r in bad)
            print(f"!!! {target.label}: {non2xx} non-2xx responses, {sock} socket errors: check the body/server log")

    print("\nextra figures")
    for key, (median, p90, status) in extras["batch"].items():
        print(f"  {BATCH_ROWS:,}-row batch  {key:<32} median {median:8.2f} ms  p90 {p90:8.2f} ms  ({status})")
    log_on, log_off = runs_by.get((OURS, "/predict", 16)), runs_by.get((OURS_NOLOG, "/predict", 16))
    if log_on and log_off:
        on, off = _median_run(log_on).rps, _median_run(log_off).rps
        cost = ratio((OURS, "/predict"), (OURS_NOLOG, "/predict"), 16) or 1.0
        print(f"  prediction log   on {on:,.0f} req/s vs off {off:,.0f} req/s at c=16: throughput cost {1 - cost:.1%}")
    print(f"  prediction log   rows written by the log-on servers: {extras['log_rows']}")
    cache_on = runs_by.get((OURS_CACHE, "/predict", 16))
    if cache_on and log_on:
        gain = ratio((OURS_CACHE, "/predict"), (OURS, "/predict"), 16) or 1.0
        print(
            f"  Redis cache      on {_median_run(cache_on).rps:,.0f} req/s (every request a hit) vs off "
            f"{_median_run(log_on).rps:,.0f} req/s at c=16: {gain:.2f}x"
        )
    print("  memory after warm-up (MiB; the serving process, and all of its session's processes):")
    for name, mem in memory.items():
        if mem:
            print(f"    {name:<20} VmRSS {mem['rss']:7.1f}  RssAnon {mem['anon']:7.1f}  "
                  f"session VmRSS {mem['rss_tree']:7.1f} ({mem['processes']:.0f} process(es); "
                  f"{mem['threads']:.0f} threads in the serving one)")  # fmt: skip
    print("  time to ready (spawn → first 200 on its readiness URL, started one at a time):")
    for server in servers.values():
        ready = f"{server.ready_seconds:.2f} s" if server.ready_seconds is not None else "never"
        print(f"    {server.name:<20} {ready}  ({server.ready_path})")
    if extras.get("train_seconds") is not None:
        print(
            f"  training the champions (driftloop train, incl. a local Prefect server): {extras['train_seconds']:.1f} s"
        )
    print(f"  load average before / after: {extras['load_before']} / {extras['load_after']}")

    print("\ntargets (validation, metrics and prediction log on; informational, nothing asserted)")
    for conns in CONNECTIONS:
        for what, measured, reference, goal in TARGETS:
            value = ratio(measured, reference, conns)
            shown = "n/a" if value is None else f"{value:.1%}" if goal < 1 else f"{value:,.1f}x"
            verdict = "n/a " if value is None else "PASS" if value >= goal else "MISS"
            print(f"  {verdict}  {what:<42} c={conns:<3} {shown}")
    p50_runs = runs_by.get((OURS, "/predict", 1))
    p50 = statistics.median(r.p50_ms for r in p50_runs) if p50_runs else None
    verdict = "n/a " if p50 is None else "PASS" if p50 <= 1.0 else "MISS"
    print(f"  {verdict}  {'/predict p50 <= 1 ms':<42} c=1   {'n/a' if p50 is None else f'{p50:.3f} ms'}")
    for server in servers.values():
        if server.error:
            print(f"\n!!! {server.name} did not start: {server.error}")


# ---------------------------------------------------------------------------------------------------- main


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s per run, 1 round, 5 batch requests")
    parser.add_argument("--estimator", default="logistic_regression", help="what `driftloop train` fits")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run [10; quick 5]")
    parser.add_argument("--rounds", type=int, help="interleaved rounds [3; quick 1]")
    parser.add_argument(
        "--home",
        type=Path,
        help="reuse this DRIFTLOOP_HOME (a churn champion exists) instead of training; wine and diabetes are "
        "trained into it if it lacks them",
    )
    args = parser.parse_args()
    seconds = args.seconds or (5 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = 1 if args.quick else 2
    batch_requests = 5 if args.quick else 30
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install -y {tool})")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPU cores: the servers are pinned to core 0 and wrk to core 1")

    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (SIGINT ignored)
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-serving-"))
    try:
        for model in TASK_SERVERS.values():
            model.write_data(work)
        if args.home:
            home, train_seconds = args.home.resolve(), None
            missing = [m for m in TASK_SERVERS.values() if not has_champion(home, m.name)]
            if missing:
                print(f"training {', '.join(m.name for m in missing)} into {home} ...", flush=True)
                train_seconds = train_versions(home, [], [m.train_args(work) for m in missing])
        else:
            home = work / "home"
            home.mkdir()
            models = ", ".join(f"{m.name} ({m.estimator})" for m in TASK_SERVERS.values())
            print(f"training champions churn ({args.estimator}), {models} into {home} ...", flush=True)
            train_seconds = train_versions(home, [args.estimator], [m.train_args(work) for m in TASK_SERVERS.values()])
        prep = prepare(home, work, train_seconds)
        print(f"champion churn v{prep.version} ({prep.estimator}); pipeline dumped to {prep.joblib_path}")
        for task in prep.tasks.values():
            print(f"champion {task.model.name} v{task.version} ({task.estimator}, {task.model.task})")
        os.sched_setaffinity(0, {int(LOAD_CORE)})  # the harness (batch client, parsing) stays off the server core
        with redis_server(work) as redis_url:
            servers = make_servers(prep, work, redis_url)
            with running(servers, timeout=120):
                _measure(servers, prep, seconds, rounds, warmup, batch_requests, train_seconds)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(
    servers: dict[str, Server],
    prep: Prepared,
    seconds: int,
    rounds: int,
    warmup: int,
    batch_requests: int,
    train_seconds: float | None,
) -> None:
    print("checking every body answers 200:")
    targets = check_bodies(make_targets(servers, prep))
    running_servers = list(servers.values())
    print(f"warm-up ({warmup} s per target at c=16) ...", flush=True)
    for target in targets:
        run_wrk(target, 16, warmup, running_servers)
    memory = {s.name: s.memory() for s in servers.values() if s.up}
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    plan = [(t, c) for c in CONNECTIONS for t in targets if c in t.connections]
    total = rounds * len(plan) * seconds
    print(f"{rounds} round(s) x {len(plan)} runs x {seconds} s ≈ {total / 60:.1f} min", flush=True)
    for round_no in range(1, rounds + 1):
        for target, conns in plan:
            waited = settle(running_servers)
            if waited > 1.0:
                print(f"  (waited {waited:.1f} s for the servers to go idle)")
            run = run_wrk(target, conns, seconds, running_servers)
            target.results.setdefault(conns, []).append(run)
            flag = "  !!! non-2xx/socket errors" if run.non2xx or run.socket_errors else ""
            print(f"  round {round_no}  {target.label:<32} c={conns:<3} {run.rps:>9,.1f} req/s  "
                  f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms  core-0 noise {run.other_cpu:.2f}{flag}",
                  flush=True)  # fmt: skip
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"1,000-row batches ({batch_requests} requests each, interleaved) ...", flush=True)
    batch = batch_latency(servers, prep, batch_requests)
    extras = {
        "rounds": rounds,
        "seconds": seconds,
        "version": prep.version,
        "estimator": prep.estimator,
        "task_models": ", ".join(
            f"{t.model.name} v{t.version} ({t.estimator}, {t.model.task})" for t in prep.tasks.values()
        ),
        "batch": batch,
        "log_rows": prediction_log_rows(prep.home),
        "train_seconds": train_seconds,
        "load_before": " ".join(load_before),
        "load_after": " ".join(load_after),
    }
    report(targets, servers, memory, extras)


if __name__ == "__main__":
    main()
