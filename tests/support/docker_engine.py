"""The Docker engine for tests: skip without one (fail in CI), and clean up every container a test run started.

    from tests.support.docker_engine import docker_engine, docker_run  # noqa: F401 (pytest fixtures)

    def test_something(docker_engine, docker_run):
        container = docker_engine.containers.run(..., labels=docker_run.labels(role="slot"))
        ...                       # docker_run removes it afterwards, even when the test fails

A fixture of a wider scope uses ``with labelled_run(client) as run:`` the same way.

Containers are found by two labels: ``driftloop.managed=true`` (every Docker object driftloop creates) and
``driftloop.test_run=<id>``, unique per fixture instance so parallel test sessions never remove each other's.
Without an engine the test is skipped, or fails when ``CI=true``: CI must not pass by silently skipping.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import docker
import pytest
from docker.errors import DockerException, ImageNotFound, NotFound

from driftloop.deploy.engine import docker_client
from driftloop.errors import DeployError

MANAGED_LABEL = "driftloop.managed"
TEST_RUN_LABEL = "driftloop.test_run"
BASE_IMAGE = "python:3.11-slim"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when running in CI (``CI=true``), where a Docker engine must answer."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"a Docker engine is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Docker engine not available: {reason}")


def require_docker() -> docker.DockerClient:
    """A client of a live engine, or skip / fail (CI) with the reason."""
    try:
        return docker_client()
    except DeployError as error:
        unavailable(str(error))


def require_base_image(client: docker.DockerClient, name: str = BASE_IMAGE) -> None:
    """Skip / fail (CI) unless ``name`` is a local image: builds never pull."""
    try:
        client.images.get(name)
    except ImageNotFound:
        unavailable(f"no local {name} image (build one with ../shared/ci/build-base-image.sh; nothing is pulled)")


def build_derived(client: docker.DockerClient, dockerfile: str, tag: str) -> str:
    """Build ``dockerfile`` (FROM a local image: nothing is pulled) as ``tag``; a test's faulty variant of an image."""
    client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True, pull=False, network_mode="host"
    )
    return tag


def remove_test_image(client: docker.DockerClient, reference: str) -> None:
    """Untag and delete one image a test built, keeping its parent layers.

    The parents are the build cache other tests build on at the same time (pytest -n): pruning them while a build
    uses one fails that build with "unknown parent image ID". An image already gone is ignored.
    """
    try:
        client.images.remove(reference, force=True, noprune=True)
    except (ImageNotFound, NotFound):
        return


def remove_test_containers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Force-remove every container labelled ``driftloop.managed=true`` and ``driftloop.test_run=<run_id>``.

    Returns the names removed. Containers already gone meanwhile are ignored.
    """
    filters = {"label": [f"{MANAGED_LABEL}=true", f"{TEST_RUN_LABEL}={run_id}"]}
    removed = []
    for container in client.containers.list(all=True, ignore_removed=True, filters=filters):
        try:
            container.remove(force=True)
        except NotFound:
            continue
        removed.append(container.name)
    return removed


@dataclass(frozen=True)
class DockerTestRun:
    """One test run's labels and name prefix; everything carrying the labels is removed at the end."""

    id: str
    client: docker.DockerClient

    def labels(self, **extra: str) -> dict[str, str]:
        """``driftloop.managed`` and ``driftloop.test_run`` plus ``extra`` (keys get the ``driftloop.`` prefix)."""
        return {MANAGED_LABEL: "true", TEST_RUN_LABEL: self.id, **{f"driftloop.{k}": v for k, v in extra.items()}}

    def name(self, what: str) -> str:
        """A container name unique to this run, e.g. ``dltest-1a2b3c4d-slot-blue``."""
        return f"dltest-{self.id}-{what}"

    def cleanup(self) -> list[str]:
        return remove_test_containers(self.client, self.id)


@contextmanager
def labelled_run(client: docker.DockerClient) -> Iterator[DockerTestRun]:
    """A fresh run id; on the way out every container labelled with it is removed, pass or fail."""
    run = DockerTestRun(id=uuid.uuid4().hex[:8], client=client)
    try:
        yield run
    finally:
        try:
            run.cleanup()
        except DockerException as error:  # the engine died mid-test: say so, do not mask the test's own error
            print(f"could not remove the containers of test run {run.id}: {error}")  # noqa: T201


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerClient]:
    """A client of the local engine for the whole session (skipped without one, failed in CI)."""
    client = require_docker()
    yield client
    client.close()


@pytest.fixture
def docker_run(docker_engine: docker.DockerClient) -> Iterator[DockerTestRun]:
    """Labels for this test's containers; they are all removed afterwards, pass or fail."""
    with labelled_run(docker_engine) as run:
        yield run
