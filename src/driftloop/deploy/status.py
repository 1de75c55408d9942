"""What serves traffic: the proxy, the models behind it, and for one model each slot's container, state, ``/model``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import httpx
from docker.errors import DockerException

from driftloop.deploy import proxy
from driftloop.deploy.engine import docker_client
from driftloop.deploy.image_context import MODEL_VERSION_LABEL
from driftloop.deploy.routing import PROXY_HEALTH, SLOTS, Routing, SlotName
from driftloop.deploy.slots import Slots
from driftloop.settings import Settings


@dataclass(frozen=True)
class ProxyStatus:
    container: str
    state: str  # running, exited, ... or "absent"
    image: str | None
    url: str
    answers: bool
    routing_updated_at: str | None  # this model's routing
    default_model: str | None  # on the unnamed routes
    models: dict[str, str | None]  # every model routed behind the proxy → the version with most traffic


@dataclass(frozen=True)
class SlotStatus:
    slot: SlotName
    address: str
    weight: int
    container: str
    state: str  # running, exited, ... or "absent"
    health: str | None  # the image's HEALTHCHECK: starting, healthy, unhealthy
    image: str | None
    version: str | None  # the container's label (what it was started with)
    model: dict[str, Any] | None  # what its /model answers now
    detail: str = ""


@dataclass(frozen=True)
class DeploymentStatus:
    model_name: str
    proxy: ProxyStatus
    slots: tuple[SlotStatus, ...]

    @property
    def serving(self) -> list[SlotStatus]:
        return [slot for slot in self.slots if slot.weight > 0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        p = self.proxy
        lines = [
            f"proxy  {p.container}  {p.state}  {p.image or '-'}  {p.url}  "
            f"{'answers' if p.answers else 'NOT ANSWERING'}",
            f"models behind it: {_models_line(p.models, p.default_model)}",
            "",
            f"{self.model_name} ({p.url}{_path(self.model_name, p.default_model)}): routing updated "
            f"{p.routing_updated_at or 'never'}",
            f"{'slot':<6} {'weight':>6}  {'version':<8} {'state':<10} {'health':<10} {'address':<16} image",
        ]
        for s in self.slots:
            served = s.model.get("version") if s.model else None
            version = s.version or "-"
            if served is not None and str(served) != version:
                version = f"{version}→{served}"
            lines.append(
                f"{s.slot:<6} {s.weight:>5}%  {version:<8} {s.state:<10} {s.health or '-':<10} "
                f"{s.address:<16} {s.image or '-'}" + (f"  ({s.detail})" if s.detail else "")
            )
        return "\n".join(lines)


def deployment_status(settings: Settings, slots: Slots | None = None) -> DeploymentStatus:
    """Read the routing nginx loaded, inspect the proxy and the model's two slot containers, ask each ``/model``.

    The model is ``settings.model_name``; its slot ports are those the proxy gave it (``models.json``).

    Raises:
        DeployError: No Docker engine answers.
    """
    if slots is None:
        client = docker_client()
        try:
            return deployment_status(settings, Slots(settings, client))
        finally:
            client.close()
    models = proxy.read_models(settings)
    if slots.ports is None and settings.model_name in models.ports:
        slots = replace(slots, ports=models.ports[settings.model_name])
    routings = proxy.read_routings(settings)
    routing = routings.get(settings.model_name)
    container = proxy.find_proxy(slots.client, settings)
    url = f"http://127.0.0.1:{settings.proxy_port}"
    proxy_status = ProxyStatus(
        container=settings.proxy_container,
        state=container.status if container is not None else "absent",
        image=_image_name(container),
        url=url,
        answers=_answers(url + PROXY_HEALTH),
        routing_updated_at=routing.updated_at if routing else None,
        default_model=models.default,
        models={name: _primary_version(r) for name, r in sorted(routings.items())},
    )
    found = []
    for slot in SLOTS:
        route = routing.route(slot) if routing else None
        found.append(_slot_status(slots, slot, route.weight if route else 0))
    return DeploymentStatus(settings.model_name, proxy_status, tuple(found))


def _primary_version(routing: Routing) -> str | None:
    primary = routing.primary()
    return primary.version if primary is not None else None


def _models_line(models: dict[str, str | None], default: str | None) -> str:
    if not models:
        return "none yet"
    shown = [f"{name} v{version}" if version else f"{name} (nothing routed)" for name, version in models.items()]
    return ", ".join(shown) + (f"; {default} also on the unnamed routes" if default else "")


def _path(model: str, default: str | None) -> str:
    return "/predict" if model == default else f"/models/{model}/predict"


def _slot_status(slots: Slots, slot: SlotName, weight: int) -> SlotStatus:
    name = slots.container_name(slot)
    container = slots.find(slot)
    if container is None:
        detail = "receives traffic but has no container!" if weight else ""
        return SlotStatus(slot, slots.address(slot), weight, name, "absent", None, None, None, None, detail)
    health = (container.attrs.get("State", {}).get("Health") or {}).get("Status")
    model = None
    detail = ""
    if container.status == "running":
        try:
            answer = httpx.get(slots.url(slot) + "/model", timeout=2)
            model = answer.json() if answer.status_code == 200 else None
            detail = "" if model is not None else f"/model answered {answer.status_code}"
        except (httpx.HTTPError, ValueError) as error:
            detail = f"/model: {type(error).__name__}"
    labels = container.labels or {}
    return SlotStatus(
        slot=slot,
        address=slots.address(slot),
        weight=weight,
        container=name,
        state=container.status,
        health=health,
        image=_image_name(container),
        version=labels.get(MODEL_VERSION_LABEL),
        model=model,
        detail=detail,
    )


def _image_name(container: Any) -> str | None:
    if container is None:
        return None
    try:
        tags = container.image.tags
    except DockerException:
        tags = []
    return tags[0] if tags else str(container.attrs.get("Config", {}).get("Image") or "") or None


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
