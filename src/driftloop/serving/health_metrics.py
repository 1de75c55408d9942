"""Model health as Prometheus metrics: each served model's newest drift check, read from the monitoring store.

The drift check is a batch job (a Prefect flow) with nothing to scrape; its figures are kept in the prediction
log's database (``io.check_store``), which the server already writes. Exposing them here puts drift, estimated and
realized performance and label coverage beside the traffic they describe, on the dashboard Prometheus feeds, with
no exporter to run. The store is read at most once per ``refresh_seconds``, whatever the scrape rate.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from driftloop.core.check_record import CheckRecord
from driftloop.core.drift_rule import JUDGED

log = logging.getLogger(__name__)

_VERSION = ["model", "model_version"]


class ModelHealthMetrics(Collector):
    """The ``driftloop_drift_*``, ``driftloop_estimated_*``, ``driftloop_realized_*`` and coverage gauges."""

    def __init__(
        self, read_latest: Callable[[], dict[str, CheckRecord]], models: Collection[str], refresh_seconds: float = 10
    ) -> None:
        self._read_latest = read_latest
        self._models = frozenset(models)
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._records: dict[str, CheckRecord] = {}
        self._read_at = -math.inf

    def _latest(self) -> list[CheckRecord]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh:
                try:
                    self._records = self._read_latest()
                except Exception as error:  # a scrape must never fail because the store is away: last known
                    log.warning("model health metrics: the monitoring store cannot be read: %s", error)
                self._read_at = time.monotonic()
            return [record for name, record in sorted(self._records.items()) if name in self._models]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        records = self._latest()
        families = {
            "checked": _gauge("driftloop_drift_check_timestamp_seconds", "When the newest drift check ran (Unix time)"),
            "rows": _gauge("driftloop_drift_check_rows", "Predictions the newest drift check tested"),
            "share": _gauge("driftloop_drift_share", "Share of the features that drifted (Evidently's rule)"),
            "weighted": _gauge(
                "driftloop_drift_weighted_share", "Importance-weighted share of the features that drifted"
            ),
            "detected": _gauge("driftloop_drift_detected", "1 when the newest check's verdict was drift, else 0"),
            "episode": _gauge(
                "driftloop_drift_episode_opened", "1 when the newest check opened (or re-opened) a drift episode"
            ),
            "strength": _gauge(
                "driftloop_drift_column_strength",
                "A column's drift score relative to its threshold (≥ 1: drifted), for the strongest columns",
                [*_VERSION, "column"],
            ),
            "estimated": _gauge("driftloop_estimated_accuracy", "Accuracy estimated without labels (CBPE)"),
            "low": _gauge("driftloop_estimated_accuracy_low", "The estimate's 95% interval, low end"),
            "high": _gauge("driftloop_estimated_accuracy_high", "The estimate's 95% interval, high end"),
            "realized": _gauge(
                "driftloop_realized_performance",
                "The label check's metric on the labelled rows (accuracy, or a regressor's RMSE)",
                [*_VERSION, "metric"],
            ),
            "coverage": _gauge("driftloop_label_coverage", "Share of the checked predictions whose label came back"),
        }
        for record in records:
            labels = [record.model_name, record.model_version]
            families["checked"].add_metric(labels, record.ts.timestamp())
            families["rows"].add_metric(labels, record.rows)
            families["detected"].add_metric(labels, 1.0 if record.verdict == "drift" else 0.0)
            families["episode"].add_metric(labels, 1.0 if record.opened_episode else 0.0)
            if record.verdict in JUDGED:  # a check on too few rows tested nothing: no share, not a share of 0
                families["share"].add_metric(labels, record.share)
                if record.weighted_share is not None:
                    families["weighted"].add_metric(labels, record.weighted_share)
            for column in record.columns:
                if column.get("strength") is not None:
                    families["strength"].add_metric([*labels, column["column"]], column["strength"])
            if record.estimated_accuracy is not None:
                families["estimated"].add_metric(labels, record.estimated_accuracy)
            if record.estimated_low is not None and record.estimated_high is not None:
                families["low"].add_metric(labels, record.estimated_low)
                families["high"].add_metric(labels, record.estimated_high)
            if record.realized_value is not None:
                families["realized"].add_metric([*labels, record.realized_metric], record.realized_value)
            if record.label_coverage is not None:
                families["coverage"].add_metric(labels, record.label_coverage)
        yield from families.values()


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels or _VERSION)
