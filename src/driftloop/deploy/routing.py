"""Which slot of each model gets which share of traffic, as values: JSON for ``status``, one nginx config.

Pure: no files, no Docker. ``proxy.apply`` writes what this renders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from driftloop.core.lineage import MODEL_NAME
from driftloop.errors import DeployError, InputError

SlotName = Literal["blue", "green"]
SLOTS: tuple[SlotName, SlotName] = ("blue", "green")
UPSTREAM = "driftloop_slots"
PROXY_HEALTH = "/proxy-health"
# uvicorn closes idle keep-alive connections after 5 s: nginx must drop its own idle upstream connections first,
# or a request can go out on a connection the slot is closing.
UPSTREAM_KEEPALIVE_TIMEOUT = "4s"


@dataclass(frozen=True)
class SlotRoute:
    """One slot as the proxy sees it: where it listens, its share of traffic, and what it serves."""

    slot: SlotName
    address: str
    weight: int = 0
    version: str | None = None
    image: str | None = None
    container: str | None = None

    def __post_init__(self) -> None:
        if self.slot not in SLOTS:
            raise DeployError(f"unknown slot {self.slot!r}: slots are {', '.join(SLOTS)}")
        if not 0 <= self.weight <= 100:
            raise DeployError(f"slot {self.slot}: weight {self.weight} is outside 0..100")
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit() or any(c in self.address for c in " ;{}#"):
            raise DeployError(f"slot {self.slot}: address {self.address!r} is not host:port")


@dataclass(frozen=True)
class Routing:
    """The traffic split of one model's two slots. Weights are percentages summing to 100, or all 0 (nothing)."""

    model_name: str
    slots: tuple[SlotRoute, ...] = field(default_factory=tuple)
    updated_at: str | None = None

    def __post_init__(self) -> None:
        if not MODEL_NAME.match(self.model_name):
            raise DeployError(f"model name {self.model_name!r} may only contain letters, digits, '_', '.' and '-'")
        names = [route.slot for route in self.slots]
        if len(set(names)) != len(names):
            raise DeployError(f"routing lists a slot twice: {names}")
        total = sum(route.weight for route in self.slots)
        if total not in (0, 100):
            raise DeployError(f"routing weights sum to {total}, not 100: {self.weights()}")

    def route(self, slot: SlotName) -> SlotRoute | None:
        return next((route for route in self.slots if route.slot == slot), None)

    def weights(self) -> dict[str, int]:
        return {route.slot: route.weight for route in self.slots}

    def live(self) -> list[SlotRoute]:
        """The slots that receive traffic (weight > 0)."""
        return [route for route in self.slots if route.weight > 0]

    def primary(self) -> SlotRoute | None:
        """The slot with the largest share (blue on a tie); None when nothing receives traffic."""
        live = self.live()
        return max(live, key=lambda route: (route.weight, route.slot == "blue")) if live else None

    def with_slot(self, route: SlotRoute) -> Routing:
        """This routing with ``route`` added, or replacing the slot of the same name."""
        others = tuple(r for r in self.slots if r.slot != route.slot)
        slots = tuple(sorted((*others, route), key=lambda r: SLOTS.index(r.slot)))
        return Routing(self.model_name, slots, self.updated_at)

    def with_weights(self, weights: dict[SlotName, int]) -> Routing:
        """The same slots with new weights; a slot not named gets 0, and the weights must sum to 100 (or 0)."""
        unknown = set(weights) - {route.slot for route in self.slots}
        if unknown:
            raise DeployError(f"no route for slot(s) {sorted(unknown)}; known: {[r.slot for r in self.slots]}")
        return Routing(
            self.model_name,
            tuple(replace(route, weight=weights.get(route.slot, 0)) for route in self.slots),
            self.updated_at,
        )

    def stamped(self, at: str) -> Routing:
        return replace(self, updated_at=at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Routing:
        try:
            raw: dict[str, Any] = json.loads(text)
            slots = tuple(SlotRoute(**route) for route in raw.get("slots", ()))
            return cls(model_name=raw["model_name"], slots=slots, updated_at=raw.get("updated_at"))
        except (ValueError, TypeError, KeyError) as error:
            raise DeployError(f"unreadable routing: {error!r}") from None


def idle_slot(routing: Routing | None) -> SlotName:
    """The slot a candidate goes to: the one that gets no traffic (blue when nothing is routed yet)."""
    primary = routing.primary() if routing else None
    if primary is None:
        return "blue"
    return "green" if primary.slot == "blue" else "blue"


def other_slot(slot: SlotName) -> SlotName:
    return "green" if slot == "blue" else "blue"


@dataclass(frozen=True)
class ProxyLimits:
    """Seconds nginx waits on a slot and on a client, how long it may retry on the other slot, the largest body."""

    connect: float = 2.0
    send: float = 60.0
    read: float = 60.0
    retry_window: float = 10.0
    max_body_bytes: int = 16 * 1024 * 1024
    client_header: float = 10.0  # nginx's client_header_timeout: the whole header
    client_body: float = 30.0  # nginx's client_body_timeout: between two reads of the body


@dataclass(frozen=True)
class ProxyModels:
    """The models behind one proxy: which serves the unnamed routes, and each one's pair of slot ports.

    A model's ports are chosen at its first rollout and kept: its slots must come back where nginx sends them.
    """

    default: str | None = None
    ports: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def admit(self, model: str, preferred: tuple[int, int], in_use: Callable[[int], bool]) -> ProxyModels:
        """These models with ``model`` given ports (its own if it has them) and made the default if there is none.

        A new model takes ``preferred`` unless another model holds either port, else the next pair above every
        port held whose ports ``in_use`` says are free.
        """
        ports = dict(self.ports)
        if model not in ports:
            held = {port for pair in ports.values() for port in pair}
            if held.isdisjoint(preferred) and preferred[0] != preferred[1]:
                ports[model] = preferred
            else:
                ports[model] = _free_pair(max(held | set(preferred)) + 1, held, in_use)
        return ProxyModels(self.default or model, ports)

    def with_default(self, model: str) -> ProxyModels:
        return replace(self, default=model)

    def to_json(self) -> str:
        return json.dumps({"default": self.default, "ports": {m: list(p) for m, p in self.ports.items()}}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ProxyModels:
        try:
            raw: dict[str, Any] = json.loads(text)
            ports = {str(model): (int(pair[0]), int(pair[1])) for model, pair in raw.get("ports", {}).items()}
            default = raw.get("default")
            return cls(str(default) if default is not None else None, ports)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            raise DeployError(f"unreadable proxy models: {error!r}") from None


def _free_pair(start: int, held: set[int], in_use: Callable[[int], bool]) -> tuple[int, int]:
    port = start
    while port < 65535:
        pair = (port, port + 1)
        if held.isdisjoint(pair) and not in_use(pair[0]) and not in_use(pair[1]):
            return pair
        port += 1
    raise DeployError(f"no two free ports from {start} up for another model's slots: set DRIFTLOOP_SLOT_PORTS lower")


def render_nginx_config(
    routings: Sequence[Routing], listen_port: int, limits: ProxyLimits | None = None, *, default: str | None = None
) -> str:
    """The ``conf.d`` file (http context): one upstream per model of its live slots by weight, one server.

    Each model answers on ``/models/<name>/...`` and ``/v2/models/<name>/...`` (its slots serve those routes
    themselves); the unnamed routes go to ``default`` (the first routing when None), and any other model name
    gets a 404 listing the models here. A slot at weight 0 is left out of its upstream. A model with nothing live
    answers 503 naming it (an upstream with no server is not a valid nginx config).
    """
    limits = limits or ProxyLimits()
    if not 1 <= listen_port <= 65535:
        raise DeployError(f"proxy port {listen_port} is outside 1..65535")
    by_name = {routing.model_name: routing for routing in sorted(routings, key=lambda r: r.model_name)}
    if len(by_name) != len(routings):
        raise DeployError(f"a model is routed twice: {sorted(r.model_name for r in routings)}")
    default = default or (routings[0].model_name if routings else None)
    upstreams = {name: f"{UPSTREAM}_{i}" for i, name in enumerate(by_name) if by_name[name].live()}
    lines = [
        f"# Rendered by driftloop for {len(by_name)} model(s), default {default or 'none'}; `driftloop rollout` "
        "rewrites it: do not edit.",
        "",
        "# A client's X-Request-Id reaches the slot (and its prediction log); otherwise nginx makes one.",
        "map $http_x_request_id $driftloop_request_id {",
        '  "" $request_id;',
        "  default $http_x_request_id;",
        "}",
        "",
    ]
    for name, upstream in upstreams.items():
        routing = by_name[name]
        lines.append(f"# {name}: weights {json.dumps(routing.weights(), sort_keys=True)}, updated "
                     f"{routing.updated_at or 'never'}")  # fmt: skip
        lines.append(f"upstream {upstream} {{")
        for route in routing.live():
            lines.append(f"  # {route.slot}: version {route.version or '?'}, image {route.image or '?'}")
            # max_fails=0: never take a slot out on its own; the weights are exactly what the rollout set.
            lines.append(f"  server {route.address} weight={route.weight} max_fails=0;")
        lines += ["  keepalive 32;", f"  keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT};", "}", ""]
    lines += [
        "server {",
        f"  listen {listen_port};",
        "  server_name _;",
        f"  client_max_body_size {limits.max_body_bytes};",
        # nginx's own answer to a body over the limit is an HTML page (trial 18): the server's JSON instead.
        "  error_page 413 @body_too_large;",
        "  location @body_too_large {",
        "    default_type application/json;",
        f"    return 413 '{json.dumps(InputError.body_too_large(limits.max_body_bytes).detail())}';",
        "  }",
        f"  client_header_timeout {_duration(limits.client_header)};",
        f"  client_body_timeout {_duration(limits.client_body)};",
        f"  location = {PROXY_HEALTH} {{",
        "    access_log off;",
        "    default_type text/plain;",
        '    return 200 "ok\\n";',
        "  }",
    ]
    for name in by_name:
        for prefix in (f"/models/{name}", f"/v2/models/{name}"):
            for location in (f"= {prefix}", f"{prefix}/"):
                lines += [f"  location {location} {{", *_to_model(name, upstreams.get(name), limits), "  }"]
    # A name no model here has: answered by nginx, which knows every model (the default slot knows only its own).
    known = ", ".join(by_name) or "none yet"  # unquoted: the body sits in an nginx string in single quotes
    unknown = f"unknown model: the models behind this proxy are {known}"
    for prefix, body in (
        ("/models/", {"detail": unknown, "reason": "unknown_model"}),
        ("/v2/models/", {"error": unknown}),
    ):
        lines += [
            f"  location {prefix} {{",
            "    default_type application/json;",
            f"    return 404 '{json.dumps(body)}';",
            "  }",
        ]
    lines += ["  location / {", *_to_model(default, upstreams.get(default or ""), limits), "  }", "}", ""]
    return "\n".join(lines)


def _to_model(name: str | None, upstream: str | None, limits: ProxyLimits) -> list[str]:
    """A location's body: pass to the model's upstream, or 503 naming what is missing."""
    if upstream is None:
        missing = f"no version of model {name} is rolled out yet" if name else "no model version is rolled out yet"
        body = json.dumps({"detail": missing, "reason": "no_route"})
        return ["    default_type application/json;", f"    return 503 '{body}';"]
    return [
        f"    proxy_pass http://{upstream};",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-Id $driftloop_request_id;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"    proxy_connect_timeout {_duration(limits.connect)};",
        f"    proxy_send_timeout {_duration(limits.send)};",
        f"    proxy_read_timeout {_duration(limits.read)};",
        "    # A slot that refuses, drops or answers 502/503 costs no request: the other slot answers it.",
        "    # non_idempotent: every prediction endpoint is a POST, and repeating a prediction is safe.",
        "    proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
        "    proxy_next_upstream_tries 2;",
        f"    proxy_next_upstream_timeout {_duration(limits.retry_window)};",
    ]


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


__all__ = [
    "PROXY_HEALTH",
    "SLOTS",
    "ProxyLimits",
    "ProxyModels",
    "Routing",
    "SlotName",
    "SlotRoute",
    "idle_slot",
    "other_slot",
    "render_nginx_config",
]
