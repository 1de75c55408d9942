"""The serving image against its targets: size, cold build, warm rebuild for a new model version, time to ready.

Run: `.venv/bin/python bench/bench_image.py [--home DIR] [--runs 5]` from the repository root. Needs a Docker
engine and a local python:3.11-slim (see ../shared/notes/docker-offline.md). About 3 minutes on 2 cores.

  1. trains `churn` v1 (logistic_regression) and v2 (gradient_boosting) into a temporary DRIFTLOOP_HOME with
     `driftloop train` (or reuses --home, which must hold versions 1 and 2);
  2. cold build: v1's context built with no layer cache at all (pip downloads every wheel inside the build);
  3. warm rebuild for a new model version: `build_image_for_version(v2)` end to end (registry download,
     staging, build, lineage tags), then --runs builds of a context whose model layer is new each time
     (model_info.json differs), the build alone;
  4. time to ready: `docker run` → first 200 from /ready, and → Docker's `healthy`, --runs times each.
Figures are printed beside the targets (PASS/MISS is informational; nothing is asserted). Every container and
image tag it makes is removed on the way out; the layer cache stays.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
from docker.errors import ImageNotFound

from driftloop.deploy.engine import docker_client
from driftloop.deploy.image_build import build_image_for_version, build_serving_image
from driftloop.deploy.image_context import image_labels, serving_image_tag, stage_build_context
from driftloop.io.bundle import ModelInfo, write_model_info
from driftloop.io.registry import ModelRegistry
from driftloop.settings import Settings

from common import free_port, train_versions

MB = 1_000_000  # decimal, as `docker images` shows sizes

TARGET_SIZE_MB = 300
TARGET_REBUILD_S = 2.0
TARGET_READY_S = 2.0
MLFLOW_BUILD_DOCKER_GB = 3  # "MLflow's build-docker makes 3+ GB for a tiny model" (the issue)
RUN_LABELS = {"driftloop.managed": "true", "driftloop.role": "bench"}


def quiet(_line: str) -> None:
    """Build logs are not printed: only the figures."""


def time_to_ready(client: docker.DockerClient, tag: str, runs: int) -> tuple[list[float], list[float]]:
    """Seconds from `docker run` to the first 200 from /ready, and to Docker's `healthy`, for each run."""
    ready_times, healthy_times = [], []
    for run in range(runs):
        port = free_port()
        started = time.perf_counter()
        container = client.containers.run(
            tag,
            detach=True,
            network_mode="host",
            environment={"DRIFTLOOP_SERVE_PORT": str(port)},
            labels=RUN_LABELS,
            name=f"dlbench-{uuid.uuid4().hex[:8]}-{run}",
        )
        try:
            ready = None
            with httpx.Client(timeout=1) as http:
                while time.perf_counter() - started < 60:
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                            ready = time.perf_counter() - started
                            break
                    time.sleep(0.02)
            if ready is None:
                raise RuntimeError(f"not ready after 60 s:\n{container.logs().decode()[-2000:]}")
            ready_times.append(ready)
            while time.perf_counter() - started < 60:
                container.reload()
                if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
                    healthy_times.append(time.perf_counter() - started)
                    break
                time.sleep(0.05)
        finally:
            container.remove(force=True)
    return ready_times, healthy_times


def fresh_model_contexts(model_dir: Path, info: ModelInfo, work: Path, count: int) -> Iterator[Path]:
    """Contexts identical but for model_info.json, so each build has a model layer the cache has never seen."""
    base = stage_build_context(model_dir, info, work / "base")
    for index in range(count):
        context = work / f"fresh-{index}"
        shutil.copytree(base, context)
        write_model_info(context / "model", ModelInfo(name=info.name, version=info.version, run_id=uuid.uuid4().hex))
        yield context


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="reuse this DRIFTLOOP_HOME (versions 1 and 2 exist)")
    parser.add_argument("--runs", type=int, default=5, help="repeats of the warm rebuild and of time-to-ready")
    args = parser.parse_args()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"

    client = docker_client()
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-image-"))
    prefix = f"dlbench-{uuid.uuid4().hex[:8]}"
    tags: list[str] = []
    try:
        home = args.home.resolve() if args.home else work / "home"
        train_seconds = None if args.home else train_versions(home, ("logistic_regression", "gradient_boosting"))
        settings = Settings(home=home, image_prefix=prefix, mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
        registry = ModelRegistry(settings.model_name, settings.tracking_uri)
        v1 = registry.get_version("1")
        info = ModelInfo.from_tags(settings.model_name, "1", None, v1.run_id, dict(v1.tags))
        model_dir = registry.download_model_dir("1", work / "v1-model")

        print("cold build (no layer cache)...", flush=True)
        context = stage_build_context(model_dir, info, work / "cold")
        cold_tag = serving_image_tag(prefix, settings.model_name, "1-cold")
        tags.append(cold_tag)
        cold = build_serving_image(client, context, cold_tag, image_labels(info, None), "host", quiet, nocache=True)

        print("builds for v1 then v2 (warm)...", flush=True)
        built_v1 = build_image_for_version(settings, "1", quiet, client=client)
        tags.append(built_v1.image.tag)
        started = time.perf_counter()
        built_v2 = build_image_for_version(settings, "2", quiet, client=client)
        v2_end_to_end = time.perf_counter() - started
        tags.append(built_v2.image.tag)

        print(f"{args.runs} warm rebuilds with a new model layer...", flush=True)
        rebuilds = []
        for index, fresh in enumerate(fresh_model_contexts(model_dir, info, work / "fresh", args.runs)):
            tag = serving_image_tag(prefix, settings.model_name, f"1-fresh{index}")
            tags.append(tag)
            rebuilds.append(build_serving_image(client, fresh, tag, {}, "host", quiet).seconds)

        print(f"{args.runs} container starts...", flush=True)
        ready, healthy = time_to_ready(client, built_v2.image.tag, args.runs)
    finally:
        for tag in tags:
            with contextlib.suppress(ImageNotFound):
                client.images.remove(tag, force=True)
        shutil.rmtree(work, ignore_errors=True)

    size_mb = built_v2.image.size_bytes / MB
    rebuild = statistics.median(rebuilds)
    print()
    print(f"{'figure':44} {'measured':>12}  {'target / baseline':34} verdict")
    print(f"{'image size':44} {size_mb:>9.0f} MB  {'≤ 300 MB; MLflow build-docker 3+ GB':34} {verdict(size_mb <= 300)}")
    print(f"{'cold build (no cache, pip inside)':44} {cold.seconds:>10.1f} s  {'(informational; notes: ~15 s)':34}")
    print(
        f"{'warm rebuild, new model layer (median)':44} {rebuild:>10.2f} s  {'≤ 2 s':34} "
        f"{verdict(rebuild <= TARGET_REBUILD_S)}"
    )
    print(f"{'  runs':44} {' '.join(f'{s:.2f}' for s in rebuilds):>12}")
    print(f"{'build v2 end to end (download+stage+build)':44} {v2_end_to_end:>10.2f} s  {'(v2 build alone':>15} "
          f"{built_v2.image.seconds:.2f} s)")  # fmt: skip
    print(
        f"{'docker run → /ready 200 (median)':44} {statistics.median(ready):>10.2f} s  {'≤ 2 s':34} "
        f"{verdict(statistics.median(ready) <= TARGET_READY_S)}"
    )
    print(f"{'  runs':44} {' '.join(f'{s:.2f}' for s in ready):>12}")
    if healthy:
        print(
            f"{'docker run → healthy (median)':44} {statistics.median(healthy):>10.2f} s  "
            f"{'(HEALTHCHECK interval 3 s)':34}"
        )
    ratio = MLFLOW_BUILD_DOCKER_GB * 1024 / size_mb
    print(f"\nsize vs MLflow build-docker: ≥ {ratio:.0f}x smaller; vs target: {size_mb / TARGET_SIZE_MB:.0%} of it")
    if train_seconds is not None:
        print(f"(training v1 + v2 with `driftloop train`, incl. a local Prefect server: {train_seconds:.0f} s)")


if __name__ == "__main__":
    main()
