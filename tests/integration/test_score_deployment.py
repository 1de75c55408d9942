"""The `score-NAME` deployment that `driftloop up` makes from a project's score job, run by the stack's worker.

A model with a score job in driftloop.yaml (a Parquet directory, a cron) gets a scheduled `score-NAME`
deployment; a run of it (asked for now, not waited for at 02:00) scores the directory on Dask into its own
subdirectory, sets bad rows aside, and leaves its progress and counts as the flow run's artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop.io.datasets import schema_yaml
from tests.support.stack import api, artifact, flow_run_logs, running_stack, wait_for
from tests.support.worlds import TARGET, world, world_schema

pytestmark = pytest.mark.integration


def _project(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    world(1500, 1, "multiclass").to_csv(tmp_path / "accounts.csv", index=False)
    schema = world_schema("multiclass").model_copy(update={"name": "accounts"})
    (tmp_path / "accounts.schema.yaml").write_text(schema_yaml(schema))
    tonight = world(3000, 2, "multiclass").drop(columns=[TARGET]).rename_axis("id").reset_index()
    tonight.loc[tonight.index[:7], "x1"] = np.nan  # missing, and x1 is not nullable: set aside, not fatal
    (tmp_path / "tonight").mkdir()
    for index in range(3):
        tonight.iloc[index * 1000 : (index + 1) * 1000].to_parquet(tmp_path / "tonight" / f"{index}.parquet")
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "models:\n"
        "  - name: accounts\n"
        "    data: accounts.csv\n"
        "    schema: accounts.schema.yaml\n"
        "    score: {data: tonight, out: scored, cron: '0 2 * * *', keys: [id]}\n"
    )
    return path, tonight


def _final(client: httpx.Client, run_id: str) -> dict[str, Any] | None:
    run: dict[str, Any] = client.get(f"/flow_runs/{run_id}").json()
    return run if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None


def test_a_score_job_becomes_a_scheduled_deployment_that_scores_on_dask(tmp_path: Path) -> None:
    project, tonight = _project(tmp_path)
    with running_stack(tmp_path, project_file=str(project)) as dl:
        dl.run("train")
        with api(dl) as client:
            deployment = client.get("/deployments/name/score-table/score-accounts")
            deployment.raise_for_status()
            body = deployment.json()
            assert [s["schedule"]["cron"] for s in body["schedules"]] == ["0 2 * * *"]
            assert body["parameters"]["data"] == str(tmp_path / "tonight")
            created = client.post(f"/deployments/{body['id']}/create_flow_run", json={})
            created.raise_for_status()
            # Its schedule has put the next nights' runs there too: wait for this one only.
            run = wait_for("the score run", lambda: _final(client, created.json()["id"]), timeout=300, every=2)
        assert run["state_type"] == "COMPLETED", flow_run_logs(dl, run["id"])

        (directory,) = (tmp_path / "scored").iterdir()  # the run's own subdirectory
        scored = pd.read_parquet(directory).sort_values("id", ignore_index=True)
        assert scored["id"].tolist() == tonight["id"].iloc[7:].tolist()
        assert set(scored["model_version"]) == {"1"}
        assert len(pd.read_parquet(directory / "_rejected")) == 7
        summary = artifact(dl, run["id"], "scoring-run")
        assert "# Scored 3,000 rows with accounts v1" in summary
        assert "rejected: 7 rows" in summary
        assert float(artifact(dl, run["id"], "scoring-progress")) == 100.0
