"""ship_model: build the version's serving image → roll it out behind nginx (blue-green or canary).

The train flow calls this after a promotion when ``DRIFTLOOP_DEPLOY=docker``; ``driftloop build-image`` and
``driftloop rollout`` run the same steps by hand. The champion alias follows the outcome: a version whose image
cannot be built, or whose rollout is rolled back, does not keep it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prefect import flow
from prefect.runtime import flow_run

from driftloop.errors import RegistryError, RolloutRolledBack
from driftloop.settings import RolloutStrategy, Settings, get_settings
from tasks.deploy import admit_version, build_image, check_proxy, restore_champion, roll_out
from tasks.registry import find_champion

if TYPE_CHECKING:
    from driftloop.deploy.image_build import VersionImage
    from driftloop.deploy.rollout import RolloutResult


@dataclass(frozen=True)
class ShipOutcome:
    image: VersionImage
    rollout: RolloutResult


@flow(name="build-image")
def build_model_image(version: str | None = None, model_name: str | None = None) -> VersionImage:
    """Build (always anew) the serving image of a version (default: the champion) and record it on the version."""
    settings = _settings(model_name)
    return build_image(settings, version or _champion(settings))


@flow(name="ship-model")
def ship_model(
    version: str | None = None,
    model_name: str | None = None,
    strategy: RolloutStrategy | None = None,
    rebuild: bool = False,
    canary_steps: list[int] | None = None,
    canary_bake_seconds: float | None = None,
    reason: str | None = None,
    requested_by: str | None = None,
) -> ShipOutcome:
    """Put a version (default: the champion) into service: its image (built unless it exists), then the rollout.

    Args:
        version: The registered version to ship; default: the champion.
        model_name: Registered model name; default: settings.
        strategy: blue-green or canary; default: settings (``DRIFTLOOP_ROLLOUT_STRATEGY``).
        rebuild: Build the image even when the version already has one in the engine.
        canary_steps: Candidate traffic % at each canary step, ending at 100; default: settings (10, 50, 100).
        canary_bake_seconds: Watch time at each canary step; default: settings.
        reason: Why this version is shipped, kept in the decision record and the alias history; required for a
            version its promotion gate refused, unless it is the champion already.
        requested_by: Who asked for this run, named in the alias history beside the flow run (the CLI passes
            ``user@host via driftloop rollout``); default: the flow run alone.

    Raises:
        RolloutRolledBack: The candidate failed (not ready, smoke test, canary alarm) and was rolled back.
        DeployError: No Docker engine, a failed build, or a rollout refused before it began (no proxy, a lock
            held too long, a version its gate refused and no reason). On any such failure the alias goes back if
            it had moved to this version.
    """
    settings = _settings(model_name, canary_steps, canary_bake_seconds)
    version = version or _champion(settings)
    run = f"prefect flow run {flow_run.flow_name}/{flow_run.name} ({flow_run.id})"
    actor = f"{requested_by} ({run})" if requested_by else run
    admit_version(settings, version, reason)  # nothing built, nothing moved for a version refused here
    # Each failure below leaves the version without traffic: the champion alias does not stay on it.
    with _alias_given_back(settings, version, actor, f"v{version} could not be rolled out"):
        check_proxy(settings)  # before the build, which a proxy that cannot start would waste
    with _alias_given_back(settings, version, actor, f"no serving image for v{version}"):
        image = build_image(settings, version, reuse=not rebuild)
    # Refused before any traffic moved: no engine, no proxy, registry unreachable.
    with _alias_given_back(settings, version, actor, f"v{version} could not be rolled out"):
        result = roll_out(settings, version, image.image.tag, strategy, actor, reason)
    if not result.ok:
        raise RolloutRolledBack(result)
    return ShipOutcome(image, result)


@contextmanager
def _alias_given_back(settings: Settings, version: str, actor: str, why: str) -> Iterator[None]:
    """On a failure inside, the champion alias leaves ``version`` if it holds it (``restore_champion``), then raise."""
    try:
        yield
    except Exception as error:
        restore_champion(settings, version, f"{why}: {error}", actor)
        raise


def _settings(
    model_name: str | None = None, canary_steps: list[int] | None = None, canary_bake_seconds: float | None = None
) -> Settings:
    """The process settings with this run's parameters; validated like the environment would be."""
    overrides = {
        name: value
        for name, value in {
            "model_name": model_name,
            "canary_steps": tuple(canary_steps) if canary_steps else None,
            "canary_bake_seconds": canary_bake_seconds,
        }.items()
        if value is not None
    }
    settings = get_settings()
    return Settings.model_validate({**settings.model_dump(), **overrides}) if overrides else settings


def _champion(settings: Settings) -> str:
    champion = find_champion(settings.model_name, settings.tracking_uri)
    if champion is None:
        raise RegistryError(f"model {settings.model_name!r} has no champion: name the version")
    return champion.version
