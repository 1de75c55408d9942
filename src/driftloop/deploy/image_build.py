"""Build the serving image of a model version through the Docker engine, streaming the build log."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

from driftloop.core import lineage
from driftloop.deploy.engine import docker_client
from driftloop.deploy.image_context import image_labels, serving_image_tag, stage_build_context
from driftloop.errors import DeployError, RegistryError
from driftloop.io.bundle import ModelInfo
from driftloop.io.registry import ModelRegistry
from driftloop.settings import Settings

LOG_TAIL_LINES = 30
# Index settings reach pip inside the build only when set here, and only as URLs the build can reach.
PIP_BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")

OnLog = Callable[[str], None]


@dataclass(frozen=True)
class BuiltImage:
    id: str  # sha256:...
    tag: str
    size_bytes: int
    seconds: float


@dataclass(frozen=True)
class VersionImage:
    """The image built for a registered version: what ``build-image`` prints and the flow's artifact shows."""

    model_name: str
    version: str
    image: BuiltImage
    labels: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _pip_build_args() -> dict[str, str]:
    return {
        name: value
        for name in PIP_BUILD_ARGS
        if (value := os.environ.get(name, "")).startswith(("http://", "https://"))
    }


def _log_lines(chunks: Iterable[dict[str, Any]], on_log: OnLog, tail: deque[str]) -> str | None:
    """Pass each build log line to ``on_log``; return the built image's id (from the ``aux`` record).

    Raises:
        DeployError: The engine reported an error (a failing step): the message ends with the log's tail.
    """
    image_id: str | None = None
    error: str | None = None
    # Read to the end even after an error record: a response left half-read keeps its socket open.
    for chunk in chunks:
        if error is not None:
            continue
        if "error" in chunk:
            error = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
            continue
        text = chunk.get("stream") or chunk.get("status")
        if text:
            for line in str(text).splitlines():
                if line.strip():
                    tail.append(line)
                    on_log(line)
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
    if error is not None:
        raise DeployError(error)
    return image_id


def build_serving_image(
    client: docker.DockerClient,
    context_dir: Path,
    tag: str,
    labels: dict[str, str],
    network: str,
    on_log: OnLog,
    *,
    nocache: bool = False,
) -> BuiltImage:
    """Build ``context_dir`` (a staged context) as ``tag``, each log line passed to ``on_log`` as it comes.

    Never pulls (the base image must be local). Intermediate containers are removed even when a step fails.
    ``labels`` are applied after the last layer, so they never invalidate the layer cache.

    Raises:
        DeployError: The build failed (the message names the step's error and ends with the log's tail),
            or the engine went away.
    """
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    try:
        stream = client.api.build(
            path=str(context_dir),
            tag=tag,
            labels=labels,
            network_mode=network,
            buildargs=_pip_build_args(),
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            decode=True,
        )
        image_id = _log_lines(stream, on_log, tail)
        image = client.images.get(image_id or tag)
    except DeployError as error:
        log = "\n".join(f"  {line}" for line in tail)
        raise DeployError(f"building image {tag} failed: {error}\nlast lines of the build log:\n{log}") from None
    except (DockerException, RequestException) as error:
        raise DeployError(f"building image {tag} failed: the Docker engine said: {error}") from None
    return BuiltImage(
        id=str(image.id),
        tag=tag,
        size_bytes=int(image.attrs.get("Size", 0)),
        seconds=time.monotonic() - started,
    )


def build_image_for_version(
    settings: Settings,
    version: str | None,
    on_log: OnLog,
    *,
    client: docker.DockerClient | None = None,
) -> VersionImage:
    """Build the serving image of ``version`` (None: the champion) and record it on the version.

    Downloads the version's model directory, bakes it with its lineage into ``<prefix>/<model>-serving:v<N>``,
    then sets the version's ``driftloop.image_id`` and ``driftloop.image_tag`` tags.

    Raises:
        RegistryError: No such version, or no champion when ``version`` is None.
        DeployError: No Docker engine, a model file is missing, or the build failed.
    """
    registry = ModelRegistry(settings.model_name, settings.tracking_uri)
    if version is None:
        champion = registry.champion()
        if champion is None:
            raise RegistryError(f"model {settings.model_name!r} has no champion: name the version to build")
        version = str(champion.version)
    registered = registry.get_version(version)
    tags = dict(registered.tags)
    info = dataclasses.replace(
        ModelInfo.from_tags(settings.model_name, str(version), None, registered.run_id or None, tags),
        source="image",
    )
    tag = serving_image_tag(settings.image_prefix, settings.model_name, str(version))
    labels = image_labels(info, tags.get(lineage.GIT_COMMIT))
    engine = client or docker_client()  # before the download: no engine, no point fetching the model
    try:
        with tempfile.TemporaryDirectory(prefix="driftloop-image-") as tmp:
            model_dir = registry.download_model_dir(str(version), Path(tmp) / "download")
            context = stage_build_context(model_dir, info, Path(tmp) / "context")
            built = build_serving_image(engine, context, tag, labels, settings.docker_network, on_log)
    finally:
        if client is None:
            engine.close()
    registry.set_version_tags(str(version), {lineage.IMAGE_ID: built.id, lineage.IMAGE_TAG: built.tag})
    return VersionImage(model_name=settings.model_name, version=str(version), image=built, labels=labels)


def image_for_version(
    settings: Settings, version: str, *, client: docker.DockerClient | None = None
) -> VersionImage | None:
    """The image already built for ``version``, if the engine still has it under the id the version records."""
    registered = ModelRegistry(settings.model_name, settings.tracking_uri).get_version(version)
    image_id, tag = registered.tags.get(lineage.IMAGE_ID), registered.tags.get(lineage.IMAGE_TAG)
    if not image_id or not tag:
        return None
    engine = client or docker_client()
    try:
        image = engine.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    except (DockerException, RequestException) as error:
        raise DeployError(f"cannot inspect image {tag}: the Docker engine said: {error}") from None
    finally:
        if client is None:
            engine.close()
    if image.id != image_id:
        return None  # the tag was rebuilt or reused by hand since: build again rather than trust it
    labels = {key: value for key, value in (image.labels or {}).items() if key.startswith(("org.", "driftloop."))}
    built = BuiltImage(id=str(image.id), tag=tag, size_bytes=int(image.attrs.get("Size", 0)), seconds=0.0)
    return VersionImage(model_name=settings.model_name, version=str(version), image=built, labels=labels)
