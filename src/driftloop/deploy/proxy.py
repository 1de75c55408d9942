"""The nginx container in front of the slots: start it, apply a routing (write, test, reload, drain).

The proxy directory (``settings.proxy_dir``) is bind-mounted as a directory on ``/etc/nginx/conf.d``, which the
official image's (and the substitute's) ``nginx.conf`` includes in its http block. It holds::

    driftloop.conf   the rendered routing (routing.render_nginx_config)
    routing.json     the routing nginx has loaded: what ``status`` and the next rollout read

Files are replaced with os.replace (a new inode): a single-file bind mount would keep showing the old one.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import docker
import httpx
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from driftloop.deploy.routing import PROXY_HEALTH, ProxyLimits, Routing, render_nginx_config
from driftloop.errors import DeployError
from driftloop.settings import Settings

CONFIG_FILE = "driftloop.conf"
ROUTING_FILE = "routing.json"
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


def read_routing(settings: Settings) -> Routing | None:
    """The routing nginx last loaded (``routing.json``), None before the first rollout."""
    path = settings.proxy_dir / ROUTING_FILE
    if not path.is_file():
        return None
    return Routing.from_json(path.read_text())


def limits(settings: Settings) -> ProxyLimits:
    # A little above the server's own limit, so the server answers 413 in its own shape, not nginx.
    return ProxyLimits(max_body_bytes=settings.max_body_bytes + 64 * 1024)


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


def ensure_proxy(client: docker.DockerClient, settings: Settings, labels: Mapping[str, str] | None = None) -> Container:
    """The running proxy container: started from ``settings.proxy_image`` (never pulled) if it is not running.

    Before the first rollout it serves only ``/proxy-health`` and 503 elsewhere.

    Raises:
        DeployError: The image is not local, the container mounts another directory, or nginx does not answer
            on ``settings.proxy_port`` in time (the message ends with its log).
    """
    proxy_dir = settings.proxy_dir
    if not (proxy_dir / CONFIG_FILE).is_file():
        routing = read_routing(settings) or Routing(settings.model_name)
        write_atomically(proxy_dir / CONFIG_FILE, render_nginx_config(routing, settings.proxy_port, limits(settings)))
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
                labels={**MANAGED, "driftloop.model.name": settings.model_name, **(labels or {})},
                # types-docker's _RestartPolicy omits "unless-stopped", a restart policy the engine takes
                restart_policy={"Name": "unless-stopped"},  # type: ignore[arg-type]
            )
            container.start()
    except ImageNotFound:
        raise DeployError(
            f"proxy image {settings.proxy_image!r} is not in the local engine and is never pulled: build the "
            "substitute (docker build --network host -t driftloop/nginx:local deployments/substitutes/nginx) and "
            "set DRIFTLOOP_PROXY_IMAGE=driftloop/nginx:local, or `docker pull` the image where a registry is reachable"
        ) from None
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
    """Route traffic as ``routing`` says: write the config, ``nginx -t``, reload, wait for the old workers.

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
    config_path = settings.proxy_dir / CONFIG_FILE
    previous = config_path.read_text() if config_path.is_file() else None
    write_atomically(config_path, render_nginx_config(routing, settings.proxy_port, limits(settings)))
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
    write_atomically(settings.proxy_dir / ROUTING_FILE, routing.to_json() + "\n")
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
