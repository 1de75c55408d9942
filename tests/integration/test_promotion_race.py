"""Promotions that cannot race: the real CLI and flows against the session's Prefect server and a real MLflow store.

A person's `driftloop promote` while a training run is gating, two `driftloop train` at once, and a pinned champion:
in every case the champion a run promotes over is the one its gate compared with, and the history says so.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from driftloop.core import lineage
from driftloop.io.prefect_http import prefect_api_client
from driftloop.io.registry import ModelRegistry
from tests.support.cli import Driftloop, PrefectServer
from tests.support.host import VENV_BIN

pytestmark = pytest.mark.integration


def _start_train(dl: Driftloop, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VENV_BIN / "driftloop"), "train", *args], env=dl.env, cwd=dl.home.parent,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen[str], timeout: float = 600) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def _flow_runs_started(prefect: PrefectServer, task_name: str, after: str) -> bool:
    body = {"task_runs": {"name": {"like_": task_name}, "start_time": {"after_": after}}}
    with prefect_api_client(prefect.api_url) as client:
        return bool(client.post("/task_runs/filter", json=body).json())


def _moves(dl: Driftloop) -> list[tuple[str, str | None, str]]:
    return [(m.action, m.from_version, m.to_version) for m in ModelRegistry("churn", dl.tracking_uri).history()]


def test_a_persons_promotion_during_a_training_run_is_not_overwritten(
    driftloop: Driftloop, prefect_server: PrefectServer
) -> None:
    driftloop.run("train")  # v1: champion
    refused = driftloop.run("train", "--min-roc-auc", "0.99").stdout  # v2: the same model, refused by the floor
    assert "not promoted" in refused
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    training = _start_train(driftloop, "--estimator", "random_forest")  # v3
    deadline = time.monotonic() + 300
    while not _flow_runs_started(prefect_server, "fit-candidate", since):
        assert time.monotonic() < deadline, "the training run never started fitting"
        time.sleep(0.2)
    # The run scored v1 before fitting; a person now makes v2 champion.
    driftloop.run("promote", "2", "--reason", "operator's call: v2")
    output = _finish(training)

    registry = ModelRegistry("churn", driftloop.tracking_uri)
    v3 = registry.get_version("3").tags
    assert "the champion changed to v2 while this run was gated: gated again against it" in v3[lineage.GATE_REASON]
    moves = _moves(driftloop)
    assert moves[:2] == [("promote", None, "1"), ("promote", "1", "2")]
    if v3[lineage.GATE] == "promote":
        assert moves[2:] == [("promote", "2", "3")]
        assert "promoted to champion (was v2)" in output
    else:
        assert moves[2:] == []
        assert str(registry.champion().version) == "2"


def test_two_training_runs_at_once_never_promote_over_the_same_champion(driftloop: Driftloop) -> None:
    # v1: a weak champion (ROC AUC about 0.83), which each of the two candidates below would beat on its own.
    driftloop.run("train", "--param", "C=0.0003")
    first = _start_train(driftloop, "--estimator", "gradient_boosting")
    second = _start_train(driftloop, "--estimator", "random_forest")
    outputs = [_finish(first), _finish(second)]

    moves = _moves(driftloop)
    assert moves[0] == ("promote", None, "1")
    # Every promotion starts from the champion the one before it left: no lost update.
    for before, after in zip(moves, moves[1:], strict=False):
        assert after[1] == before[2], moves
    assert sum("promoted to champion (was v1)" in output for output in outputs) <= 1, outputs
    registry = ModelRegistry("churn", driftloop.tracking_uri)
    for version in ("2", "3"):
        tags = registry.get_version(version).tags
        if tags[lineage.GATE] == "promote" and ("promote", "1", version) not in moves:
            assert "gated again against it" in tags[lineage.GATE_REASON], tags[lineage.GATE_REASON]


def test_a_pinned_champion_refuses_automatic_promotion_until_unpinned(driftloop: Driftloop) -> None:
    driftloop.run("train")  # v1
    driftloop.run("pin", "1", "--reason", "release freeze")
    pinned = driftloop.run("train").stdout  # v2: the same model; it would be promoted if not for the pin
    assert "not promoted" in pinned
    assert "champion pinned by" in pinned
    assert "release freeze" in pinned
    registry = ModelRegistry("churn", driftloop.tracking_uri)
    assert registry.get_version("2").tags[lineage.GATE] == "refuse"
    assert str(registry.champion().version) == "1"
    driftloop.run("unpin", "--reason", "freeze over")
    assert "promoted to champion (was v1)" in driftloop.run("train").stdout  # v3
    assert str(registry.champion().version) == "3"
