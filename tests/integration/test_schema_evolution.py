"""Schema evolution under one model name: a snapshot that adds a feature is gated against the champion, which
scores the same holdout rows from the features it was trained on; one that drops a feature is refused, in seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from driftloop.core import lineage
from driftloop.errors import RegistryError
from driftloop.io.datasets import load_schema, schema_yaml
from driftloop.io.registry import ModelRegistry
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA
from tasks.model import champion_split_features
from tests.support.stack import own_stack

pytestmark = pytest.mark.integration


def test_an_added_feature_is_gated_against_the_champion_and_a_dropped_one_is_refused(tmp_path: Path) -> None:
    full = load_schema(BUNDLED_SCHEMA)
    without_tenure = tmp_path / "without_tenure.yaml"
    without_tenure.write_text(
        schema_yaml(full.model_copy(update={"features": tuple(f for f in full.features if f.name != "tenure")}))
    )
    dl = own_stack(tmp_path)

    def train(schema: Path, data: Path = BUNDLED_DATA) -> subprocess.CompletedProcess[str]:
        return dl.run("train", "--data", str(data), "--schema", str(schema), "--model-name", "evolving", check=False)

    try:
        first = train(without_tenure)
        assert "evolving v1: promoted to champion (was none)" in first.stdout, first.stderr
        # The next commands' default model is another one: the hint names this one, and so does `models`.
        assert "driftloop models --model-name evolving | driftloop history --model-name evolving" in first.stdout
        assert dl.run("models").stdout.strip() == (
            "no versions of model 'churn' yet: run `driftloop train`; registered here: evolving "
            "(pass --model-name NAME)"
        )
        # Progress as it trains: the rows of each long step, consistent with each other.
        shown = first.stdout + first.stderr
        read = _count(r"snapshot: ([\d,]+) rows × \d+ columns read, validated and hashed", shown)
        trained = _count(r"split: ([\d,]+) training rows", shown)
        held = _count(r"split: [\d,]+ training rows, ([\d,]+) holdout rows", shown)
        assert read == trained + held > 0
        assert _count(r"fitting \S+ on ([\d,]+) rows", shown) == trained
        assert _count(r"evaluating on ([\d,]+) holdout rows", shown) == held
        assert _count(r"parity on [\d,]+ of ([\d,]+) holdout rows", shown) == held

        # The full schema adds tenure: trained under the same name and compared with v1 on the same rows.
        second = train(BUNDLED_SCHEMA)
        assert second.returncode == 0, second.stderr
        registry = ModelRegistry("evolving", dl.tracking_uri)
        v2 = registry.get_version("2").tags
        assert "champion v1" in v2[lineage.GATE_REASON], v2[lineage.GATE_REASON]
        assert v2[lineage.GATE_SEGMENTS]  # the paired comparison ran
        assert v2[lineage.SCHEMA_CONTRACT] != registry.get_version("1").tags[lineage.SCHEMA_CONTRACT]
        assert str(registry.champion().version) == "2", v2[lineage.GATE_REASON]  # tenure is a strong feature
        # Its split was placed by v1's features, so v1's training rows stayed in train (a new column changes every
        # row's hash), and later versions inherit them.
        v1_features = list(load_schema(without_tenure).feature_names)
        assert json.loads(v2[lineage.SPLIT])["features"] == v1_features
        # Another added column (tenure in years, no new information): v3's split is still placed by v1's features,
        # inherited through v2, so no row v2 trained on is in v3's holdout. (The decision this protects, in both
        # directions: tests/unit/test_gate_decisions.py, a champion that remembers its training rows.)
        years = tmp_path / "with_years.csv"
        frame = pd.read_csv(BUNDLED_DATA)
        frame["tenure_years"] = frame["tenure"] / 12
        frame.to_csv(years, index=False)
        tenure = next(f for f in full.features if f.name == "tenure")
        with_years = tmp_path / "with_years.yaml"
        with_years.write_text(
            schema_yaml(
                full.model_copy(
                    update={"features": (*full.features, tenure.model_copy(update={"name": "tenure_years"}))}
                )
            )
        )
        third = train(with_years, years)
        assert "evolving v3: promoted to champion (was v2)" in third.stdout, third.stdout + third.stderr
        v3 = registry.get_version("3").tags
        assert json.loads(v3[lineage.SPLIT])["features"] == v1_features
        # v2's holdout rows that this snapshot lacks have no tenure_years: the gate says why it skipped them.
        assert "they have no 'tenure_years', the feature(s) this run adds" in v3[lineage.GATE_REASON]

        # Now the champion takes tenure: a snapshot without it cannot be compared, and nothing is trained.
        dropped = train(without_tenure)
        assert dropped.returncode == 1
        assert dropped.stderr.startswith("error: champion v3 of model 'evolving': this snapshot's schema")
        assert "removes feature(s) 'tenure'" in dropped.stderr
        assert len(registry.versions()) == 3
        # The training flow holds the same rule before its split, for the runs the CLI does not read ahead (a
        # deployment's, or one against an MLflow server): it split the churn rows by features they lack, and then
        # said a class had no holdout row (trial 43). A snapshot that only adds features gets the recorded ones.
        with pytest.raises(RegistryError) as refused:
            champion_split_features.fn("evolving", dl.tracking_uri, load_schema(without_tenure))
        assert str(refused.value).startswith("champion v3 of model 'evolving': this snapshot's schema"), refused.value
        assert "removes feature(s) 'tenure'" in str(refused.value)
        assert champion_split_features.fn("evolving", dl.tracking_uri, load_schema(with_years)) == tuple(v1_features)

        # `up` with no project file pairs the model with the default data. The default model (no champion yet) gets
        # its train deployment; `evolving`, whose champion that data cannot be gated against, gets none, and a note
        # says why, while its drift check and retrain are deployed (trial 43: its train deployment trained churn).
        plain = dl.run("up").stdout
        assert "train-churn" in plain, plain
        assert "no train deployment" not in plain, plain
        dl.env["DRIFTLOOP_MODEL_NAME"] = "evolving"
        up = dl.run("up").stdout
        deployments = next(line for line in up.splitlines() if line.strip().startswith("deployments"))
        assert "drift-check-evolving" in deployments, up
        assert "retrain-evolving" in deployments, up
        assert "train-evolving" not in deployments.replace("retrain-evolving", ""), up
        assert (
            f"note            no train deployment for 'evolving': with no project file it would train the default "
            f"data, DRIFTLOOP_DATA_PATH ({BUNDLED_DATA}), whose schema '{full.name}' its champion v3 cannot be "
            "compared with. Declare the model's data and schema in driftloop.yaml"
        ) in up, up
        # Its own data as the default: its train deployment again, and `up` removes nothing it needs.
        dl.env.update({"DRIFTLOOP_DATA_PATH": str(years), "DRIFTLOOP_SCHEMA_PATH": str(with_years)})
        own = dl.run("up").stdout
        assert "train-evolving" in own.replace("retrain-evolving", ""), own
        assert "no train deployment" not in own, own
    finally:
        dl.run("down", check=False)


def _count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"no line matching {pattern!r} in:\n{text[-3000:]}"
    return int(found.group(1).replace(",", ""))
