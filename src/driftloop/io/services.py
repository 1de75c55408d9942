"""Local services driftloop starts and reuses on embedded defaults: a Prefect server and the MLflow UI.

Each runs detached in its own session (so ``down`` can stop the whole process group), logs to
``<home>/run/<name>.log`` and records its pid in ``<home>/run/<name>.pid``. A service that already answers its
health URL is reused, whoever started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from driftloop.errors import ServiceError
from driftloop.settings import Settings


@dataclass(frozen=True)
class ServiceSpec:
    """How to start, probe and stop one local service."""

    name: str
    argv: tuple[str, ...]
    health_url: str
    listen_url: str
    env: dict[str, str]
    run_dir: Path
    cwd: Path | None = None

    @property
    def pid_path(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    healthy: bool
    pid: int | None
    started_now: bool = False
    seconds: float = 0.0


def venv_bin(command: str) -> str:
    """The console script installed beside the running interpreter (the same virtualenv)."""
    candidate = Path(sys.executable).parent / command
    return str(candidate) if candidate.exists() else command


def prefect_server_spec(settings: Settings) -> ServiceSpec:
    env = settings.process_env()
    env.pop("PREFECT_API_URL")  # the server itself must not look for another API
    return ServiceSpec(
        name="prefect-server",
        argv=(
            venv_bin("prefect"),
            "server",
            "start",
            "--host",
            settings.prefect_host,
            "--port",
            str(settings.prefect_port),
        ),
        health_url=f"{settings.prefect_api}/health",
        listen_url=settings.prefect_ui,
        env=env,
        run_dir=settings.run_dir,
    )


def mlflow_ui_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="mlflow-ui",
        argv=(
            venv_bin("mlflow"),
            "server",
            "--backend-store-uri",
            settings.tracking_uri,
            "--default-artifact-root",
            settings.mlflow_artifacts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(settings.mlflow_ui_port),
            "--workers",
            "1",
        ),
        health_url=f"{settings.mlflow_ui}/health",
        listen_url=settings.mlflow_ui,
        env=settings.process_env(),
        run_dir=settings.run_dir,
    )


def model_server_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="model-server",
        argv=(venv_bin("driftloop"), "serve"),
        health_url=f"{settings.serve_url}/health",
        listen_url=settings.serve_url,
        env=settings.process_env(),
        run_dir=settings.run_dir,
    )


def worker_spec(settings: Settings, project_dir: Path) -> ServiceSpec:
    """A process worker on the driftloop pool: it runs scheduled, triggered and UI-started flow runs."""
    env = settings.process_env()
    env.update(
        {
            "PREFECT_WORKER_QUERY_SECONDS": str(settings.worker_poll_seconds),
            "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
            "PREFECT_WORKER_WEBSERVER_PORT": str(settings.worker_port),
        }
    )
    return ServiceSpec(
        name="prefect-worker",
        argv=(venv_bin("prefect"), "worker", "start", "--pool", settings.work_pool, "--with-healthcheck"),
        health_url=f"http://127.0.0.1:{settings.worker_port}/health",
        listen_url=f"pool {settings.work_pool}",
        env=env,
        run_dir=settings.run_dir,
        cwd=project_dir,
    )


def local_specs(settings: Settings, with_model_server: bool = False) -> list[ServiceSpec]:
    """The services driftloop owns under these settings (none when they point at external servers)."""
    specs = []
    if settings.uses_local_prefect:
        specs.append(prefect_server_spec(settings))
    if settings.uses_local_mlflow and settings.start_mlflow_ui:
        specs.append(mlflow_ui_spec(settings))
    if with_model_server:
        specs.append(model_server_spec(settings))
    return specs


def prepare_local_mlflow(settings: Settings) -> None:
    """Create the embedded MLflow database once, before several processes open it at the same moment.

    Two processes creating a fresh SQLite store at once race in MLflow's migrations ("expected to match one row").
    """
    if not settings.uses_local_mlflow or settings.mlflow_db.exists():
        return
    from mlflow import MlflowClient

    settings.home.mkdir(parents=True, exist_ok=True)
    MlflowClient(tracking_uri=settings.tracking_uri).search_experiments(max_results=1)


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL from settings)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _read_pid(spec: ServiceSpec) -> int | None:
    try:
        pid = int(spec.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def _log_tail(spec: ServiceSpec, lines: int = 15) -> str:
    try:
        return "\n".join(spec.log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch(spec: ServiceSpec) -> int | None:
    """Start the service unless it already answers; return the new pid, or None when it was already up."""
    if is_healthy(spec.health_url):
        return None
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with spec.log_path.open("ab") as log:
        process = subprocess.Popen(
            spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, cwd=spec.cwd
        )
    spec.pid_path.write_text(str(process.pid))
    return process.pid


def wait_healthy(spec: ServiceSpec, pid: int | None, timeout: float, started_at: float) -> ServiceStatus:
    """Poll the health URL until it answers, the process dies, or ``timeout`` passes."""
    deadline = started_at + timeout
    while time.monotonic() < deadline:
        if is_healthy(spec.health_url):
            return ServiceStatus(
                spec.name, spec.listen_url, True, pid or _read_pid(spec), pid is not None,
                time.monotonic() - started_at,
            )  # fmt: skip
        if pid is not None and _read_pid(spec) is None:
            raise ServiceError(f"{spec.name} exited while starting (log: {spec.log_path}):\n{_log_tail(spec)}")
        time.sleep(0.25)
    raise ServiceError(
        f"{spec.name} did not answer {spec.health_url} within {timeout:.0f}s (log: {spec.log_path}):\n{_log_tail(spec)}"
    )


def start_all(specs: list[ServiceSpec], timeout: float) -> list[ServiceStatus]:
    """Start every service at once (they boot in parallel), then wait for each to be healthy."""
    started_at = time.monotonic()
    pids = [launch(spec) for spec in specs]
    return [wait_healthy(spec, pid, timeout, started_at) for spec, pid in zip(specs, pids, strict=True)]


def stop(spec: ServiceSpec, grace: float = 10.0) -> bool:
    """Stop a service this home started (by its pid file); True when something was stopped."""
    pid = _read_pid(spec)
    spec.pid_path.unlink(missing_ok=True)
    if pid is None:
        return False
    # Prefect workers and servers may ignore the first SIGTERM; escalate to SIGINT, then SIGKILL.
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGINT, 3.0), (signal.SIGKILL, 3.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def status(spec: ServiceSpec) -> ServiceStatus:
    return ServiceStatus(spec.name, spec.listen_url, is_healthy(spec.health_url), _read_pid(spec))
