"""Drift that matters, through the real loop: `driftloop train` keeps the importances, `drift-check --rule` uses them.

Generated data where the truth is known: ``y`` follows ``x1`` (and a little ``x2``); ``x3``, ``x4`` and ``region``
are noise. Traffic where only the noise moved is drift by Evidently's share (3 of 5 columns) and must open no
episode under the weighted rule; traffic where only ``x1`` moved is no drift by the share (1 of 5) and must open
one under the weighted rule. The windows go through `driftloop serve`'s /predict into the real prediction log.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.io.datasets import schema_yaml
from tests.support.cli import PrefectServer, make_driftloop
from tests.support.serving import driftloop_serve
from tests.support.stack import replay, wait_logged

pytestmark = pytest.mark.integration

NUMERIC = ("x1", "x2", "x3", "x4")
REGIONS = ("north", "south", "east")
WINDOW = 600


def _world(rows: int, seed: int, moved: tuple[str, ...] = ()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in NUMERIC})
    frame["region"] = rng.choice(REGIONS, rows, p=[0.6, 0.3, 0.1] if "region" not in moved else [0.1, 0.3, 0.6])
    for name in moved:
        if name != "region":
            frame[name] += 3.0
    frame["y"] = (2.0 * frame["x1"] + 0.5 * frame["x2"] + rng.normal(0.0, 0.5, rows) > 0).astype(int)
    return frame


def test_the_weighted_rule_ignores_drift_the_model_does_not_use_and_catches_drift_it_does(
    tmp_path: Path, prefect_server: PrefectServer
) -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "world",
            "target": {"name": "y", "classes": ["0", "1"], "positive": "1"},
            "features": [
                *({"name": name, "kind": "numeric"} for name in NUMERIC),
                {"name": "region", "kind": "categorical", "categories": list(REGIONS)},
            ],
        }
    )
    data, schema_file = tmp_path / "world.csv", tmp_path / "world.yaml"
    _world(3000, seed=11).assign(listing_id=range(3000)).to_csv(data, index=False)  # a column the schema omits
    schema_file.write_text(schema_yaml(schema))
    dl = make_driftloop(
        tmp_path, prefect_server, model_name="world", drift_window_rows=str(WINDOW), drift_min_rows="200"
    )
    trained = dl.run("train", "--data", str(data), "--schema", str(schema_file))
    assert "ignored  column(s) the schema does not name, not trained on: listing_id" in trained.stdout
    with driftloop_serve(dl, tmp_path):
        replay(dl, _world(WINDOW, seed=12, moved=("x3", "x4", "region")), target="y", labels=False)
        wait_logged(dl, WINDOW)
        noise = dl.run("drift-check", "--model-name", "world", "--rule", "weighted")
        assert "verdict  no drift" in noise.stdout, noise.stdout
        assert "decision rule weighted: nothing reached drift_share" in noise.stdout
        assert "drifted  " in noise.stdout  # the columns did drift: the rule chose not to act on them
        assert "event emitted" not in noise.stdout
        # The rule given judges this check only, and the command says the scheduled ones keep theirs (trial 43).
        assert noise.stderr.startswith(
            "note: --rule weighted judges this check only; the scheduled checks judge by share (the project's drift "
            "policy, else DRIFTLOOP_DRIFT_RULE), and the first of them to find no drift closes an episode this one "
            "opens"
        ), noise.stderr

        replay(dl, _world(WINDOW, seed=13, moved=("x1",)), target="y", labels=False)
        wait_logged(dl, 2 * WINDOW)
        plain = dl.run("drift-check", "--model-name", "world", "--rule", "share")
        assert "verdict  no drift" in plain.stdout, plain.stdout  # 1 of 5 columns: Evidently's share is 0.2
        assert "drifted  x1" in plain.stdout
        assert "note:" not in plain.stderr, plain.stderr  # the standing rule, given: nothing to say
        weighted = dl.run("drift-check", "--model-name", "world", "--rule", "weighted")
        assert "verdict  drift" in weighted.stdout, weighted.stdout
        assert "decision rule weighted: weighted share" in weighted.stdout
        assert "event emitted" in weighted.stdout

    refused = dl.run("drift-check", "--model-name", "world", "--rule", "heaviest", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: --rule 'heaviest': choose share, weighted or either"
