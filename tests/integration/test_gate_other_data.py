"""An ordinary run on other data than the champion's is also judged on the champion's own holdout rows it lacks.

A new user's trial: after a retrain taught the champion shifted rows, `driftloop train` on the original file alone
was promoted, judged only on that file's holdout, and the shift's fix was silently undone. The worlds are
``tests.support.worlds``: in the shifted one the target follows another rule, which only a model that saw
shifted rows can learn.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from driftloop.io.registry import ModelRegistry
from tests.support.cli import Driftloop
from tests.support.worlds import world, world_schema

pytestmark = pytest.mark.integration

ESTIMATOR = "hist_gradient_boosting"  # a tree: it learns both worlds' rules at once


def _write(directory: Path, name: str, *parts: pd.DataFrame) -> str:
    path = directory / f"{name}.csv"
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)
    return str(path)


def _train(dl: Driftloop, data: str, schema: Path) -> str:
    result = dl.run(
        "train", "--data", data, "--schema", str(schema), "--model-name", "grades", "--estimator", ESTIMATOR
    )
    return result.stdout


@pytest.mark.parametrize("seed", [1, 2])
def test_a_run_without_the_rows_the_champion_learnt_is_refused_and_one_as_good_there_is_not(
    driftloop: Driftloop, tmp_path: Path, seed: int
) -> None:
    schema = tmp_path / "grades.schema.yaml"
    schema.write_text(yaml.safe_dump(world_schema("multiclass").model_dump(mode="json", exclude_none=True)))
    base, shifted = world(3000, seed, "multiclass"), world(1500, seed + 100, "multiclass", shifted=True)
    registry = ModelRegistry("grades", driftloop.tracking_uri)

    _train(driftloop, _write(tmp_path, "base", base), schema)
    both = _train(driftloop, _write(tmp_path, "both", base, shifted), schema)
    assert "grades v2: promoted" in both, both  # v1 never saw the shifted rows of v2's holdout
    assert "rows only the champion had (" not in both  # not tested: v2's data holds all of v1's, none is lacking

    # The base file alone: as good as v2 on its own holdout, hopeless on v2's shifted holdout rows it lacks.
    alone = _train(driftloop, _write(tmp_path, "alone", base), schema)
    assert "grades v3: not promoted" in alone, alone
    assert "significantly worse than champion v2 on rows only the champion had" in alone, alone
    champion = registry.champion()
    assert champion is not None
    assert str(champion.version) == "2"

    # Fresh rows of both worlds, none of them v2's: tested on all of v2's holdout rows, and not refused there.
    fresh = world(3000, seed + 200, "multiclass"), world(1500, seed + 300, "multiclass", shifted=True)
    again = _train(driftloop, _write(tmp_path, "fresh", *fresh), schema)
    assert "rows only the champion had (" in again, again  # the segment was tested
    assert "significantly worse than champion v2 on rows only the champion had" not in again, again
