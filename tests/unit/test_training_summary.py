"""The summary `driftloop train` prints: its headline names what happened to the champion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from driftloop.cli import _headline_metrics, _print_outcome
from driftloop.core import lineage
from driftloop.settings import Settings
from flows.train import TrainingOutcome


def _outcome(promoted: bool, champion: str | None, passed: bool | None = None) -> TrainingOutcome:
    passed = promoted if passed is None else passed
    return TrainingOutcome(
        model_name="shop",
        version="1" if champion is None else "4",
        promoted=promoted,
        verdict="promote" if passed else "refuse",
        reasons=["roc_auc 0.6998 < floor 0.7"] if not passed else ["floors met"],
        metrics={"roc_auc": 0.6998},
        champion_version=champion,
        champion_metrics=None if champion is None else {"roc_auc": 0.71},
        parity="passed",
        data_hash="0" * 64,
        mlflow_run_url="http://127.0.0.1:5010/#/runs/x",
        mlflow_version_url="http://127.0.0.1:5010/#/models/shop/versions/1",
        flow_run_url="http://127.0.0.1:4200/runs/flow-run/x",
    )


@pytest.mark.parametrize(
    ("promoted", "passed", "champion", "headline"),
    [
        # Trial 12: a first version refused for its parity said "not promoted: there is no champion yet" alone.
        (
            False,
            False,
            None,
            "shop v1: not promoted: refused by the gate (see its line below); there is no champion yet",
        ),
        (False, False, "3", "shop v4: not promoted: refused by the gate (see its line below); champion stays v3"),
        (False, True, "3", "shop v4: not promoted: champion stays v3"),  # passed, kept out by a pin
        (True, True, None, "shop v1: promoted to champion (was none)"),
        (True, True, "3", "shop v4: promoted to champion (was v3)"),
    ],
)
def test_the_headline_says_what_became_of_the_champion(
    promoted: bool, passed: bool, champion: str | None, headline: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _print_outcome(Settings(home=tmp_path), _outcome(promoted, champion, passed))
    lines = capsys.readouterr().out.splitlines()
    assert headline in lines
    assert not any("stays none" in line for line in lines)


def test_the_table_says_on_which_rows_and_whether_each_change_is_better(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trial 22: a refused candidate's table showed accuracy +0.1333 and log_loss -0.1993 with nothing to say that
    both were better, on rows the gate's own line did not quote."""
    outcome = _outcome(False, "3")
    metrics = {"roc_auc": 0.6998, "accuracy": 0.7, "log_loss": 0.5, "rmse": 2.0, "rows": 1984.0}
    champion = {"roc_auc": 0.71, "accuracy": 0.7, "log_loss": 0.6, "rmse": 1.5}
    _print_outcome(Settings(home=tmp_path), replace(outcome, metrics=metrics, champion_metrics=champion))
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert "on this run's holdout (1,984 rows)" in lines
    changes = {line.split()[0]: line.split()[-2:] for line in lines if line.split()[:1] and line.split()[0] in champion}
    assert changes == {
        "roc_auc": ["-0.0102", "worse"], "accuracy": ["+0.0000", "same"], "log_loss": ["-0.1000", "better"],
        "rmse": ["+0.5000", "worse"],
    }  # fmt: skip
    assert any(line.startswith("rule     to pass:") for line in lines)  # the rule, not a claim that it was met


def test_models_shows_a_retrain_that_learnt_a_changed_truth_by_its_figures_on_that_truth() -> None:
    """Trial 11: its whole holdout, mostly the old truth's rows, made the serving champion look broken."""
    whole = {
        f"{lineage.METRIC}{name}": value for name, value in (("roc_auc", "0.27"), ("f1", "0.3"), ("accuracy", "0.33"))
    }
    assert _headline_metrics(whole) == "roc_auc 0.27 f1 0.3 accuracy 0.33"
    learnt = {**whole, **{f"{lineage.TRUTH_BASELINE}{name}": value for name, value in
                          (("roc_auc", "0.64"), ("f1", "0.6"), ("accuracy", "0.61"), ("rows", "300"))}}  # fmt: skip
    assert _headline_metrics(learnt) == "roc_auc 0.64 f1 0.6 accuracy 0.61 (its 300 recent labelled rows)"
    assert _headline_metrics({}) == "?"
