"""Prometheus metrics of one server instance (its own registry, so several apps can live in one process).

Every series a request touches is labelled by ``model``: one server serves several models. A request for a model
the server does not serve is counted under ``UNKNOWN_MODEL``, so a URL cannot mint new series.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

# Model time is a few microseconds a row (churn's grouped graph: 6 µs), up to milliseconds for a large batch.
_MODEL_BUCKETS = (
    0.000005,
    0.00001,
    0.00002,
    0.00005,
    0.0001,
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
)
_REQUEST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


REGRESSION_LABEL = "value"
UNKNOWN_MODEL = "(unknown)"


class PredictedValues(Collector):
    """A regressor's predicted values as a histogram per model and version, on the version's own bucket edges.

    A fixed set of buckets cannot fit every target's scale, and prometheus_client fixes a Histogram's buckets
    for every label, so this collector keeps one ``(edges, counts, sum)`` per version; a batch is one
    ``searchsorted``.
    """

    name = "driftloop_predicted_value"

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, list[float]]] = {}

    def observe(self, model: str, version: str, edges: Sequence[float], values: np.ndarray) -> None:
        state = self._versions.get((model, version))
        if state is None:
            bounds = np.asarray(edges, dtype=np.float64)
            state = self._versions[model, version] = (bounds, np.zeros(bounds.size + 1, dtype=np.int64), [0.0])
        bounds, counts, total = state
        finite = values[np.isfinite(values)]
        # Prometheus buckets are "≤ edge": searchsorted(side="left") puts a value equal to an edge in that bucket.
        np.add.at(counts, np.searchsorted(bounds, finite, side="left"), 1)
        total[0] += float(finite.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.name, "Predicted values by model and version", labels=["model", "model_version"]
        )
        for (model, version), (bounds, counts, total) in self._versions.items():
            cumulative = np.cumsum(counts).tolist()
            buckets = [(f"{edge:.6g}", float(count)) for edge, count in zip(bounds.tolist(), cumulative, strict=False)]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric([model, version], buckets, total[0])
        yield family


class ServingMetrics:
    def __init__(self) -> None:
        # no *_created series: half the scrape size, nothing a dashboard reads
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "driftloop_predictions",
            "Predicted rows by model, version and class (a regressor's: 'value')",
            ["model", "model_version", "label"],
            registry=r,
        )
        self.model_latency = Histogram(
            "driftloop_model_latency_seconds",
            "onnxruntime time per request, by model",
            ["model"],
            buckets=_MODEL_BUCKETS,
            registry=r,
        )
        self.request_latency = Histogram(
            "driftloop_request_latency_seconds",
            "Time in the handler per request, by model and endpoint",
            ["model", "endpoint"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "driftloop_request_errors", "Rejected or failed requests by model, endpoint and reason",
            ["model", "endpoint", "reason"], registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "driftloop_model_info", "1 for each model version being served", ["name", "version", "onnx_sha256"],
            registry=r,
        )  # fmt: skip
        self.reloads = Counter(
            "driftloop_model_reloads", "Model swaps by model and result", ["model", "result"], registry=r
        )
        self.log_dropped = Counter(
            "driftloop_prediction_log_dropped_rows", "Predictions not logged (queue full or store error)", registry=r
        )
        self.log_written = Counter("driftloop_prediction_log_written_rows", "Predictions logged", registry=r)
        self.log_pending = Gauge(
            "driftloop_prediction_log_pending_rows", "Predictions waiting to be logged", registry=r
        )
        self.cache = Counter("driftloop_prediction_cache", "Prediction cache lookups by result", ["result"], registry=r)
        self.values = PredictedValues()
        r.register(self.values)
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}
        self._info: dict[str, tuple[str, str, str]] = {}  # model → the labels of its model_info series

    def request_timer(self, model: str, endpoint: str) -> Histogram:
        key = ("request", model, endpoint)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.request_latency.labels(model, endpoint)
        return child  # type: ignore[return-value]

    def model_timer(self, model: str) -> Histogram:
        key = ("model", model)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.model_latency.labels(model)
        return child  # type: ignore[return-value]

    def count_predictions(self, model: str, version: str, label: str, rows: int = 1) -> None:
        key = ("pred", model, version, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.predictions.labels(model, version, label)
        child.inc(rows)  # type: ignore[attr-defined]

    def count_values(self, model: str, version: str, edges: Sequence[float], values: np.ndarray) -> None:
        """A regressor's predictions: counted as rows (label ``value``) and put in its histogram."""
        self.count_predictions(model, version, REGRESSION_LABEL, int(values.size))
        self.values.observe(model, version, edges, values)

    def count_error(self, model: str, endpoint: str, reason: str) -> None:
        self.errors.labels(model, endpoint, reason).inc()

    def set_model(self, name: str, version: str, onnx_sha256: str | None) -> None:
        """``name`` now serves ``version``: its old model_info series goes, the other models' stay."""
        old = self._info.get(name)
        if old is not None:
            self.model_info.remove(*old)
        self._info[name] = labels = (name, version, onnx_sha256 or "")
        self.model_info.labels(*labels).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
