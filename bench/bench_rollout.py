"""Blue-green switches behind nginx under load: time per switch, and requests served / failed across them.

Run: `.venv/bin/python bench/bench_rollout.py [--switches 6] [--threads 4] [--home DIR]` from the repository root
(about 2 minutes with --home of an earlier run, 3-4 minutes from nothing). Needs a Docker engine and the local
python:3.11-slim; never pulls. The proxy image is DRIFTLOOP_PROXY_IMAGE (default driftloop/nginx:local, built
from deployments/substitutes/nginx when missing).

What it does:
  1. trains v1 (logistic regression) and v2 (hist gradient boosting) into a temporary DRIFTLOOP_HOME with
     `driftloop train` (a local Prefect server it stops afterwards), or reuses --home where both exist;
  2. builds both serving images (driftloop.deploy.image_build) under a unique prefix, removed at the end;
  3. starts the proxy and rolls v1 out (first rollout), then starts two kinds of clients POSTing /predict
     through nginx: `--threads` opening a connection per request, and `--threads` keeping connections alive;
  4. switches v2, v1, v2, ... blue-green `--switches` times (1 s of load between switches) and prints per switch
     start → ready → switched → old stopped, then the requests served and failed by each kind of client,
     beside the note's figures (docker-offline.md §6: 1.1-2.1 s per deploy; 25,566 requests over 4 switches
     under wrk -c8, 0 non-2xx and 1 socket read error).
Every container it starts is removed on the way out (label driftloop.bench_run), Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
from docker.errors import DockerException, ImageNotFound

from driftloop.deploy.engine import docker_client
from driftloop.deploy.image_build import build_image_for_version
from driftloop.deploy.rollout import RolloutResult, rollout
from driftloop.deploy.slots import Slots
from driftloop.io.datasets import read_snapshot
from driftloop.io.registry import ModelRegistry
from driftloop.settings import BUNDLED_DATA, Settings

from common import ROOT, free_port, train_versions

PROXY_IMAGE = os.environ.get("DRIFTLOOP_PROXY_IMAGE", "driftloop/nginx:local")
NOTE = "note (docker-offline.md §6): 1.1-2.1 s per deploy; 4 switches: 25,566 requests, 0 non-2xx, 1 socket error"


@dataclass
class Clients:
    ok: Counter[str] = field(default_factory=Counter)
    non_2xx: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class Load:
    def __init__(self, url: str, threads: int, rows: list[dict[str, object]]) -> None:
        self.url, self.rows, self.stats = url, rows, {"per-request": Clients(), "keep-alive": Clients()}
        self._stop, self._lock = threading.Event(), threading.Lock()
        kinds = ["per-request"] * threads + ["keep-alive"] * threads
        self._threads = [threading.Thread(target=self._run, args=(k, i), daemon=True) for i, k in enumerate(kinds)]

    def _run(self, kind: str, index: int) -> None:
        limits = httpx.Limits(max_keepalive_connections=0 if kind == "per-request" else 10)
        stats = self.stats[kind]
        with httpx.Client(base_url=self.url, timeout=30, limits=limits) as client:
            n = index
            while not self._stop.is_set():
                n += 1
                try:
                    answer = client.post("/predict", json={"features": self.rows[n % len(self.rows)]})
                except httpx.HTTPError as error:
                    with self._lock:
                        stats.errors[type(error).__name__] += 1
                    continue
                with self._lock:
                    target = stats.ok if answer.status_code == 200 else stats.non_2xx
                    target[answer.headers.get("x-model-version", str(answer.status_code))] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def ensure_proxy_image(client: docker.DockerClient) -> None:
    try:
        client.images.get(PROXY_IMAGE)
    except ImageNotFound:
        path = ROOT / "deployments" / "substitutes" / "nginx"
        client.images.build(path=str(path), tag=PROXY_IMAGE, rm=True, forcerm=True, pull=False, network_mode="host")


def switch_figures(result: RolloutResult) -> dict[str, float]:
    at = {step.name: step.at for step in result.steps}
    start = at["self-check sample"]
    return {
        "ready": at["candidate ready"] - start,
        "switched": at["switched 100%"] - start,
        "stopped": at["old slot stopped"] - start,
    }


def main() -> None:  # noqa: C901 (one linear script)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=4, help="clients of each kind")
    parser.add_argument("--home", type=Path, help="a DRIFTLOOP_HOME holding churn v1 and v2 (trained if missing)")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # read at each download

    client = docker_client()
    ensure_proxy_image(client)
    scratch = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    home = (args.home or scratch / "home").resolve()
    registry = ModelRegistry("churn", f"sqlite:///{home / 'mlflow.db'}")
    known = {summary.version for summary in registry.versions()}
    if "1" not in known:
        print("training v1 ...", flush=True)
        train_versions(home, ["logistic_regression"])
    if "2" not in known:
        print("training v2 ...", flush=True)
        train_versions(home, ["hist_gradient_boosting"])

    run_id = uuid.uuid4().hex[:8]
    proxy_port, blue, green = free_port(), free_port(), free_port()
    settings = Settings(
        home=home,
        image_prefix=f"dlbench{run_id}",
        proxy_container=f"dlbench-{run_id}-proxy",
        proxy_image=PROXY_IMAGE,
        proxy_port=proxy_port,
        proxy_config_dir=scratch / "proxy",
        slot_ports=(blue, green),
        drain_timeout=30,
    )
    labels = {"driftloop.managed": "true", "driftloop.bench_run": run_id}
    slots = Slots(settings, client, name_prefix=f"dlbench-{run_id}", labels=labels)
    images: dict[str, str] = {}
    try:
        for version in ("1", "2"):
            started = time.perf_counter()
            built = build_image_for_version(settings, version, lambda line: None, client=client)
            images[version] = built.image.tag
            print(f"image v{version}: {built.image.tag} {built.image.size_bytes / 1e6:.0f} MB "
                  f"in {time.perf_counter() - started:.1f}s", flush=True)  # fmt: skip
        first = rollout(settings, "1", images["1"], "blue-green", actor="bench_rollout", slots=slots)
        if not first.ok:
            raise SystemExit(first.markdown())
        frame = read_snapshot(BUNDLED_DATA).drop(columns=["churn"]).head(50)
        rows = [dict(r) for r in frame.astype(object).where(frame.notna(), None).to_dict(orient="records")]
        figures: list[dict[str, float]] = []
        versions = ["2", "1"] * args.switches
        with Load(f"http://127.0.0.1:{proxy_port}", args.threads, rows) as load:
            time.sleep(1)
            began = time.perf_counter()
            for index in range(args.switches):
                version = versions[index]
                result = rollout(settings, version, images[version], "blue-green", actor="bench_rollout", slots=slots)
                if not result.ok:
                    raise SystemExit(result.markdown())
                figures.append(switch_figures(result))
                f = figures[-1]
                print(f"switch {index + 1} → v{version}: ready {f['ready']:.2f}s, switched {f['switched']:.2f}s, "
                      f"old stopped {f['stopped']:.2f}s", flush=True)  # fmt: skip
                time.sleep(1)
            seconds = time.perf_counter() - began
        print()
        print(f"{'':<28}{'median':>8}{'min':>8}{'max':>8}   {NOTE}")
        for key, label in (("ready", "start → ready (s)"), ("switched", "start → switched (s)"),
                           ("stopped", "start → old stopped (s)")):  # fmt: skip
            values = [f[key] for f in figures]
            print(f"{label:<28}{statistics.median(values):>8.2f}{min(values):>8.2f}{max(values):>8.2f}")
        print()
        print(f"{args.switches} switches in {seconds:.1f}s of load, {args.threads} clients of each kind:")
        for kind, stats in load.stats.items():
            served = sum(stats.ok.values())
            failed = sum(stats.non_2xx.values()) + sum(stats.errors.values())
            detail = ", ".join(f"{k} {v}" for k, v in {**stats.non_2xx, **stats.errors}.items()) or "none"
            versions_seen = ", ".join(f"v{k} {v}" for k, v in sorted(stats.ok.items()))
            print(f"  {kind:<12} served {served:>7,}  failed {failed:>3} ({detail})  [{versions_seen}]")
    finally:
        bench_labels = {"label": f"driftloop.bench_run={run_id}"}
        for container in client.containers.list(all=True, ignore_removed=True, filters=bench_labels):
            with contextlib.suppress(DockerException):
                container.remove(force=True)
        for tag in images.values():
            with contextlib.suppress(DockerException):
                client.images.remove(tag, force=True)


if __name__ == "__main__":
    main()
