"""Local services driftloop starts and reuses on embedded defaults: a Prefect server and the MLflow UI.

Each runs detached in its own session (so ``down`` can stop the whole process group), logs to
``<home>/run/<name>.log`` and records its pid in ``<home>/run/<name>.pid``. A service that already answers its
health URL is reused, whoever started it.

Starting is serialised per data directory by ``<home>/run/services.lock`` (``flock``, so a process that dies lets
go of it): from "does it answer?" to "it answers", one process decides, and a second CLI waits, then finds the
service answering and reuses it instead of launching a copy that can only fail to bind. The pid file names the
process that serves: one launched here that exits, or that finds another process serving its port, loses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from driftloop.errors import ServiceError
from driftloop.io.file_lock import exclusive_lock
from driftloop.settings import Settings

LOCK_NAME = "services.lock"


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
    note: str = ""  # set when the health URL answers from another process than the one started here


def venv_bin(command: str) -> str:
    """The console script installed beside the running interpreter (the same virtualenv)."""
    candidate = Path(sys.executable).parent / command
    return str(candidate) if candidate.exists() else command


def prefect_server_spec(settings: Settings) -> ServiceSpec:
    """The local Prefect server; with an auth string set every API call but the health probe needs it."""
    env = settings.process_env()
    env.pop("PREFECT_API_URL")  # the server itself must not look for another API
    if settings.prefect_api_auth_string is not None:
        env["PREFECT_SERVER_API_AUTH_STRING"] = settings.prefect_api_auth_string.get_secret_value()
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
        # MLflow's job runner (about eight huey consumer processes, 250 MB each) serves GenAI features driftloop
        # does not use.
        env={**settings.process_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
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
    if not settings.uses_local_mlflow:
        return
    # Under the start lock: the file exists before its migrations finish, so checking outside it is not enough.
    with start_lock(settings.run_dir, settings.service_start_timeout):
        if settings.mlflow_db.exists():
            return
        from mlflow import MlflowClient

        settings.home.mkdir(parents=True, exist_ok=True)
        MlflowClient(tracking_uri=settings.tracking_uri).search_experiments(max_results=1)


@contextlib.contextmanager
def start_lock(run_dir: Path, timeout: float) -> Iterator[Path]:
    """Hold the exclusive lock on starting this data directory's services (``<run_dir>/services.lock``).

    Waits up to ``timeout`` seconds for another process to let go, then raises ServiceError naming the lock file.
    The lock is an ``flock``: the kernel releases it when the holder closes it or dies, so a killed CLI never
    leaves it taken. Not re-entrant: a process that holds it must not ask for it again.
    """
    path = run_dir / LOCK_NAME

    def refused() -> ServiceError:
        holder = path.read_text(errors="replace").strip() or "?"
        return ServiceError(
            f"could not take {path} within {timeout:g}s: another driftloop process (pid {holder}) "
            "is still starting this data directory's services"
        )

    # 0o600, and not inheritable: services started under it never hold it.
    with exclusive_lock(path, timeout, refused, mode=0o600) as fd:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # who holds it, for the message above
        yield path


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL from settings)
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def served_models(serve_url: str, timeout: float = 2.0) -> tuple[str, ...] | None:
    """The models a driftloop model server at ``serve_url`` serves (default first); None when none answers."""
    try:
        with urllib.request.urlopen(f"{serve_url}/models", timeout=timeout) as response:  # noqa: S310 (settings' URL)
            listing = json.loads(response.read())
        return tuple(str(model["name"]) for model in listing["models"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return None


def _read_pid(spec: ServiceSpec) -> int | None:
    try:
        pid = int(spec.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _forget_pid(spec: ServiceSpec, pid: int) -> None:
    """Remove the pid file if it still names ``pid``."""
    with contextlib.suppress(OSError, ValueError):
        if int(spec.pid_path.read_text().strip()) == pid:
            spec.pid_path.unlink()


def _log_tail(spec: ServiceSpec, lines: int = 15) -> str:
    try:
        return "\n".join(spec.log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _port_taken(url: str) -> bool:
    """Something accepts connections on the URL's host and port (whether or not it speaks HTTP)."""
    try:
        with socket.create_connection(_address(url), timeout=1.0):
            return True
    except OSError:
        return False


def _proc_ids(pid: int) -> tuple[int, int] | None:
    """(process group, session) of a live process, from /proc (Linux); None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state ppid pgrp session ...
    return int(fields[2]), int(fields[3])


def _listening_pids(port: int) -> set[int]:
    """The processes (of those this user may inspect) holding a listening TCP socket on ``port``; Linux only.

    Empty when it cannot be told: no /proc, or the socket belongs to a process of another user.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    pids: set[int] = set()
    if not inodes:
        return pids
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):  # gone, or another user's
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):  # closed meanwhile
                    if str(fd.readlink()) in inodes:
                        pids.add(int(fd_dir.parent.name))
                        break
    return pids


def _serves(pid: int, url: str) -> bool:
    """The process we launched (or a child in its session) holds the URL's listening socket.

    Where that cannot be told (no /proc, or the listener is not ours to inspect) a live process is assumed to serve.
    """
    listeners = _listening_pids(_address(url)[1])
    if not listeners:
        return True
    return any(owner == pid or (_proc_ids(owner) or (0, 0))[1] == pid for owner in listeners)


def _runs(spec: ServiceSpec, pid: int, settle: float = 2.0) -> bool:
    """The live process ``pid`` runs this service's program (not a stranger that reused a stale pid); Linux only.

    A process caught in its exec has an empty command line for a moment: the parent's Popen has returned, the new
    program's arguments are not in place yet. It is read again for up to ``settle`` seconds, then trusted. Under
    load most reads right after a Popen came back empty, and a start seeing one launched the service a second time.
    """
    deadline = time.monotonic() + settle
    while True:
        try:
            argv = [arg for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
        except OSError:
            return not Path("/proc/self").exists()  # no /proc: trust the pid file
        if argv:
            program = Path(spec.argv[0]).name
            return any(Path(os.fsdecode(arg)).name == program for arg in argv)
        if time.monotonic() >= deadline or not _alive(pid):
            return _alive(pid)
        time.sleep(0.01)


def launch(spec: ServiceSpec) -> int | None:
    """Start the service unless it already answers; return the new pid, or None when none was started.

    Call it holding ``start_lock(spec.run_dir, ...)`` (``start_all`` does). None also when the pid file names a live
    process of this service that does not answer yet (an earlier start, still booting): ``wait_healthy`` waits for
    it rather than launching a second copy that could only fail to bind. The pid file is written at once, so
    ``down`` can stop a process whose start was interrupted; ``wait_healthy`` removes it if the process does not
    turn out to serve.
    """
    if is_healthy(spec.health_url):
        return None
    earlier = _read_pid(spec)
    if earlier is not None and _runs(spec, earlier):
        return None
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with spec.log_path.open("ab") as log:
        process = subprocess.Popen(
            spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True, cwd=spec.cwd
        )
    spec.pid_path.write_text(str(process.pid))
    return process.pid


def _answered(spec: ServiceSpec, launched: int | None, exited: bool, started_at: float) -> ServiceStatus:
    """The health URL answers: keep the pid file only for a process of ours that serves it."""
    seconds = time.monotonic() - started_at
    if launched is None:
        running = _read_pid(spec)
        if running is None:
            spec.pid_path.unlink(missing_ok=True)  # a stale pid of a process long gone
        return ServiceStatus(spec.name, spec.listen_url, True, running, False, seconds)
    alive = not exited and _alive(launched)
    if alive and _serves(launched, spec.health_url):
        spec.pid_path.write_text(str(launched))
        return ServiceStatus(spec.name, spec.listen_url, True, launched, True, seconds)
    # Another process answers on this port; ours exited (it could not bind) or is about to: it never serves.
    if alive:
        _stop_group(launched, grace=5.0)
    _forget_pid(spec, launched)
    port = _address(spec.health_url)[1]
    note = f"reused: port {port} is served by another process, not by the one started here (log: {spec.log_path})"
    return ServiceStatus(spec.name, spec.listen_url, True, None, False, seconds, note)


def wait_healthy(spec: ServiceSpec, pid: int | None, timeout: float, started_at: float) -> ServiceStatus:
    """Poll the health URL until it answers, the process dies, or ``timeout`` passes.

    ``pid`` is what ``launch`` returned. The returned status names the pid that serves; ``started_now`` only when
    it is the one launched here. A launched process that exits while another one holds the port is reported as that
    other process serving the port: reused if it answers the health URL in time, a ServiceError if it does not.
    """
    deadline = started_at + timeout
    earlier = _read_pid(spec) if pid is None else None  # an earlier start of ours, still booting
    port = _address(spec.health_url)[1]
    exited = False
    while time.monotonic() < deadline:
        if is_healthy(spec.health_url):
            return _answered(spec, pid, exited, started_at)
        if pid is not None and not exited and not _alive(pid):
            exited = True
            _forget_pid(spec, pid)
            if not _port_taken(spec.health_url):
                raise ServiceError(f"{spec.name} exited while starting (log: {spec.log_path}):\n{_log_tail(spec)}")
        if earlier is not None and not _alive(earlier):
            _forget_pid(spec, earlier)
            raise ServiceError(
                f"{spec.name} (pid {earlier}, started earlier from this data directory) exited while starting "
                f"(log: {spec.log_path}):\n{_log_tail(spec)}"
            )
        time.sleep(0.25)
    if exited:
        raise ServiceError(
            f"port {port} is served by another process that does not answer {spec.health_url} within {timeout:.0f}s; "
            f"the {spec.name} started here could not take the port and exited (log: {spec.log_path}):\n"
            f"{_log_tail(spec)}"
        )
    running = pid or earlier
    still = f"; it is still starting as pid {running} (`driftloop down` stops it)" if running else ""
    raise ServiceError(
        f"{spec.name} did not answer {spec.health_url} within {timeout:.0f}s{still} (log: {spec.log_path}):\n"
        f"{_log_tail(spec)}"
    )


def start_all(specs: list[ServiceSpec], timeout: float) -> list[ServiceStatus]:
    """Start every service at once (they boot in parallel), then wait for each to be healthy.

    Holds the start lock of every run directory involved throughout (see ``start_lock``), so concurrent callers on
    the same data directory start each service once; the others wait, then reuse it.
    """
    with contextlib.ExitStack() as locks:
        for run_dir in sorted({spec.run_dir for spec in specs}):
            locks.enter_context(start_lock(run_dir, timeout))
        started_at = time.monotonic()
        pids = [launch(spec) for spec in specs]
        return [wait_healthy(spec, pid, timeout, started_at) for spec, pid in zip(specs, pids, strict=True)]


def stop(spec: ServiceSpec, grace: float = 10.0) -> bool:
    """Stop a service this home started (by its pid file); True when something was stopped."""
    pid = _read_pid(spec)
    spec.pid_path.unlink(missing_ok=True)
    if pid is None:
        return False
    _stop_group(pid, grace)
    return True


def _stop_group(pid: int, grace: float) -> None:
    """Stop the process group ``pid`` leads (a service runs in its own session), escalating if it lingers."""
    # Prefect workers and servers may ignore the first SIGTERM; escalate to SIGINT, then SIGKILL.
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGINT, 3.0), (signal.SIGKILL, 3.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


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
    return _proc_state(pid) != "Z"  # a zombie nobody reaped yet (an orphan where init does not reap) is dead


def _proc_state(pid: int) -> str:
    """The state letter of a process from /proc (Linux): R, S, Z, ...; empty when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def status(spec: ServiceSpec) -> ServiceStatus:
    return ServiceStatus(spec.name, spec.listen_url, is_healthy(spec.health_url), _read_pid(spec))
