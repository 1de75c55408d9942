"""The nginx container in front of every model's slots: start it, apply a routing (write, test, reload, drain).

The proxy directory (``settings.proxy_dir``) is bind-mounted as a directory on ``/etc/nginx/conf.d``, which the
official image's (and the substitute's) ``nginx.conf`` includes in its http block. It holds::

    driftloop.conf        the rendered routing of every model (routing.render_nginx_config)
    routing/<model>.json  each model's routing as nginx has loaded it: what ``status`` and the next rollout read
    models.json           the default model (the unnamed routes) and each model's slot ports

Files are replaced with os.replace (a new inode): a single-file bind mount would keep showing the old one.
Rollouts of different models may run at once: each change of the shared files happens under one lock.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import docker
import httpx
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from driftloop.deploy.routing import PROXY_HEALTH, ProxyLimits, ProxyModels, Routing, render_nginx_config
from driftloop.errors import DeployError
from driftloop.io.file_lock import exclusive_lock
from driftloop.settings import Settings

CONFIG_FILE = "driftloop.conf"
ROUTING_DIR = "routing"
LEGACY_ROUTING_FILE = "routing.json"  # one model's routing, from before several models shared the proxy
MODELS_FILE = "models.json"
PROXY_LOCK = ".proxy.lock"
CONTAINER_CONF_DIR = "/etc/nginx/conf.d"
MANAGED = {"driftloop.managed": "true", "driftloop.role": "proxy"}
PROXY_START_TIMEOUT = 20.0
WORKER = "nginx: worker process"
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Applied:
    """One routing change: how long the reload took and whether every old worker had exited by the deadline."""

    routing: Routing
    reload_seconds: float
    drain_seconds: float
    drained: bool
    old_workers: int


def routing_path(settings: Settings, model: str) -> Path:
    return settings.proxy_dir / ROUTING_DIR / f"{model}.json"


def read_routing(settings: Settings, model: str | None = None) -> Routing | None:
    """The routing of ``model`` (default ``settings.model_name``) nginx last loaded, None before its first rollout."""
    model = model or settings.model_name
    path = routing_path(settings, model)
    if path.is_file():
        return Routing.from_json(path.read_text())
    legacy = _legacy_routing(settings)
    return legacy if legacy is not None and legacy.model_name == model else None


def read_routings(settings: Settings) -> dict[str, Routing]:
    """Every model's routing behind this proxy, by model name."""
    found: dict[str, Routing] = {}
    legacy = _legacy_routing(settings)
    if legacy is not None:
        found[legacy.model_name] = legacy
    for path in sorted((settings.proxy_dir / ROUTING_DIR).glob("*.json")):
        routing = Routing.from_json(path.read_text())
        found[routing.model_name] = routing
    return found


def _legacy_routing(settings: Settings) -> Routing | None:
    path = settings.proxy_dir / LEGACY_ROUTING_FILE
    return Routing.from_json(path.read_text()) if path.is_file() else None


def read_models(settings: Settings) -> ProxyModels:
    """The default model and each model's slot ports; empty before the first rollout."""
    path = settings.proxy_dir / MODELS_FILE
    return ProxyModels.from_json(path.read_text()) if path.is_file() else ProxyModels()


@dataclass(frozen=True)
class Admitted:
    """A model's slot ports, and the default model when this admission moved it from another one."""

    ports: tuple[int, int]
    default_moved_to: str | None = None


def admit(settings: Settings, in_use: Callable[[int], bool], default: str | None = None) -> Admitted:
    """The slot ports of ``settings.model_name``, chosen now if it has none (``settings.slot_ports`` first).

    ``default``, when given, becomes the model on the unnamed routes (the project's first); otherwise the
    first model ever admitted stays it. nginx serves a moved default from the next ``apply``.
    """
    with locked(settings.proxy_dir / PROXY_LOCK, _lock_wait(settings), "the proxy's files"):
        before = read_models(settings)
        models = before.admit(settings.model_name, settings.slot_ports, in_use)
        if default is not None:
            models = models.with_default(default)
        if models != before:
            write_atomically(settings.proxy_dir / MODELS_FILE, models.to_json() + "\n")
    moved = before.default is not None and models.default != before.default
    return Admitted(models.ports[settings.model_name], models.default if moved else None)


def _lock_wait(settings: Settings) -> float:
    # The lock is held while nginx reloads, which apply waits for up to drain_timeout.
    return 2 * settings.drain_timeout + 30


@contextmanager
def locked(path: Path, wait_seconds: float, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created), waiting up to ``wait_seconds`` for whoever holds it."""

    def refused() -> DeployError:
        return DeployError(f"{what} stayed locked for {wait_seconds:.0f}s ({path})")

    with exclusive_lock(path, wait_seconds, refused, poll=0.1):
        yield


def _config(settings: Settings, routings: Mapping[str, Routing]) -> str:
    models = read_models(settings)
    return render_nginx_config(list(routings.values()), settings.proxy_port, limits(settings), default=models.default)


def limits(settings: Settings) -> ProxyLimits:
    # A little above the server's own limit, so the server answers 413 in its own shape, not nginx.
    return ProxyLimits(
        max_body_bytes=settings.max_body_bytes + 64 * 1024,
        client_header=settings.header_timeout,
        client_body=settings.body_timeout,
    )


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name does not end in .conf: nginx's include glob must never see a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)  # mkstemp makes 0600; nginx reads as root, people and tools as anyone
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_proxy(client: docker.DockerClient, settings: Settings) -> Container | None:
    try:
        return client.containers.get(settings.proxy_container)
    except NotFound:
        return None


def require_proxy_image(client: docker.DockerClient, settings: Settings) -> None:
    """Refuse, before anything is built, a rollout whose proxy could not start: no container and no local image.

    Raises:
        DeployError: The proxy container does not exist and ``settings.proxy_image`` is not in the local engine.
    """
    if find_proxy(client, settings) is not None:
        return
    try:
        client.images.get(settings.proxy_image)
    except ImageNotFound:
        raise DeployError(_missing_proxy_image(settings)) from None


def _missing_proxy_image(settings: Settings) -> str:
    return (
        f"proxy image {settings.proxy_image!r} is not in the local engine and is never pulled: build the "
        "substitute (docker build --network host -t driftloop/nginx:local deployments/substitutes/nginx) and "
        "set DRIFTLOOP_PROXY_IMAGE=driftloop/nginx:local, or `docker pull` the image where a registry is reachable"
    )


def ensure_proxy(client: docker.DockerClient, settings: Settings, labels: Mapping[str, str] | None = None) -> Container:
    """The running proxy container: started from ``settings.proxy_image`` (never pulled) if it is not running.

    Before the first rollout it serves only ``/proxy-health`` and 503 elsewhere.

    Raises:
        DeployError: The image is not local, the container mounts another directory, or nginx does not answer
            on ``settings.proxy_port`` in time (the message ends with its log).
    """
    proxy_dir = settings.proxy_dir
    if not (proxy_dir / CONFIG_FILE).is_file():
        write_atomically(proxy_dir / CONFIG_FILE, _config(settings, read_routings(settings)))
    container = find_proxy(client, settings)
    try:
        if container is not None:
            _check_mount(container, proxy_dir)
            if container.status != "running":
                container.start()
        else:
            # create + start, not run: docker-py's run() pulls a missing image, and nothing is ever pulled here.
            container = client.containers.create(
                settings.proxy_image,
                name=settings.proxy_container,
                network_mode=settings.docker_network,
                volumes={str(proxy_dir): {"bind": CONTAINER_CONF_DIR, "mode": "ro"}},
                labels={**MANAGED, **(labels or {})},
                # types-docker's _RestartPolicy omits "unless-stopped", a restart policy the engine takes
                restart_policy={"Name": "unless-stopped"},  # type: ignore[arg-type]
            )
            container.start()
    except ImageNotFound:
        raise DeployError(_missing_proxy_image(settings)) from None
    except APIError as error:
        raise DeployError(f"cannot start the proxy {settings.proxy_container}: {error.explanation or error}") from None
    _wait_for_proxy(container, settings)
    return container


def _check_mount(container: Container, proxy_dir: Path) -> None:
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Destination") == CONTAINER_CONF_DIR:
            if Path(mount.get("Source", "")).resolve() != proxy_dir.resolve():
                raise DeployError(
                    f"the proxy container {container.name} reads its routing from {mount.get('Source')}, not "
                    f"{proxy_dir}: remove it (docker rm -f {container.name}) or set DRIFTLOOP_PROXY_CONFIG_DIR"
                )
            return
    raise DeployError(
        f"the proxy container {container.name} has no directory mounted on {CONTAINER_CONF_DIR}: it was not "
        f"started by driftloop; remove it (docker rm -f {container.name}) or name another one"
    )


def _wait_for_proxy(container: Container, settings: Settings) -> None:
    url = f"http://127.0.0.1:{settings.proxy_port}{PROXY_HEALTH}"
    deadline = time.monotonic() + PROXY_START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        container.reload()
        if container.status in ("exited", "dead"):
            break
        time.sleep(0.1)
    raise DeployError(f"the proxy {container.name} does not answer {url} ({container.status}):\n{logs_tail(container)}")


def logs_tail(container: Container, lines: int = 20) -> str:
    try:
        text = container.logs(tail=lines).decode(errors="replace")
    except DockerException as error:
        return f"  (no logs: {error})"
    return "\n".join(f"  {line}" for line in text.splitlines()) or "  (no output)"


def worker_pids(container: Container) -> set[str]:
    """PIDs (host namespace) of the container's nginx worker processes, shutting down or not."""
    try:
        top = container.top()
    except (APIError, NotFound) as error:
        raise DeployError(f"cannot list the processes of {container.name}: {error}") from None
    titles = top.get("Titles") or []
    pid_at, cmd_at = titles.index("PID"), len(titles) - 1
    return {row[pid_at] for row in top.get("Processes") or [] if row[cmd_at].startswith(WORKER)}


def _exec(container: Container, argv: list[str]) -> tuple[int, str]:
    result = container.exec_run(argv)
    output = cast("bytes | None", result.output)  # not streamed (stream=False): the whole output, as bytes
    return int(result.exit_code or 0), (output or b"").decode(errors="replace").strip()


def apply(client: docker.DockerClient, settings: Settings, routing: Routing, *, drain: bool = True) -> Applied:
    """Route one model's traffic as ``routing`` says: write the config, ``nginx -t``, reload, wait for old workers.

    The other models keep their routing (each is rendered from its own file).

    Old workers keep the old upstream for the requests they have accepted; once they have exited (bounded by
    ``settings.drain_timeout``), a slot that left the upstream receives nothing more and can be stopped.

    Raises:
        DeployError: The proxy is not running, nginx refuses the config (the previous one is put back), or the
            reload did not start new workers.
    """
    container = find_proxy(client, settings)
    if container is None or container.status != "running":
        raise DeployError(f"the proxy {settings.proxy_container} is not running: run the rollout again to start it")
    routing = routing.stamped(datetime.now(UTC).isoformat(timespec="milliseconds"))
    with locked(settings.proxy_dir / PROXY_LOCK, _lock_wait(settings), "the proxy's files"):
        routings = {**read_routings(settings), routing.model_name: routing}
        config_path = settings.proxy_dir / CONFIG_FILE
        previous = config_path.read_text() if config_path.is_file() else None
        write_atomically(config_path, _config(settings, routings))
        code, output = _exec(container, ["nginx", "-t", "-q"])
        if code != 0:
            if previous is not None:
                write_atomically(config_path, previous)
            raise DeployError(f"nginx refused the new routing (the previous one stays): {output}")
        before = worker_pids(container)
        started = time.monotonic()
        code, output = _exec(container, ["nginx", "-s", "reload"])
        if code != 0:
            raise DeployError(f"`nginx -s reload` failed in {container.name}: {output}")
        reloaded = _wait_for_new_workers(container, before, deadline=started + settings.drain_timeout)
        reload_seconds = time.monotonic() - started
        if not reloaded:
            raise DeployError(
                f"nginx in {container.name} did not start new workers within {settings.drain_timeout:g}s of the "
                f"reload:\n{logs_tail(container)}"
            )
        write_atomically(routing_path(settings, routing.model_name), routing.to_json() + "\n")
        legacy = _legacy_routing(settings)
        if legacy is not None and legacy.model_name == routing.model_name:
            (settings.proxy_dir / LEGACY_ROUTING_FILE).unlink()
    drained = True
    if drain:
        drained = _wait_until_gone(container, before, deadline=started + settings.drain_timeout)
    return Applied(
        routing=routing,
        reload_seconds=reload_seconds,
        drain_seconds=time.monotonic() - started,
        drained=drained,
        old_workers=len(before),
    )


def _wait_for_new_workers(container: Container, before: set[str], deadline: float) -> bool:
    while True:
        if worker_pids(container) - before:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)


def _wait_until_gone(container: Container, old: set[str], deadline: float) -> bool:
    while True:
        if not worker_pids(container) & old:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
