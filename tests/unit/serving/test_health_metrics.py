"""Model health on /metrics: the served models' newest drift check, read from the monitoring store beside the log."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from driftloop.io.check_store import open_check_store
from driftloop.serving.app import create_app
from driftloop.serving.health_metrics import ModelHealthMetrics
from driftloop.serving.source import FileModelSource
from tests.support.checks import make_record
from tests.support.serving import serving_settings

T = datetime(2026, 12, 1, 9, tzinfo=UTC)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_server_exposes_its_models_newest_check_and_no_other(tmp_path: Path, bundle_dir: Path) -> None:
    settings = serving_settings(tmp_path)
    store = open_check_store(settings.predictions_url)
    try:
        store.write(make_record(T, "churn", seed=1, shift=0.0, labelled=0, version="1"))
        store.write(make_record(T + timedelta(hours=1), "churn", seed=2, shift=2.0, labelled=400, version="1",
                                calibrated=True))  # fmt: skip
        store.write(make_record(T, "not-served", seed=3, shift=2.0, labelled=0))
    finally:
        store.close()
    with TestClient(create_app(settings, source=FileModelSource(bundle_dir))) as client:
        samples = _samples(client.get("/metrics").text)
    churn = (("model", "churn"), ("model_version", "1"))
    assert samples["driftloop_drift_check_timestamp_seconds", churn] == (T + timedelta(hours=1)).timestamp()
    assert samples["driftloop_drift_share", churn] == 0.5
    assert samples["driftloop_drift_weighted_share", churn] == pytest.approx(0.9)
    assert samples["driftloop_drift_detected", churn] == 1.0
    assert samples["driftloop_drift_episode_opened", churn] == 1.0
    assert samples["driftloop_drift_check_rows", churn] == 800
    assert samples["driftloop_label_coverage", churn] == 0.5
    assert samples["driftloop_realized_performance", (("metric", "accuracy"), *churn)] == 1.0
    assert samples["driftloop_estimated_accuracy", churn] == pytest.approx(0.7)
    assert (
        samples["driftloop_estimated_accuracy_low", churn] < 0.7 < samples["driftloop_estimated_accuracy_high", churn]
    )
    strength = samples["driftloop_drift_column_strength", (("column", "a"), *churn)]
    assert strength > 1 > samples["driftloop_drift_column_strength", (("column", "b"), *churn)]
    assert not [key for key in samples if ("model", "not-served") in key[1]]


def test_the_store_is_read_once_per_refresh_and_a_broken_store_keeps_the_last_figures(tmp_path: Path) -> None:
    database = tmp_path / "predictions.db"
    store = open_check_store(f"sqlite:///{database}")
    reads = []

    def latest():  # type: ignore[no-untyped-def]
        reads.append(1)
        return store.latest()

    registry = CollectorRegistry()
    collector = ModelHealthMetrics(latest, ["churn"], refresh_seconds=3600)
    registry.register(collector)
    try:
        assert "driftloop_drift_share{" not in generate_latest(registry).decode()  # no check yet: no series
        store.write(make_record(T, "churn", seed=1, shift=2.0, labelled=0))
        collector._read_at = float("-inf")  # the refresh is due
        first = generate_latest(registry).decode()
        generate_latest(registry)
        assert len(reads) == 2  # registration's read, then one for two scrapes
        assert 'driftloop_drift_detected{model="churn",model_version="3"} 1.0' in first
        with sqlite3.connect(database) as connection:  # a real fault: the table is gone
            connection.execute("DROP TABLE drift_checks")
        collector._read_at = float("-inf")
        after = generate_latest(registry).decode()
        assert len(reads) == 3
        assert 'driftloop_drift_detected{model="churn",model_version="3"} 1.0' in after
    finally:
        store.close()


def test_a_check_that_judged_nothing_exports_no_share() -> None:
    """Trial 18: after "insufficient data on 0 rows", /metrics said driftloop_drift_share 0.0: read as no drift."""
    from dataclasses import replace

    judged = make_record(T, "churn", seed=1, shift=2.0, labelled=0)
    unjudged = replace(judged, verdict="insufficient data", rows=0)
    registry = CollectorRegistry()
    registry.register(ModelHealthMetrics(lambda: {"churn": unjudged}, ["churn"], refresh_seconds=3600))
    text = generate_latest(registry).decode()
    assert "driftloop_drift_share{" not in text
    assert "driftloop_drift_weighted_share{" not in text
    assert 'driftloop_drift_check_rows{model="churn"' in text  # when it ran, and on how few rows, still show
    registry = CollectorRegistry()
    registry.register(ModelHealthMetrics(lambda: {"churn": judged}, ["churn"], refresh_seconds=3600))
    assert "driftloop_drift_share{" in generate_latest(registry).decode()
