"""Rollouts behind a real nginx container, with real serving images of real registered versions, under load.

Two versions are trained with the real CLI (v1 logistic regression, v2 hist gradient boosting) and their serving
images built through the engine. Bad candidates are real faults: an image whose command exits, an image whose
stored self-check was altered (its server refuses the model), an image serving v1's graph under v2's name, and
a good image whose CPU is throttled (container.update) during the canary bake. A client thread pool hits nginx
throughout and counts every non-2xx answer and every connection error.

The clients open a connection per request. With keep-alive clients, a reload has one race no proxy setting
removes: an old worker closes its idle client connections as it shuts down, and a request sent on one at that
instant is lost (3 in 16k requests over a canary's 4 reloads here; the note saw 1 in 25k). A client retrying a
reused connection closed before any response covers it; bench/bench_rollout.py measures both kinds of client.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftloop import events
from driftloop.core import lineage
from driftloop.deploy import proxy
from driftloop.deploy.image_build import build_image_for_version, image_for_version
from driftloop.deploy.rollout import RolloutResult, Step, rollout
from driftloop.deploy.routing import Routing, SlotRoute
from driftloop.deploy.slots import Slots
from driftloop.deploy.status import deployment_status
from driftloop.errors import DeployError
from driftloop.io.registry import ModelRegistry
from driftloop.settings import Settings
from tests.support.churn import sample_rows
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.docker_engine import (  # noqa: F401 (pytest fixtures)
    DockerTestRun,
    build_derived,
    docker_engine,
    docker_run,
    remove_test_image,
    require_base_image,
    require_docker,
)
from tests.support.host import free_port
from tests.support.load import PredictLoad
from tests.support.proxy_image import PROXY_IMAGE, ensure_proxy_image

pytestmark = pytest.mark.integration

ACTOR = "pytest@test_rollout"
# v2 (hist gradient boosting) scores below v1 (logistic regression) on the churn holdout: its gate refused it, so a
# rollout of it needs a reason (the fixture checks the verdict).
V2_REASON = "test: v2, which its gate refused, is the candidate"


# ------------------------------------------------------------------------------------------------- load


# ------------------------------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Images:
    dl: Driftloop
    prefix: str
    v1: str
    v2: str
    crash: str
    never_ready: str
    wrong_outputs: str


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer) -> Iterator[Images]:
    client = require_docker()  # skip (or fail in CI) before the expensive part
    require_base_image(client)
    ensure_proxy_image(client)
    dl = make_driftloop(tmp_path_factory.mktemp("rollout"), prefect_server)
    dl.run("train")
    dl.run("train", "--estimator", "hist_gradient_boosting")
    assert ModelRegistry("churn", dl.tracking_uri).get_version("2").tags[lineage.GATE] == "refuse"
    prefix = f"dltest{uuid.uuid4().hex[:8]}"
    settings = Settings(home=dl.home, image_prefix=prefix)
    tags: list[str] = []
    try:
        v1 = build_image_for_version(settings, "1", lambda line: None, client=client).image.tag
        tags.append(v1)
        v2 = build_image_for_version(settings, "2", lambda line: None, client=client).image.tag
        tags.append(v2)
        base = v2.rsplit(":", 1)[0]
        crash = build_derived(
            client,
            f'FROM {v2}\nCMD ["python", "-c", "import sys; print(\'refusing to start\'); sys.exit(3)"]\n',
            f"{base}:crash",
        )
        tags.append(crash)
        # The stored sample's probabilities shifted by 0.2: the server's own self-check refuses the model.
        alter = (
            "import json; p = '/opt/model/selfcheck.json'; d = json.load(open(p)); "
            "d['probabilities'] = [[min(1.0, a + 0.2), max(0.0, b - 0.2)] for a, b in d['probabilities']]; "
            "json.dump(d, open(p, 'w'))"
        )
        never_ready = build_derived(
            client, f'FROM {v2}\nUSER root\nRUN ["python", "-c", "{alter}"]\nUSER 10001:10001\n', f"{base}:never-ready"
        )
        tags.append(never_ready)
        # v1's graphs and sample in v2's image: consistent with itself, not with the registry's v2.
        wrong = build_derived(
            client,
            f"FROM {v1} AS other\nFROM {v2}\n"
            "COPY --from=other /opt/model/model.onnx /opt/model/serving.onnx /opt/model/selfcheck.json /opt/model/\n",
            f"{base}:wrong-outputs",
        )
        tags.append(wrong)
        yield Images(dl, prefix, v1, v2, crash, never_ready, wrong)
    finally:
        for tag in reversed(tags):
            remove_test_image(client, tag)
        client.close()


@pytest.fixture
def run(docker_run: DockerTestRun) -> DockerTestRun:  # noqa: F811 (the imported fixture)
    return docker_run


@dataclass
class Stage:
    """One test's proxy and slots (unique names and ports), its settings and the events it emitted."""

    settings: Settings
    slots: Slots
    emitted: list[tuple[str, str, dict[str, Any]]]
    registry: ModelRegistry

    def emit(self, event: str, model_name: str, payload: Any) -> None:
        self.emitted.append((event, model_name, dict(payload)))

    def rollout(self, version: str, image: str, strategy: str = "blue-green", **kwargs: Any) -> RolloutResult:
        return rollout(self.settings, version, image, strategy, emit=self.emit, actor=ACTOR, slots=self.slots, **kwargs)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.proxy_port}"

    def served_version(self) -> str:
        answer = httpx.post(self.url + "/predict", json={"features": sample_rows(1)[0]}, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["model_version"])


def distinct_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def make_stage(images: Images, run: DockerTestRun, tmp_path: Path, **overrides: Any) -> Stage:
    proxy_port, blue, green = distinct_ports(3)
    values: dict[str, Any] = {
        "home": images.dl.home,
        "image_prefix": images.prefix,
        "proxy_container": run.name("proxy"),
        "proxy_image": PROXY_IMAGE,
        "proxy_port": proxy_port,
        "proxy_config_dir": tmp_path / "proxy",
        "slot_ports": (blue, green),
        "rollout_ready_timeout": 30,
        "canary_steps": (10, 50, 100),
        "canary_bake_seconds": 2,
        "drain_timeout": 15,
        **overrides,
    }
    settings = Settings(**values)
    slots = Slots(settings, run.client, name_prefix=run.name("slot"), labels=run.labels())
    return Stage(settings, slots, [], ModelRegistry("churn", images.dl.tracking_uri))


def make_champion(stage: Stage, version: str) -> None:
    champion = stage.registry.champion()
    if champion is None or str(champion.version) != version:
        stage.registry.promote(version, reason="test setup", actor=ACTOR)


def first_rollout_of_v1(stage: Stage, images: Images) -> None:
    result = stage.rollout("1", images.v1)
    assert result.ok, result.markdown()
    assert result.reason.startswith("first rollout")
    assert stage.served_version() == "1"


def running_slot_containers(stage: Stage) -> list[str]:
    filters = {
        "label": [f"driftloop.test_run={stage.slots.labels['driftloop.test_run']}", "driftloop.role=serving-slot"]
    }
    return sorted(c.name for c in stage.slots.client.containers.list(filters=filters, ignore_removed=True))


# ------------------------------------------------------------------------------------------------- tests


def test_blue_green_under_load_fails_no_request(images: Images, run: DockerTestRun, tmp_path: Path) -> None:
    stage = make_stage(images, run, tmp_path)
    first_rollout_of_v1(stage, images)
    with pytest.raises(DeployError, match="version 2 of 'churn' was refused by its promotion gate"):
        stage.rollout("2", images.v2)  # no reason: refused before any container starts
    assert running_slot_containers(stage) == [stage.slots.container_name("blue")]
    steps: list[Step] = []
    with PredictLoad(stage.url, sample_rows(50), keep_alive=False) as load:
        time.sleep(1)
        to_v2 = stage.rollout("2", images.v2, on_step=steps.append, reason=V2_REASON)
        time.sleep(1)
        back_to_v1 = stage.rollout("1", images.v1)
        time.sleep(1)
    report = load.report
    assert to_v2.ok, to_v2.markdown()
    assert back_to_v1.ok, back_to_v1.markdown()
    assert report.failed == 0, report
    assert report.ok > 100, report
    assert report.versions["1"] > 0
    assert report.versions["2"] > 0
    assert [s.name for s in steps] == [
        "proxy ready",
        "self-check sample",
        "candidate started",
        "candidate ready",
        "smoke test",
        "switched 100%",
        "old slot stopped",
    ]
    assert to_v2.slot == "green"
    assert back_to_v1.slot == "blue"
    assert stage.served_version() == "1"
    assert running_slot_containers(stage) == [stage.slots.container_name("blue")]
    # The champion follows what was rolled out; every rollout emitted its event and wrote its record.
    assert str(stage.registry.champion().version) == "1"
    assert [e[0] for e in stage.emitted] == [events.ROLLOUT_COMPLETED] * 3
    assert stage.emitted[1][2]["previous_version"] == "1"
    record = to_v2.record_path.read_text()
    assert "Rollout of churn v2: rolled out" in record
    assert "switched 100%" in record
    # v2, which its gate refused, got traffic only with a reason: in its record, its event and the alias history,
    # each saying the gate was overruled and why it had refused.
    gate_reason = stage.registry.get_version("2").tags[lineage.GATE_REASON].split("\n", 1)[0]
    assert f"- **asked for because**: {V2_REASON}" in record
    assert f"- **gate overruled**: its promotion gate had refused it ({gate_reason})" in record
    back_record = back_to_v1.record_path.read_text()
    assert "asked for because" not in back_record
    assert "gate overruled" not in back_record
    assert (stage.emitted[1][2]["given_reason"], stage.emitted[2][2]["given_reason"]) == (V2_REASON, None)
    assert (stage.emitted[1][2]["gate_overruled"], stage.emitted[2][2]["gate_overruled"]) == (gate_reason, None)
    to_v2_move = stage.registry.history()[-2]
    assert (to_v2_move.to_version, to_v2_move.reason) == (
        "2", f"rolled out (blue-green), its gate's refusal overruled: {V2_REASON}"
    )  # fmt: skip
    # What the ship flow reuses instead of building again: the image build-image recorded on the version.
    assert image_for_version(stage.settings, "1").image.tag == images.v1
    assert image_for_version(stage.settings, "2").image.tag == images.v2
    status = deployment_status(stage.settings, stage.slots)
    assert [(s.slot, s.weight, s.state, s.version) for s in status.serving] == [("blue", 100, "running", "1")]
    assert status.proxy.answers
    assert status.serving[0].model["version"] == "1"
    assert "blue" in status.table()
    # A body over nginx's limit (the server's, and 64 KiB of headroom) gets JSON as the server words it, not
    # nginx's HTML page (trial 18).
    oversized = b" " * (stage.settings.max_body_bytes + 128 * 1024)
    too_large = httpx.post(stage.url + "/predict", content=oversized, timeout=30,
                           headers={"content-type": "application/json"})  # fmt: skip
    assert too_large.status_code == 413
    assert too_large.headers["content-type"] == "application/json"
    assert too_large.json()["reason"] == "body_too_large"
    assert too_large.json()["detail"].startswith("request body exceeds the limit of ")


def test_rolling_out_the_version_already_serving_changes_nothing_unless_its_image_changed(
    images: Images, run: DockerTestRun, tmp_path: Path
) -> None:
    """Trial 20: `driftloop rollout` of the version serving started a second container of it and swapped slots.

    The same image (by id) serving all traffic, ready: nothing is started or routed, no event goes out, the record
    says why. The same version from an image built again (another id), or with its container stopped: rolled out
    as any other candidate.
    """
    stage = make_stage(images, run, tmp_path)
    first_rollout_of_v1(stage, images)
    serving = stage.slots.find("blue")
    assert serving is not None
    steps: list[Step] = []
    again = stage.rollout("1", images.v1, "canary", on_step=steps.append)
    assert again.ok, again.markdown()
    assert (again.outcome, again.slot) == ("unchanged", "blue")
    assert again.reason.startswith("v1 serves all traffic already, from slot blue running this image"), again.reason
    assert f"id {serving.attrs['Image'][:19]})" in again.reason  # as `driftloop build-image` prints it
    assert [s.name for s in steps] == ["proxy ready", "nothing to roll out"]
    assert running_slot_containers(stage) == [stage.slots.container_name("blue")]
    assert stage.slots.find("blue").id == serving.id  # the very container, not a new one
    assert proxy.read_routing(stage.settings).weights() == {"blue": 100}
    assert [e[0] for e in stage.emitted] == [events.ROLLOUT_COMPLETED]  # the first rollout's only
    assert again.windows == []
    record = again.record_path.read_text()
    assert "Rollout of churn v1: nothing to roll out" in record
    assert "- **event**: none: nothing changed" in record
    assert str(stage.registry.champion().version) == "1"
    assert stage.served_version() == "1"

    rebuilt = build_derived(stage.slots.client, f"FROM {images.v1}\nLABEL driftloop.test.rebuilt=1\n",
                            f"{images.v1.rsplit(':', 1)[0]}:v1-rebuilt")  # fmt: skip
    try:
        replaced = stage.rollout("1", rebuilt)
        assert replaced.ok, replaced.markdown()
        assert (replaced.outcome, replaced.slot) == ("completed", "green")
        assert running_slot_containers(stage) == [stage.slots.container_name("green")]
        assert proxy.read_routing(stage.settings).weights() == {"green": 100}
        assert [e[0] for e in stage.emitted] == [events.ROLLOUT_COMPLETED] * 2
        assert stage.served_version() == "1"
        # The routed container stopped (trial 21: the record then said "first rollout"): replaced, and said so.
        stage.slots.find("green").stop(timeout=5)
        restarted = stage.rollout("1", rebuilt)
        assert (restarted.outcome, restarted.slot) == ("completed", "blue"), restarted.markdown()
        assert restarted.reason.startswith(
            "nothing served (slot green (v1) was routed, its container not running): candidate ready"
        ), restarted.reason
        assert "- **was serving**: nothing: slot green (v1) was routed, its container not running" in (
            restarted.record_path.read_text()
        )
        assert stage.served_version() == "1"
    finally:
        stage.slots.stop("blue")
        stage.slots.stop("green")
        remove_test_image(stage.slots.client, rebuilt)


def test_canary_under_load_fails_no_request(images: Images, run: DockerTestRun, tmp_path: Path) -> None:
    stage = make_stage(images, run, tmp_path)
    first_rollout_of_v1(stage, images)
    with PredictLoad(stage.url, sample_rows(50), keep_alive=False) as load:
        time.sleep(1)
        result = stage.rollout("2", images.v2, "canary", reason=V2_REASON)
        time.sleep(1)
    assert result.ok, result.markdown()
    assert load.report.failed == 0, load.report
    assert [w.percent for w in result.windows] == [10, 50, 100]
    assert all(w.alarm is None for w in result.windows)
    assert not result.windows[0].candidate.startswith("no requests"), result.markdown()
    assert load.report.versions["1"] > 0
    assert load.report.versions["2"] > 0
    assert stage.served_version() == "2"
    assert str(stage.registry.champion().version) == "2"
    assert stage.emitted[-1][0] == events.ROLLOUT_COMPLETED
    assert proxy.read_routing(stage.settings).weights() == {"green": 100}
    assert "Windows judged" in result.markdown()


@dataclass(frozen=True)
class BadCandidate:
    image: str
    strategy: str
    reason: str
    overrides: dict[str, Any]


BAD = {
    "crashes-on-start": lambda im: BadCandidate(im.crash, "blue-green", "candidate crashed", {}),
    "never-ready": lambda im: BadCandidate(
        # Long enough for a loaded 2-core CI machine to start the server, so /ready has said why it is not ready.
        im.never_ready,
        "blue-green",
        "candidate never ready",
        {"rollout_ready_timeout": 30},
    ),
    "wrong-outputs": lambda im: BadCandidate(im.wrong_outputs, "blue-green", "smoke test", {}),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_candidate_is_rolled_back(kind: str, images: Images, run: DockerTestRun, tmp_path: Path) -> None:
    bad = BAD[kind](images)
    stage = make_stage(images, run, tmp_path, **bad.overrides)
    first_rollout_of_v1(stage, images)
    make_champion(stage, "2")  # what the training flow's gate did before the rollout
    with PredictLoad(stage.url, sample_rows(50), 3, keep_alive=False) as load:
        result = stage.rollout("2", bad.image, bad.strategy, reason=V2_REASON)
    assert result.outcome == "rolled_back", result.markdown()
    assert result.reason.startswith(bad.reason), result.reason
    assert load.report.failed == 0, load.report
    assert load.report.versions.keys() == {"1"}
    assert_restored(stage, result)
    if kind == "crashes-on-start":
        assert "refusing to start" in result.reason  # the container's last log lines
    if kind == "never-ready":
        assert "probabilities differ from the recording" in result.summary  # what /ready said


def test_a_slow_canary_trips_the_p99_alarm(images: Images, run: DockerTestRun, tmp_path: Path) -> None:
    stage = make_stage(images, run, tmp_path, canary_bake_seconds=4)
    first_rollout_of_v1(stage, images)
    make_champion(stage, "2")
    throttled: list[str] = []

    def throttle_at_first_step(step: Step) -> None:
        if step.name.startswith("canary ") and not throttled:
            # A real fault: the candidate gets 1% of one CPU for the bake (CFS quota), so it answers slowly.
            container = stage.slots.find("green")
            container.update(cpu_period=100_000, cpu_quota=1_000)
            throttled.append(container.name)

    with PredictLoad(stage.url, sample_rows(50), 6, keep_alive=False) as load:
        time.sleep(1)
        result = stage.rollout("2", images.v2, "canary", on_step=throttle_at_first_step, reason=V2_REASON)
    assert throttled, "the canary never started"
    assert result.outcome == "rolled_back", result.markdown()
    assert result.reason.startswith("canary alarm at"), result.reason
    # At 1% of a CPU the candidate's p99 trips the ratio alarm, or, on a loaded machine, its /metrics does not even
    # answer within the scrape timeout or drops the connection: each is the latency alarm, and each rolls back.
    assert "p99" in result.reason or "/metrics did not answer" in result.reason, result.reason
    if "p99" in result.reason:  # a window was judged and holds the alarm; a scrape that timed out judged none
        assert result.windows[-1].alarm is not None
    assert load.report.failed == 0, load.report
    assert_restored(stage, result)


def assert_restored(stage: Stage, result: RolloutResult) -> None:
    """Traffic on v1 again, the candidate gone, the alias and its history back, the event out, the record written."""
    assert stage.served_version() == "1"
    assert proxy.read_routing(stage.settings).weights() == {"blue": 100}
    assert running_slot_containers(stage) == [stage.slots.container_name("blue")]
    assert stage.slots.find("green") is None
    assert str(stage.registry.champion().version) == "1"
    last = stage.registry.history()[-1]
    assert (last.action, last.from_version, last.to_version) == ("rollback", "2", "1")
    assert result.summary in last.reason
    assert last.actor == ACTOR
    event, model, payload = stage.emitted[-1]
    assert (event, model) == (events.ROLLOUT_ROLLED_BACK, "churn")
    assert payload["reason"] == result.summary
    assert payload["previous_version"] == "1"
    record = result.record_path.read_text()
    assert "ROLLED BACK" in record
    assert "moved back v2 → v1" in record


def test_a_split_left_by_an_interrupted_canary_is_recovered(images: Images, run: DockerTestRun, tmp_path: Path) -> None:
    stage = make_stage(images, run, tmp_path)
    first_rollout_of_v1(stage, images)
    # What a killed canary leaves behind: v2 running on green with half of the traffic.
    green = stage.slots.start("green", images.v2, "2")
    stage.slots.wait_ready("green", green, "2", 30)
    blue = proxy.read_routing(stage.settings).primary()
    split = (
        SlotRoute("blue", blue.address, 50, "1", images.v1, blue.container),
        stage.slots.route("green", "2", images.v2, 50),
    )
    proxy.apply(stage.slots.client, stage.settings, Routing("churn", split))
    make_champion(stage, "2")

    with PredictLoad(stage.url, sample_rows(50), keep_alive=False) as load:
        time.sleep(1)
        result = stage.rollout("2", images.v2, reason=V2_REASON)
        time.sleep(1)
    assert result.ok, result.markdown()
    names = [step.name for step in result.steps]
    assert names.index("recovered split routing") < names.index("candidate started")
    assert load.report.failed == 0, load.report
    assert proxy.read_routing(stage.settings).weights() == {"green": 100}
    assert stage.served_version() == "2"
