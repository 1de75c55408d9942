"""Container tasks: a version's serving image, its rollout behind nginx, the alias given back if it cannot ship.

Or all of that handed to the ship deployment's own flow run (``ship_by_deployment``).
"""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING, Any, cast

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from driftloop.deploy.engine import docker_client
from driftloop.deploy.image_build import VersionImage, build_image_for_version, image_for_version
from driftloop.deploy.proxy import require_proxy_image
from driftloop.deploy.rollout import RolloutResult, Strategy, check_admissible, rollout
from driftloop.errors import RegistryError
from driftloop.events import ROLLOUT_ROLLED_BACK
from driftloop.io.prefect_events import emit
from driftloop.io.registry import ModelRegistry
from driftloop.settings import Settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

# The ship flow's own task limits (image build 1,800 s, rollout 3,600 s) plus time to wait for a worker.
SHIP_RUN_TIMEOUT_SECONDS = 7200


def ship_by_deployment(settings: Settings, version: str, actor: str) -> str:
    """Run the ship deployment (``settings.ship_deployment``) for ``version`` and wait for it; what it did, in one line.

    Its flow run is linked to the caller's. A failure is reported, not raised, as the in-process ship does, and
    the champion alias does not stay on a version that does not serve: a ship run that failed gave it back itself;
    one that could not be created, or crashed before it could, is made up for here (``restore_champion`` leaves
    an alias that already moved on alone). A run still going after ``SHIP_RUN_TIMEOUT_SECONDS`` may still ship.
    """
    deployment = settings.ship_deployment
    parameters = {"version": version, "model_name": settings.model_name}
    try:
        # Called from a (sync) flow, run_deployment runs synchronously: its result is the FlowRun, not a coroutine.
        run = cast("FlowRun", run_deployment(deployment, parameters=parameters, timeout=SHIP_RUN_TIMEOUT_SECONDS))
    except Exception as error:  # no such deployment, Prefect refused or unreachable: nothing will ship it
        reason = f"cannot run {deployment}: {type(error).__name__}: {error}"
        restore_champion(settings, version, reason, actor)
        return f"not shipped: {reason}"
    state = run.state
    if state is not None and state.is_completed():
        return f"v{version} shipped by flow run {run.name} of {deployment}"
    if state is None or not state.is_final():
        where = state.name if state is not None else "no state"
        return (
            f"not shipped yet: flow run {run.name} of {deployment} is still {where} after {SHIP_RUN_TIMEOUT_SECONDS}s"
        )
    reason = f"flow run {run.name} of {deployment} ended {state.name}: {state.message}"
    restore_champion(settings, version, reason, actor)
    return f"not shipped: {reason}"


@task(name="build-image", cache_policy=NO_CACHE, timeout_seconds=1800)
def build_image(settings: Settings, version: str, reuse: bool = False) -> VersionImage:
    """The version's serving image, its build log streamed to the run log; ``reuse`` keeps an existing one."""
    logger = get_run_logger()
    existing = image_for_version(settings, version) if reuse else None
    image = existing or build_image_for_version(settings, version, on_log=logger.info)
    verdict = "reused (already built)" if existing else f"built in {image.image.seconds:.1f}s"
    create_markdown_artifact(
        key="image-build",
        markdown=_image_markdown(image, verdict),
        description=f"serving image of {image.model_name} v{version}: {verdict}",
    )
    return image


@task(name="rollout", cache_policy=NO_CACHE, timeout_seconds=3600)
def roll_out(
    settings: Settings, version: str, image_tag: str, strategy: Strategy | None, actor: str, reason: str | None = None
) -> RolloutResult:
    """Blue-green or canary behind nginx; rolls back by itself. The decision record becomes an artifact."""
    logger = get_run_logger()
    result = rollout(
        settings,
        version,
        image_tag,
        strategy,
        emit=emit,
        actor=actor,
        on_step=lambda step: logger.info("%-22s %6.2fs  %s", step.name, step.seconds, step.detail),
        reason=reason,
    )
    create_markdown_artifact(
        key="rollout-decision",
        markdown=result.markdown(),
        description=f"rollout of v{version}: {result.outcome} ({result.reason})",
    )
    return result


@task(name="check-admissible", cache_policy=NO_CACHE, timeout_seconds=120)
def admit_version(settings: Settings, version: str, reason: str | None) -> None:
    """Refuse, before any image is built, a version that may not get traffic (``deploy.rollout.check_admissible``)."""
    check_admissible(settings, version, reason)


@task(name="check-proxy", cache_policy=NO_CACHE, timeout_seconds=120)
def check_proxy(settings: Settings) -> None:
    """Refuse, before an image is built, a rollout whose nginx proxy could not start (``proxy.require_proxy_image``)."""
    with closing(docker_client()) as client:
        require_proxy_image(client, settings)


@task(name="restore-champion", cache_policy=NO_CACHE, timeout_seconds=300)
def restore_champion(settings: Settings, version: str, reason: str, actor: str) -> str:
    """A version that never got an image must not hold the alias: move it back to the previous champion."""
    outcome = _restore(settings, version, reason, actor)
    create_markdown_artifact(
        key="rollout-decision",
        markdown=f"# v{version} not shipped\n\n- **why**: {reason}\n- **champion alias**: {outcome}\n",
        description=f"v{version} not shipped: {outcome}",
    )
    return outcome


def _restore(settings: Settings, version: str, reason: str, actor: str) -> str:
    registry = ModelRegistry(settings.model_name, settings.tracking_uri)
    champion = registry.champion()
    if champion is None or str(champion.version) != version:
        return f"unchanged ({'none' if champion is None else 'v' + str(champion.version)})"
    try:
        move = registry.rollback(reason=reason, actor=actor)
    except RegistryError as error:  # a first version: no earlier champion that could serve instead
        get_run_logger().warning("champion stays v%s: %s", version, error)
        return f"stays v{version}: no earlier champion to give it back to"
    payload = {"version": version, "outcome": "rolled_back", "reason": reason, "previous_version": move.to_version}
    emit(ROLLOUT_ROLLED_BACK, settings.model_name, payload)
    return f"moved back v{move.from_version} → v{move.to_version}"


def _image_markdown(image: VersionImage, verdict: str) -> str:
    built = image.image
    rows: list[tuple[str, Any]] = [
        ("image", f"`{built.tag}`"),
        ("id", f"`{built.id}`"),
        ("size", f"{built.size_bytes / 1e6:.0f} MB"),
        ("build", verdict),
        *((name, f"`{value}`") for name, value in sorted(image.labels.items())),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"# Serving image of {image.model_name} v{image.version}\n\n| | |\n|---|---|\n{table}\n"
