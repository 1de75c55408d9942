"""The nginx image the rollout tests put in front of the serving slots: a local image, built here if missing."""

from __future__ import annotations

import os

import docker
import pytest
from docker.errors import ImageNotFound

from tests.support.docker_engine import require_base_image
from tests.support.host import PROJECT_DIR

PROXY_IMAGE = os.environ.get("DRIFTLOOP_PROXY_IMAGE", "driftloop/nginx:local")
NGINX_SUBSTITUTE = PROJECT_DIR / "deployments" / "substitutes" / "nginx"


def ensure_proxy_image(client: docker.DockerClient) -> None:
    """``PROXY_IMAGE``, built from deployments/substitutes/nginx when it is the default and missing (never pulled)."""
    try:
        client.images.get(PROXY_IMAGE)
    except ImageNotFound:
        if PROXY_IMAGE != "driftloop/nginx:local":
            pytest.fail(f"DRIFTLOOP_PROXY_IMAGE={PROXY_IMAGE} is not a local image (nothing is pulled)")
        require_base_image(client)
        client.images.build(
            path=str(NGINX_SUBSTITUTE), tag=PROXY_IMAGE, rm=True, forcerm=True, pull=False, network_mode="host"
        )
