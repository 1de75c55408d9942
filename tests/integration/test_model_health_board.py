"""The model-health board's queries against a real Prometheus scraping a real model server.

Grafana cannot run here, so its dashboards are checked as far as they can be without it: every panel's and every
annotation's PromQL is run by Prometheus (Debian's) on what it scraped from `python -m driftloop.serving`, whose
/metrics carries the newest drift check kept in its prediction log's database. Each query must be accepted, and
each one that has something to show on this classifier must return series.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from driftloop.io.check_store import open_check_store
from tests.support.bundles import train_model, write_bundle
from tests.support.checks import make_record
from tests.support.dashboards import DASHBOARDS, dashboard_queries
from tests.support.prometheus import prometheus_scraping
from tests.support.serving import server_process

pytestmark = pytest.mark.integration

# A classifier has no RMSE; everything else on the board has a series once two checks were scraped.
EMPTY_FOR_A_CLASSIFIER = ("Regressors: realized RMSE",)


def test_every_board_query_runs_on_real_scrapes_and_shows_the_checks(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle" / "v1", train_model(rows=600, seed=0), "1")
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    checks = open_check_store(url)
    try:
        checks.write(make_record(datetime.now(UTC), "churn", seed=1, shift=0.0, labelled=0, version="1"))
        with (
            server_process(
                tmp_path, bundle, DRIFTLOOP_PREDICTION_LOG="true", DRIFTLOOP_PREDICTION_LOG_URL=url
            ) as server,
            prometheus_scraping(tmp_path / "prometheus", [server.url.removeprefix("http://")]) as prometheus,
        ):
            first = prometheus.wait_for('driftloop_drift_share{model="churn"}')
            assert float(first[0]["value"][1]) == 0.0
            # A later check that drifts and opens an episode, as the server reads it (every 10 s at most).
            checks.write(make_record(datetime.now(UTC), "churn", 2, 2.0, 400, version="1", calibrated=True))
            prometheus.wait_for('driftloop_drift_detected{model="churn"} == 1', timeout=60)
            time.sleep(2)  # a couple more scrapes
            for path in DASHBOARDS:
                for title, expr in dashboard_queries(json.loads(path.read_text())):
                    result = prometheus.query(expr)
                    if path.name == "model-health.json" and title not in EMPTY_FOR_A_CLASSIFIER:
                        assert result, f"{path.name} / {title}: {expr} returned nothing"
            share = prometheus.query("max by (model) (driftloop_drift_share)")
            assert [(r["metric"]["model"], float(r["value"][1])) for r in share] == [("churn", 0.5)]
            top = prometheus.query("topk(5, max by (model, column) (driftloop_drift_column_strength))")
            assert {r["metric"]["column"] for r in top} == {"a", "b"}
            episodes = prometheus.query(
                "max by (model) (driftloop_drift_episode_opened) == 1 and "
                "max by (model) (changes(driftloop_drift_check_timestamp_seconds[2m])) > 0"
            )
            assert [r["metric"]["model"] for r in episodes] == ["churn"]
    finally:
        checks.close()
