"""Put a version's serving image into service behind nginx, blue-green or canary, rolling back on any failure.

Blue-green: candidate on the idle slot → ready → smoke test → switch 100% → drain → stop the old slot.
Canary: the same, then traffic in steps (``settings.canary_steps``), each baked for ``canary_bake_seconds`` while
both slots' ``/metrics`` are scraped directly and the window judged (``canary.judge``); the old slot stops last.
First rollout (nothing serving): start, ready, smoke, route 100%.

A candidate that crashes, never gets ready, fails the smoke test or trips an alarm is rolled back: the old slot
gets 100% again (applied and drained), the candidate is stopped, the champion alias goes back to the old slot's
version if it had moved to this one, ``driftloop.rollout.rolled_back`` is emitted. Every rollout writes a decision
record (markdown) under ``<home>/rollouts/``. No Prefect here: events go through the ``emit`` callable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from docker.errors import DockerException

from driftloop import events
from driftloop.core import lineage
from driftloop.deploy import proxy
from driftloop.deploy.canary import Judgement, Scrape, SoFar, Thresholds, judge_step, parse_metrics, window
from driftloop.deploy.engine import docker_client
from driftloop.deploy.routing import Routing, SlotName, SlotRoute, idle_slot, other_slot
from driftloop.deploy.slots import Slots, port_in_use, registry_selfcheck
from driftloop.errors import CanaryAlarm, DeployError, DriftloopError, PromotionRefused, SlotFailed
from driftloop.settings import RolloutStrategy, Settings

Strategy = RolloutStrategy
Outcome = Literal["completed", "unchanged", "rolled_back"]
_TITLES: dict[Outcome, str] = {
    "completed": "rolled out",
    "unchanged": "nothing to roll out",
    "rolled_back": "ROLLED BACK",
}
Emit = Callable[[str, str, Mapping[str, Any]], object]
STRATEGIES: tuple[Strategy, ...] = ("blue-green", "canary")
WATCH_SECONDS = 0.25
LOCK_WAIT_SECONDS = 900.0


@dataclass(frozen=True)
class Step:
    name: str
    at: float  # seconds since the rollout started, when the step ended
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class JudgedWindow:
    percent: int
    seconds: float
    candidate: str
    baseline: str
    alarm: str | None
    detail: str


@dataclass
class RolloutResult:
    """What a rollout did and decided; ``markdown()`` is the decision record the flow publishes."""

    model_name: str
    version: str
    image: str
    strategy: Strategy
    started_at: datetime
    outcome: Outcome = "completed"
    reason: str = ""
    slot: SlotName | None = None
    previous: SlotRoute | None = None
    steps: list[Step] = field(default_factory=list)
    windows: list[JudgedWindow] = field(default_factory=list)
    champion: str = ""
    event: str = ""
    seconds: float = 0.0
    record_path: Path | None = None
    routed: bool = False  # the proxy was told to send the candidate traffic (a rollback must re-route)
    given_reason: str = ""  # why the person or flow that asked for this rollout wanted it (``rollout(reason=...)``)
    dead_route: str = ""  # with nothing serving: the slot the proxy still routed to, its container not running
    overruled_gate: str = ""  # the version's promotion gate refused it for this; the given reason overruled it

    @property
    def ok(self) -> bool:
        return self.outcome != "rolled_back"

    @property
    def summary(self) -> str:
        """The reason's first line, without the colon that introduced the candidate's log tail if one follows."""
        first, _, tail = self.reason.partition("\n")
        return first.rstrip().removesuffix(":") if tail else first

    def markdown(self) -> str:
        title = _TITLES[self.outcome]
        old = (
            f"v{self.previous.version} on {self.previous.slot}"
            if self.previous
            else f"nothing: {self.dead_route} was routed, its container not running"
            if self.dead_route
            else "nothing (first rollout)"
        )
        lines = [
            f"# Rollout of {self.model_name} v{self.version}: {title}",
            "",
            f"- **verdict**: {self.outcome} ({self.strategy}) in {self.seconds:.2f}s",
            f"- **reason**: {self.summary}",
            f"- **image**: `{self.image}` on slot **{self.slot or '-'}**",
            f"- **was serving**: {old}",
            f"- **champion alias**: {self.champion or 'unchanged'}",
            f"- **event**: {self.event or 'none'}",
            f"- **started**: {self.started_at.isoformat(timespec='seconds')}",
            *([f"- **asked for because**: {self.given_reason}"] if self.given_reason else []),
            *(
                [f"- **gate overruled**: its promotion gate had refused it ({self.overruled_gate})"]
                if self.overruled_gate
                else []
            ),
            "",
            *_details(self.reason),
            "## Steps",
            "",
            "| # | step | ended at (s) | took (s) | detail |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {i} | {s.name} | {s.at:.2f} | {s.seconds:.2f} | {_cell(s.detail)} |"
            for i, s in enumerate(self.steps, 1)
        ]
        if self.windows:
            lines += [
                "",
                "## Windows judged",
                "",
                "| candidate % | seconds | candidate | old version in this step | verdict |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {w.percent} | {w.seconds:.1f} | {_cell(w.candidate)} | {_cell(w.baseline)} | "
                f"{_cell('ALARM: ' + w.alarm if w.alarm else w.detail.split(' (')[0])} |"
                for w in self.windows
            ]
        return "\n".join(lines) + "\n"

    def payload(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "image": self.image,
            "strategy": self.strategy,
            "outcome": self.outcome,
            "reason": self.summary,
            "detail": self.reason,
            "given_reason": self.given_reason or None,
            "gate_overruled": self.overruled_gate or None,
            "slot": self.slot,
            "previous_version": self.previous.version if self.previous else None,
            "seconds": round(self.seconds, 3),
            "record": str(self.record_path) if self.record_path else None,
        }


def _details(reason: str) -> list[str]:
    _, _, rest = reason.partition("\n")
    if not rest.strip():
        return []
    return ["## Details", "", "```", *(line.removeprefix("  ") for line in rest.splitlines()), "```", ""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class _Clock:
    def __init__(self, result: RolloutResult, on_step: Callable[[Step], None] | None) -> None:
        self._result = result
        self._on_step = on_step
        self.origin = time.monotonic()
        self._last = self.origin

    def step(self, name: str, detail: str = "") -> Step:
        now = time.monotonic()
        step = Step(name, now - self.origin, now - self._last, detail)
        self._last = now
        self._result.steps.append(step)
        if self._on_step is not None:
            self._on_step(step)
        return step

    def mark(self) -> None:
        """Start timing the next step now (time in between is not charged to it)."""
        self._last = time.monotonic()


def rollout(
    settings: Settings,
    version: str,
    image_tag: str,
    strategy: Strategy | None = None,
    *,
    emit: Emit | None = None,
    on_step: Callable[[Step], None] | None = None,
    actor: str | None = None,
    slots: Slots | None = None,
    reason: str | None = None,
) -> RolloutResult:
    """Roll ``image_tag`` (the serving image of ``version``) out behind the proxy; roll back on any failure.

    Args:
        settings: Thresholds, ports, proxy and registry to use.
        version: The registered version being rolled out.
        image_tag: Its serving image (``image_build.build_image_for_version``), in the local engine.
        strategy: ``blue-green`` or ``canary``; default ``settings.rollout_strategy``.
        emit: ``emit(event, model_name, payload)``, e.g. ``io.prefect_events.emit``; None emits nothing.
        on_step: called with each step as it ends (progress output).
        actor: who moves the champion alias (default ``user@host via driftloop rollout``).
        slots: the slots to use (tests pass one with a name prefix and labels); default: the engine's.
        reason: why this version is rolled out, kept in the record and the alias history; required for a version
            its promotion gate refused (unless it is the champion: someone overruled the gate already).

    Returns:
        The result, completed or rolled back, with its decision record written under ``<home>/rollouts/``.

    Raises:
        DeployError: Before anything changed: no engine, the proxy cannot start, another rollout holds the lock,
            an unknown strategy, a version whose ONNX parity did not pass, or one its gate refused and no reason.
        RegistryError: No such version.
    """
    strategy = strategy or settings.rollout_strategy
    if strategy not in STRATEGIES:
        raise DeployError(f"unknown rollout strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if actor is None:
        from driftloop.io.provenance import local_actor

        actor = local_actor("driftloop rollout")
    given_reason = (reason or "").strip()
    overruled = check_admissible(settings, version, given_reason) or ""
    own_client = slots is None
    slots = slots or Slots(settings, docker_client())
    try:
        return _rollout(settings, version, image_tag, strategy, slots, emit, on_step, actor, given_reason, overruled)
    finally:
        if own_client:
            slots.client.close()


class _Underway:
    """The rollouts running in this process.

    One cut short leaves traffic split and the alias unsettled: a process that has to end early (the CLI when the
    Prefect API is gone) interrupts them and waits for their rollback before it exits.
    """

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def any(self) -> bool:
        with self._changed:
            return self._count > 0

    def wait_until_none(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every rollout to end; whether they all did."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


UNDERWAY = _Underway()


def _rollout(
    settings: Settings,
    version: str,
    image_tag: str,
    strategy: Strategy,
    slots: Slots,
    emit: Emit | None,
    on_step: Callable[[Step], None] | None,
    actor: str,
    given_reason: str,
    overruled_gate: str,
) -> RolloutResult:
    result = RolloutResult(settings.model_name, str(version), image_tag, strategy, datetime.now(UTC),
                           given_reason=given_reason, overruled_gate=overruled_gate)  # fmt: skip
    clock = _Clock(result, on_step)
    with _rollout_lock(settings), UNDERWAY.running():
        admitted = proxy.admit(settings, port_in_use, _declared_default(settings))
        slots = slots if slots.ports is not None else replace(slots, ports=admitted.ports)
        proxy.ensure_proxy(slots.client, settings, slots.labels)
        previous_routing = proxy.read_routing(settings)
        if admitted.default_moved_to is not None:
            # The project file names another first model: the unnamed routes go to it from now on.
            proxy.apply(slots.client, settings, previous_routing or Routing(settings.model_name))
            clock.step("default model moved", f"the unnamed routes serve {admitted.default_moved_to} now")
        result.previous = _serving_baseline(slots, previous_routing)
        routed = previous_routing.primary() if previous_routing else None
        if result.previous is None and routed is not None:
            result.dead_route = f"slot {routed.slot} (v{routed.version})"
        clock.step("proxy ready", _baseline_note(result.previous, previous_routing))
        serving_image = _serving_image(slots, result.previous, previous_routing, image_tag, str(version))
        if result.previous is not None and serving_image is not None:
            return _unchanged(settings, result, result.previous, serving_image, clock, emit, actor)
        selfcheck = registry_selfcheck(settings, str(version))
        clock.step("self-check sample", f"{len(selfcheck.get('records', []))} rows from the registry")
        slot = other_slot(result.previous.slot) if result.previous else idle_slot(previous_routing)
        result.slot = slot
        if result.previous is not None and previous_routing is not None and len(previous_routing.live()) > 1:
            # An interrupted canary left traffic split: all of it back to the baseline before its slot is reused.
            applied = proxy.apply(slots.client, settings, Routing(settings.model_name, (_at(result.previous, 100),)))
            previous_routing = applied.routing
            clock.step("recovered split routing", _applied_note(applied))
        interrupted: BaseException | None = None
        try:
            _deploy(settings, slots, result, clock, selfcheck, strategy, slot)
        except Exception as failure:  # any failure of the candidate's rollout is a rollback, never a crash
            result.outcome, result.reason = "rolled_back", _reason(failure)
            _roll_back(settings, slots, result, clock, previous_routing)
        except BaseException as failure:  # cancelled or interrupted: undo, keep the records, then stop
            result.outcome, result.reason = "rolled_back", f"interrupted: {failure!r}"
            _roll_back(settings, slots, result, clock, previous_routing)
            interrupted = failure
        finally:
            result.seconds = time.monotonic() - clock.origin
        _settle_and_record(settings, result, emit, actor)
        if interrupted is not None:
            raise interrupted
    return result


def _serving_image(
    slots: Slots, serving: SlotRoute | None, routing: Routing | None, image_tag: str, version: str
) -> str | None:
    """The image's id if the version takes all the traffic already, from a ready container of it: nothing to do."""
    if serving is None or routing is None or serving.version != version:
        return None
    if [route.slot for route in routing.live()] != [serving.slot]:
        return None
    return slots.serving_image_id(serving.slot, image_tag, version)


def _unchanged(
    settings: Settings,
    result: RolloutResult,
    serving: SlotRoute,
    image_id: str,
    clock: _Clock,
    emit: Emit | None,
    actor: str,
) -> RolloutResult:
    """Record that nothing was rolled out; the alias follows the version serving, as after a rollout."""
    result.outcome, result.slot = "unchanged", serving.slot
    # The id (as `driftloop build-image` prints it) shows a user who built again that the contents were the same.
    result.reason = (
        f"v{result.version} serves all traffic already, from slot {result.slot} running this image "
        f"({result.image}, id {image_id[:19]}) and ready: no candidate started, routing untouched"
    )
    clock.step("nothing to roll out", f"v{result.version} on {result.slot} (100%), ready, same image")
    result.seconds = time.monotonic() - clock.origin
    _settle_and_record(settings, result, emit, actor)
    return result


def _settle_and_record(settings: Settings, result: RolloutResult, emit: Emit | None, actor: str) -> None:
    """However a rollout ended: the alias settled, the event out, the decision record written."""
    _settle_champion(settings, result, actor)
    result.record_path = _record_path(settings, result)
    _emit(emit, result)
    result.record_path.write_text(result.markdown())


def check_admissible(settings: Settings, version: str, reason: str | None) -> str | None:
    """Refuse a version whose ONNX parity failed, and one its gate refused unless a reason is given.

    Returns the gate's refusal that ``reason`` overrules, for the record; None when there is none.
    """
    from driftloop.io.registry import ModelRegistry

    registry = ModelRegistry(settings.model_name, settings.tracking_uri)
    registered = registry.get_version(str(version))
    refusal = lineage.parity_refusal(registered.tags, settings.model_name, str(version), "be rolled out")
    if refusal is not None:
        raise DeployError(refusal)
    refused_because = lineage.refused_by_gate(registered.tags)
    if refused_because is None or (reason and reason.strip()):
        return refused_because
    champion = registry.champion()
    if champion is not None and str(champion.version) == str(version):
        return None  # made champion over its gate already, with a reason in the alias history
    raise DeployError(lineage.gate_refusal(registered.tags, settings.model_name, str(version)) or refused_because)


@contextmanager
def _rollout_lock(settings: Settings) -> Iterator[None]:
    # A train and a retrain may promote at once: the second rollout waits its turn rather than fail. Rollouts
    # of other models go on meanwhile (the proxy's own lock orders their changes of the shared files).
    lock = settings.proxy_dir / f".rollout-{settings.model_name}.lock"
    with proxy.locked(lock, LOCK_WAIT_SECONDS, f"another rollout of {settings.model_name}"):
        yield


def _declared_default(settings: Settings) -> str | None:
    """The project file's first model: the one the proxy serves on the unnamed routes."""
    if not settings.project_file.is_file():
        return None
    from driftloop.io.project import load_project

    return load_project(settings.project_file).default.name


def _serving_baseline(slots: Slots, routing: Routing | None) -> SlotRoute | None:
    """The slot traffic goes to now, if its container runs (ready or not: it is what the candidate replaces)."""
    primary = routing.primary() if routing else None
    if primary is None or not slots.is_running(primary.slot):
        return None
    return primary


def _baseline_note(baseline: SlotRoute | None, routing: Routing | None) -> str:
    if baseline is not None:
        return f"serving now: v{baseline.version} on {baseline.slot} ({baseline.weight}%)"
    primary = routing.primary() if routing else None
    if primary is not None:
        return f"the routed slot {primary.slot} (v{primary.version}) is not running: a first rollout"
    return "nothing of this model serving yet: its first rollout"


def _deploy(
    settings: Settings,
    slots: Slots,
    result: RolloutResult,
    clock: _Clock,
    selfcheck: dict[str, Any],
    strategy: Strategy,
    slot: SlotName,
) -> None:
    """Start, check and route the candidate; any failure raises (the caller rolls back)."""
    container = slots.start(slot, result.image, result.version)
    clock.step("candidate started", f"{container.name} on {slots.address(slot)}")
    slots.wait_ready(slot, container, result.version, settings.rollout_ready_timeout)
    clock.step("candidate ready", "/ready answered 200 for this version")
    smoke = slots.smoke_test(slot, selfcheck)
    clock.step(
        "smoke test", f"{smoke.rows} rows match the registry's outputs (largest difference {smoke.max_abs_diff:.2g})"
    )
    candidate = slots.route(slot, result.version, result.image)
    old = result.previous
    result.routed = True  # from here on the proxy may send the candidate traffic
    if old is None:
        applied = proxy.apply(slots.client, settings, Routing(settings.model_name, (_at(candidate, 100),)))
        clock.step("routed 100%", _applied_note(applied))
        result.reason = (
            f"nothing served ({result.dead_route} was routed, its container not running): candidate ready and "
            "smoke-tested, routed 100%"
            if result.dead_route
            else "first rollout: candidate ready and smoke-tested, routed 100%"
        )
    elif strategy == "blue-green":
        applied = proxy.apply(slots.client, settings, Routing(settings.model_name, (_at(candidate, 100),)))
        clock.step("switched 100%", _applied_note(applied))
        _stop_old(slots, old, clock)
        result.reason = "candidate ready and smoke-tested; traffic switched at once"
    else:
        _canary(settings, slots, result, clock, candidate, old)
        _stop_old(slots, old, clock)
        result.reason = f"every canary step ({_steps(settings)}) baked without an alarm"
    try:
        slots.keep_running(slot)
    except DockerException as error:
        clock.step("restart policy NOT set", f"{type(error).__name__}: {error}")


def _at(route: SlotRoute, weight: int) -> SlotRoute:
    return SlotRoute(route.slot, route.address, weight, route.version, route.image, route.container)


def _applied_note(applied: proxy.Applied) -> str:
    drained = "old workers drained" if applied.drained else "old workers STILL RUNNING at the drain timeout"
    return (
        f"weights {applied.routing.weights()}; reload {applied.reload_seconds:.2f}s, {drained} after "
        f"{applied.drain_seconds:.2f}s"
    )


def _steps(settings: Settings) -> str:
    return " → ".join(f"{p}%" for p in settings.canary_steps)


def _stop_old(slots: Slots, old: SlotRoute, clock: _Clock) -> None:
    # The candidate serves 100% by now: a slot that will not stop is reported, never a reason to roll back.
    try:
        stopped = slots.stop(old.slot)
    except DriftloopError as error:
        clock.step("old slot NOT stopped", str(error))
        return
    clock.step("old slot stopped", f"{old.slot} (v{old.version})" if stopped else f"{old.slot} was already gone")


def _canary(
    settings: Settings, slots: Slots, result: RolloutResult, clock: _Clock, candidate: SlotRoute, old: SlotRoute
) -> None:
    thresholds = Thresholds.from_settings(settings)
    so_far = SoFar()
    for percent in settings.canary_steps:
        routes = (_at(candidate, percent),) if percent == 100 else (_at(old, 100 - percent), _at(candidate, percent))
        applied = proxy.apply(slots.client, settings, Routing(settings.model_name, routes))
        clock.step(f"canary {percent}%", _applied_note(applied))
        judged, so_far = _bake(settings, slots, candidate.slot, old.slot, percent, thresholds, so_far)
        result.windows.append(judged)
        clock.step(f"bake {percent}%", judged.alarm or judged.detail)
        if judged.alarm:
            raise CanaryAlarm(f"canary alarm at {percent}%: {judged.alarm}")


def _bake(
    settings: Settings,
    slots: Slots,
    slot: SlotName,
    old_slot: SlotName,
    percent: int,
    thresholds: Thresholds,
    so_far: SoFar,
) -> tuple[JudgedWindow, SoFar]:
    """Scrape both slots, watch the candidate for ``canary_bake_seconds``, scrape again, judge the step.

    Returns the verdict and the requests of the steps so far, this one's added (``canary.judge_step``).
    """
    with httpx.Client(timeout=5) as http:
        before = (_scrape(http, slots, slot, percent), _scrape_old(http, slots, old_slot, percent))
        deadline = time.monotonic() + settings.canary_bake_seconds
        container = slots.find(slot)
        while time.monotonic() < deadline:
            if _exited(container):
                raise _stopped(slot, percent, container)
            time.sleep(min(WATCH_SECONDS, max(0.0, deadline - time.monotonic())))
        after = (_scrape(http, slots, slot, percent), _scrape_old(http, slots, old_slot, percent))
    candidate = window(before[0], after[0])
    # The old slot's figures are only a comparison: if it cannot be read, the candidate is judged on thresholds.
    baseline = window(before[1], after[1]) if before[1] is not None and after[1] is not None else None
    so_far = so_far.add(candidate, baseline)
    verdict: Judgement = judge_step(candidate, baseline, so_far, thresholds)
    judged = JudgedWindow(
        percent=percent,
        seconds=candidate.seconds,
        candidate=candidate.describe(),
        baseline=baseline.describe() if baseline is not None else "its /metrics did not answer",
        alarm=verdict.alarm,
        detail=verdict.detail,
    )
    return judged, so_far


def _scrape(http: httpx.Client, slots: Slots, slot: SlotName, percent: int) -> Scrape:
    try:
        answer = http.get(slots.url(slot) + "/metrics")
        answer.raise_for_status()
    except httpx.TimeoutException:
        # Still running but too slow to answer its own metrics: an overloaded candidate, which is what a canary
        # alarm is for.
        raise CanaryAlarm(
            f"canary alarm at {percent}%: slot {slot}'s /metrics did not answer within {http.timeout.read:g}s"
        ) from None
    except httpx.TransportError as error:
        # A crash is a container that stopped. One still running that drops the connection is overloaded (a
        # candidate starved of CPU had its connections reset, seen in CI): the same alarm as a timeout.
        container = slots.find(slot)
        if _exited(container):
            raise _stopped(slot, percent, container) from None
        raise CanaryAlarm(f"canary alarm at {percent}%: slot {slot}'s /metrics did not answer: {error}") from None
    except httpx.HTTPError as error:  # an error status: the server runs and says it is broken
        raise SlotFailed("crashed", f"slot {slot}: /metrics did not answer: {error}") from None
    return parse_metrics(answer.text, time.monotonic())


def _scrape_old(http: httpx.Client, slots: Slots, slot: SlotName, percent: int) -> Scrape | None:
    try:
        return _scrape(http, slots, slot, percent)
    except DriftloopError:
        return None


def _stopped(slot: SlotName, percent: int, container: Any) -> SlotFailed:
    return SlotFailed("crashed", f"slot {slot} stopped during the {percent}% bake:\n{_logs(container)}")


def _exited(container: Any | None) -> bool:
    """The slot's container has stopped, or is gone (None: it was not found)."""
    if container is None:
        return True
    try:
        container.reload()
    except DockerException:
        return True
    return container.status in ("exited", "dead")


def _logs(container: Any) -> str:
    return proxy.logs_tail(container) if container is not None else "  (container gone)"


def _reason(failure: BaseException) -> str:
    if isinstance(failure, SlotFailed):
        label = {"crashed": "candidate crashed", "not_ready": "candidate never ready", "smoke_failed": "smoke test"}
        return f"{label[failure.kind]}: {failure}"
    if isinstance(failure, CanaryAlarm):
        return str(failure)
    return f"{type(failure).__name__}: {failure}"


def _roll_back(
    settings: Settings,
    slots: Slots,
    result: RolloutResult,
    clock: _Clock,
    previous: Routing | None,
) -> None:
    """Traffic back to where it was, the candidate stopped; each part attempted even if another fails."""
    clock.mark()
    old = result.previous
    try:
        if not result.routed:
            clock.step("routing kept", "the candidate never received traffic")
        else:
            back = Routing(settings.model_name, (_at(old, 100),)) if old else (previous or Routing(settings.model_name))
            applied = proxy.apply(slots.client, settings, back)
            clock.step("rolled back routing", _applied_note(applied))
    except (DriftloopError, DockerException) as error:
        # Stopping the candidate now would leave nginx routing to a dead slot: keep it and say so loudly.
        clock.step("ROLLBACK OF ROUTING FAILED: candidate left running", f"{type(error).__name__}: {error}")
        return
    if result.slot is not None:
        try:
            clock.mark()
            stopped = slots.stop(result.slot)
            clock.step("candidate stopped", result.slot if stopped else f"{result.slot} was already gone")
        except (DriftloopError, DockerException) as error:
            clock.step("CANDIDATE NOT STOPPED", f"{type(error).__name__}: {error}")


def _settle_champion(settings: Settings, result: RolloutResult, actor: str) -> None:
    """Success: the champion is this version. Rollback: back to the old slot's version if it moved to this one."""
    from driftloop.io.registry import ModelRegistry

    registry = ModelRegistry(settings.model_name, settings.tracking_uri)
    current = registry.champion()
    champion = str(current.version) if current is not None else None
    try:
        if result.ok:
            if champion == result.version:
                result.champion = f"already v{result.version}"
                return
            overruled = ", its gate's refusal overruled" if result.overruled_gate else ""
            given = f": {result.given_reason}" if result.given_reason else ""
            done = "serves all traffic already" if result.outcome == "unchanged" else f"rolled out ({result.strategy})"
            registry.promote(result.version, reason=f"{done}{overruled}{given}", actor=actor)
            result.champion = f"moved v{champion} → v{result.version} ({done})"
            return
        old = result.previous.version if result.previous else None
        if old is None or champion != result.version or old == champion:
            result.champion = f"unchanged (v{champion}): " + (
                "nothing served before this rollout" if old is None else f"it does not name v{result.version}"
            )
            return
        move = registry.promote(
            old, reason=f"rollout of v{result.version} rolled back: {result.summary}", actor=actor, action="rollback"
        )
        result.champion = f"moved back v{move.from_version} → v{move.to_version} (rollback)"
    except PromotionRefused as refused:
        result.champion = f"NOT MOVED: {refused}"


def _emit(emit: Emit | None, result: RolloutResult) -> None:
    if result.outcome == "unchanged":  # nothing happened that anyone listening would act on
        result.event = "none: nothing changed"
        return
    name = events.ROLLOUT_COMPLETED if result.ok else events.ROLLOUT_ROLLED_BACK
    if emit is None:
        result.event = f"{name} (not emitted: no emitter)"
        return
    try:
        emit(name, result.model_name, result.payload())
        result.event = name
    except Exception as error:  # an event is a notification: its failure must not undo a finished rollout
        result.event = f"{name} NOT EMITTED: {error}"


def _record_path(settings: Settings, result: RolloutResult) -> Path:
    directory = settings.home / "rollouts"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = result.started_at.strftime("%Y%m%dT%H%M%S")
    return directory / f"{stamp}-{result.model_name}-v{result.version}-{result.outcome}.md"
