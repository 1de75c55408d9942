"""Prometheus metrics of one server instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.metrics import MetricWrapperBase

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


class ServingMetrics:
    def __init__(self) -> None:
        # no *_created series: half the scrape size, nothing a dashboard reads
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "driftloop_predictions", "Predicted rows by model version and class", ["model_version", "label"], registry=r
        )
        self.model_latency = Histogram(
            "driftloop_model_latency_seconds", "onnxruntime time per request", buckets=_MODEL_BUCKETS, registry=r
        )
        self.request_latency = Histogram(
            "driftloop_request_latency_seconds",
            "Time in the handler per request, by endpoint",
            ["endpoint"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "driftloop_request_errors", "Rejected or failed requests by endpoint and reason", ["endpoint", "reason"],
            registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "driftloop_model_info", "1 for the model version being served", ["name", "version", "onnx_sha256"],
            registry=r,
        )  # fmt: skip
        self.reloads = Counter("driftloop_model_reloads", "Model swaps by result", ["result"], registry=r)
        self.log_dropped = Counter(
            "driftloop_prediction_log_dropped_rows", "Predictions not logged (queue full or store error)", registry=r
        )
        self.log_written = Counter("driftloop_prediction_log_written_rows", "Predictions logged", registry=r)
        self.log_pending = Gauge(
            "driftloop_prediction_log_pending_rows", "Predictions waiting to be logged", registry=r
        )
        self.cache = Counter("driftloop_prediction_cache", "Prediction cache lookups by result", ["result"], registry=r)
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}

    def request_timer(self, endpoint: str) -> Histogram:
        key = ("request", endpoint)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.request_latency.labels(endpoint)
        return child  # type: ignore[return-value]

    def count_predictions(self, version: str, label: str, rows: int = 1) -> None:
        key = ("pred", version, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.predictions.labels(version, label)
        child.inc(rows)  # type: ignore[attr-defined]

    def count_error(self, endpoint: str, reason: str) -> None:
        self.errors.labels(endpoint, reason).inc()

    def set_model(self, name: str, version: str, onnx_sha256: str | None) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, onnx_sha256 or "").set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
