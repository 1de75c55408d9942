"""The blue and green serving containers: start a candidate, wait until it is ready, smoke-test it, stop it.

Each slot listens on 127.0.0.1:<port> (host networking) and is named ``<prefix>-<model>-<slot>``. A model's two
ports are the ones the proxy gave it at its first rollout (``proxy.admit``: ``settings.slot_ports`` for the
first model, the next free pair for each other one).

Without ``settings.prediction_log_url`` a slot logs predictions to SQLite inside its own container, which the
drift check cannot read and which goes with the container: drift monitoring of slots needs a shared log
(PostgreSQL, as the compose stack sets).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from driftloop.core import lineage
from driftloop.core.parity import compare_with_recording
from driftloop.deploy.image_context import MODEL_NAME_LABEL, MODEL_VERSION_LABEL
from driftloop.deploy.proxy import logs_tail
from driftloop.deploy.routing import SLOTS, SlotName, SlotRoute
from driftloop.errors import DeployError, SlotFailed
from driftloop.settings import Settings

ROLE = "serving-slot"
MANAGED_LABEL = "driftloop.managed"
ROLE_LABEL = "driftloop.role"
SLOT_LABEL = "driftloop.slot"
PROXY_LABEL = "driftloop.proxy"
STOP_TIMEOUT = 15  # uvicorn finishes requests in flight for up to 10 s (serving/__main__.py)
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class SmokeResult:
    rows: int
    max_abs_diff: float
    seconds: float


# The serving image's user and writable home (deployments/serving/Dockerfile): everything else is read-only.
SLOT_UID = 10001
SLOT_HOME = "/var/lib/driftloop"
HARDENING: dict[str, Any] = {
    "read_only": True,
    "tmpfs": {SLOT_HOME: f"uid={SLOT_UID},gid={SLOT_UID},mode=0700", "/tmp": "mode=1777"},  # noqa: S108 (in the container)
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "mem_limit": "1g",
}


DEFAULT_NAME_PREFIX = "driftloop"


def slot_container_name(model_name: str, slot: SlotName, prefix: str = DEFAULT_NAME_PREFIX) -> str:
    return f"{prefix}-{model_name}-{slot}"


@dataclass
class Slots:
    """The two slots of ``settings.model_name`` on one engine, on ``ports`` (default ``settings.slot_ports``).

    ``name_prefix`` and ``labels`` exist for tests: unique container names, and labels their cleanup finds.
    """

    settings: Settings
    client: docker.DockerClient
    name_prefix: str = DEFAULT_NAME_PREFIX
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, int] | None = None

    def port(self, slot: SlotName) -> int:
        return (self.ports or self.settings.slot_ports)[SLOTS.index(slot)]

    def address(self, slot: SlotName) -> str:
        return f"127.0.0.1:{self.port(slot)}"

    def url(self, slot: SlotName) -> str:
        return f"http://{self.address(slot)}"

    def container_name(self, slot: SlotName) -> str:
        return slot_container_name(self.settings.model_name, slot, self.name_prefix)

    def find(self, slot: SlotName) -> Container | None:
        try:
            return self.client.containers.get(self.container_name(slot))
        except NotFound:
            return None

    def route(self, slot: SlotName, version: str | None, image: str | None, weight: int = 0) -> SlotRoute:
        return SlotRoute(slot, self.address(slot), weight, version, image, self.container_name(slot))

    def environment(self, slot: SlotName) -> dict[str, str]:
        s = self.settings
        env = {
            "DRIFTLOOP_SERVE_PORT": str(self.port(slot)),
            "DRIFTLOOP_MAX_BATCH_ROWS": str(s.max_batch_rows),
            "DRIFTLOOP_MAX_BODY_BYTES": str(s.max_body_bytes),
            "DRIFTLOOP_HEADER_TIMEOUT": str(s.header_timeout),
            "DRIFTLOOP_BODY_TIMEOUT": str(s.body_timeout),
            "DRIFTLOOP_MAX_CONNECTIONS": str(s.max_connections),
            "DRIFTLOOP_UNKNOWN_CATEGORIES": s.unknown_categories,
            "DRIFTLOOP_PREDICTION_LOG": str(s.prediction_log).lower(),
        }
        if s.docker_network == "host":
            env["DRIFTLOOP_SERVE_HOST"] = "127.0.0.1"  # only nginx (and Prometheus) reach it, on this host
        env["DRIFTLOOP_BEHIND_PROXY"] = "true"  # nginx listens beyond this host: labels need the token
        if s.feedback_token is not None:
            env["DRIFTLOOP_FEEDBACK_TOKEN"] = s.feedback_token.get_secret_value()
        if s.prediction_log_url:
            env["DRIFTLOOP_PREDICTION_LOG_URL"] = s.prediction_log_url
        if s.redis_url:
            env["DRIFTLOOP_REDIS_URL"] = s.redis_url
        return env

    def start(self, slot: SlotName, image: str, version: str) -> Container:
        """Run ``image`` on ``slot``, replacing whatever container of that name is left (never one serving).

        Raises:
            DeployError: The image is not local, or something else listens on the slot's port.
        """
        leftover = self.find(slot)
        if leftover is not None:
            leftover.remove(force=True)
        port = self.port(slot)
        if port_in_use(port):
            raise DeployError(
                f"slot {slot} of {self.settings.model_name}: port {port} is taken by another process; free it "
                f"(each model's slot ports are in {self.settings.proxy_dir / 'models.json'})"
            )
        labels = {
            MANAGED_LABEL: "true",
            ROLE_LABEL: ROLE,
            SLOT_LABEL: slot,
            PROXY_LABEL: self.settings.proxy_container,
            MODEL_NAME_LABEL: self.settings.model_name,
            MODEL_VERSION_LABEL: str(version),
            **self.labels,
        }
        try:
            container = self.client.containers.create(  # create + start: run() would pull a missing image
                image,
                name=self.container_name(slot),
                network_mode=self.settings.docker_network,
                environment=self.environment(slot),
                labels=labels,
                **HARDENING,
            )
            container.start()
            return container
        except ImageNotFound:
            raise DeployError(
                f"image {image!r} is not in the local engine: build it (`driftloop build-image`)"
            ) from None
        except APIError as error:
            raise DeployError(f"cannot start slot {slot} from {image}: {error.explanation or error}") from None

    def wait_ready(self, slot: SlotName, container: Container, version: str, timeout: float) -> float:
        """Seconds until the slot's ``/ready`` says 200 for ``version``.

        Raises:
            SlotFailed: ``crashed`` as soon as the container exits, ``not_ready`` after ``timeout`` (with the
                last reason ``/ready`` gave and the container's last log lines).
        """
        started = time.monotonic()
        last = "no answer"
        with httpx.Client(timeout=2) as http:
            while True:
                container.reload()
                if container.status in ("exited", "dead"):
                    code = container.attrs.get("State", {}).get("ExitCode")
                    raise SlotFailed(
                        "crashed",
                        f"slot {slot} ({container.name}) exited with code {code} before it was ready:\n"
                        f"{logs_tail(container)}",
                    )
                not_ready = self._not_ready(http, slot, version)
                if not_ready is None:
                    return time.monotonic() - started
                last = not_ready
                if time.monotonic() - started > timeout:
                    raise SlotFailed(
                        "not_ready",
                        f"slot {slot} ({container.name}) was not ready after {timeout:g}s; /ready said: {last}\n"
                        f"{logs_tail(container)}",
                    )
                time.sleep(POLL_SECONDS)

    def _not_ready(self, http: httpx.Client, slot: SlotName, version: str) -> str | None:
        """What the slot's ``/ready`` says against serving ``version`` now; None when it answers 200 for it."""
        try:
            answer = http.get(self.url(slot) + "/ready")
            if answer.status_code != 200:
                return f"{answer.status_code}: {answer.json().get('reason', answer.text)}"
            served = str(answer.json().get("model_version"))
        except (httpx.HTTPError, ValueError) as error:
            return f"no answer ({type(error).__name__})"
        return None if served == str(version) else f"ready, but serving version {served} instead of {version}"

    def smoke_test(self, slot: SlotName, selfcheck: Mapping[str, Any]) -> SmokeResult:
        """POST the registry's self-check sample to the slot; its outputs must match the recorded ones.

        Raises:
            SlotFailed: ``smoke_failed`` with what differed (or what the slot answered instead).
        """
        started = time.monotonic()
        try:
            records = list(selfcheck["records"])
        except (KeyError, TypeError) as error:
            raise DeployError(f"the registry's self-check sample is unreadable: {error!r}") from None
        try:
            answer = httpx.post(self.url(slot) + "/predict/batch", json={"instances": records}, timeout=30)
        except httpx.HTTPError as error:
            raise SlotFailed("smoke_failed", f"slot {slot}: the smoke test request failed: {error}") from None
        if answer.status_code != 200:
            raise SlotFailed(
                "smoke_failed", f"slot {slot}: the smoke test got {answer.status_code}: {answer.text[:500]}"
            )
        body = answer.json()
        try:
            report = compare_with_recording(selfcheck, body.get("predictions"), body.get("probabilities"))
        except ValueError as error:
            raise DeployError(f"the registry's self-check sample is unreadable: {error}") from None
        if not report.passed:
            raise SlotFailed("smoke_failed", f"slot {slot}: {report.mismatch('those recorded at registration')}")
        return SmokeResult(rows=len(records), max_abs_diff=report.max_abs_diff, seconds=time.monotonic() - started)

    def stop(self, slot: SlotName) -> bool:
        """Stop (gracefully) and remove the slot's container; False when there was none."""
        container = self.find(slot)
        if container is None:
            return False
        try:
            container.stop(timeout=STOP_TIMEOUT)
            container.remove(force=True)
        except NotFound:
            return False
        except DockerException as error:
            raise DeployError(f"cannot stop slot {slot} ({container.name}): {error}") from None
        return True

    def keep_running(self, slot: SlotName) -> None:
        """Once a slot serves, the engine restarts it if it dies (a candidate gets no restarts: it must not crash)."""
        container = self.find(slot)
        if container is not None:
            # types-docker's _RestartPolicy omits "unless-stopped", a restart policy the engine takes
            container.update(restart_policy={"Name": "unless-stopped"})  # type: ignore[arg-type]

    def is_running(self, slot: SlotName) -> bool:
        container = self.find(slot)
        return container is not None and container.status == "running"

    def serving_image_id(self, slot: SlotName, image: str, version: str) -> str | None:
        """The id of the image ``image`` names now, if the slot's container runs it and is ready for ``version``.

        An image built again under the same tag with other contents is another image: its container would be
        replaced. Built again from the same contents, it keeps its id (Docker's build cache).
        """
        container = self.find(slot)
        if container is None or container.status != "running":
            return None
        try:
            wanted = self.client.images.get(image).id
        except DockerException:
            return None
        if wanted is None or container.attrs.get("Image") != wanted:
            return None
        with httpx.Client(timeout=2) as http:
            return wanted if self._not_ready(http, slot, version) is None else None


def registry_selfcheck(settings: Settings, version: str) -> dict[str, Any]:
    """The self-check sample stored with ``version`` in the registry (not the image's copy)."""
    from driftloop.io.registry import ModelRegistry, locate_model_file

    registry = ModelRegistry(settings.model_name, settings.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="driftloop-smoke-") as tmp:
        model_dir = registry.download_model_dir(version, Path(tmp))
        selfcheck: dict[str, Any] = json.loads(locate_model_file(model_dir, lineage.SELFCHECK_FILE).read_text())
    return selfcheck


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
