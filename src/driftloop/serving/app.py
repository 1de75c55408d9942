"""The serving app: one FastAPI application speaking the tutorial's, MLflow's and the V2 inference protocols.

Run it with ``driftloop serve`` or ``uvicorn driftloop.serving.app:create_app --factory``. Handlers read the
body themselves (orjson) and validate it with the model's ``FeatureParser`` instead of pydantic models: the
request schema depends on the served model, and the hot path stays a few microseconds over onnxruntime.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from driftloop.serving import protocols
from driftloop.serving.cache import PredictionCache
from driftloop.serving.inputs import FeatureBatch, FeatureParser, InputError
from driftloop.serving.metrics import ServingMetrics
from driftloop.serving.model import ServingModel
from driftloop.serving.prediction_log import (
    Feedback,
    NullPredictionLogger,
    PredictionEvent,
    PredictionLogger,
    SqlPredictionStore,
    open_prediction_log,
)
from driftloop.serving.reloader import ModelHolder, ModelWatcher
from driftloop.serving.source import FileModelSource, ModelSource, RegistryModelSource
from driftloop.settings import Settings, get_settings

log = logging.getLogger("driftloop.serving")

JSON = "application/json"
VERSION_HEADER = "x-model-version"
REQUEST_ID_HEADER = "x-request-id"

Parse = Callable[[Any, FeatureParser], FeatureBatch]
Respond = Callable[[np.ndarray, np.ndarray, ServingModel], Any]
ErrorBody = Callable[[InputError], Any]


class NotReady(Exception):
    """No model has passed its self-check yet."""


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON)


def default_source(settings: Settings) -> ModelSource:
    if settings.model_source == "file":
        if settings.model_dir is None:
            raise ValueError("DRIFTLOOP_MODEL_SOURCE=file needs DRIFTLOOP_MODEL_DIR (a model bundle directory)")
        return FileModelSource(settings.model_dir)
    return RegistryModelSource(settings.model_name, settings.tracking_uri, settings.home / "serving-cache")


class Server:
    """The state one app instance owns: the model holder, metrics, the prediction logger."""

    def __init__(self, settings: Settings, source: ModelSource) -> None:
        self.settings = settings
        self.metrics = ServingMetrics()
        self.holder = ModelHolder(source, settings.max_batch_rows, settings.unknown_categories, self._reloaded)
        self.watcher = ModelWatcher(self.holder, settings.reload_interval)
        self.logger: PredictionLogger | NullPredictionLogger = NullPredictionLogger()
        self.store: SqlPredictionStore | None = None
        self.cache = PredictionCache(settings.redis_url, settings.cache_ttl_seconds) if settings.redis_url else None

    def _reloaded(self, result: str, model: ServingModel | None, error: str | None) -> None:
        self.metrics.reloads.labels(result).inc()
        if model is not None:
            self.metrics.set_model(model.info.name, model.version, model.info.onnx_sha256)

    def start(self) -> None:
        if self.settings.prediction_log:
            self.store = open_prediction_log(self.settings.predictions_url)
            self.logger = PredictionLogger(
                self.store,
                max_queue=self.settings.prediction_log_queue,
                on_drop=self.metrics.log_dropped.inc,
                on_write=self.metrics.log_written.inc,
                on_error=lambda error: log.error("prediction log write failed: %s", error),
            )
        self.metrics.log_pending.set_function(lambda: self.logger.pending)
        self.holder.refresh()
        self.watcher.start()

    async def stop(self) -> None:
        self.watcher.stop()
        self.logger.close()
        if self.cache is not None:
            await self.cache.close()

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise InputError(413, "body_too_large", f"request body of {declared} bytes exceeds the limit of {limit}")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise InputError(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def decode_json(body: bytes) -> Any:
        if not body:
            raise InputError(400, "malformed_json", "empty request body; expected a JSON document")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            if b"NaN" in body or b"Infinity" in body:
                # Python's json.dumps and tritonclient write NaN/Infinity literals: read them, and let the
                # parser treat NaN as a missing value where allowed and refuse infinities by name.
                try:
                    return json.loads(body)
                except ValueError:
                    pass
            raise InputError(400, "malformed_json", f"malformed JSON: {error}") from None

    async def serve(
        self,
        request: Request,
        endpoint: str,
        parse: Parse,
        respond: Respond,
        error_body: ErrorBody,
        text: str | None = None,
    ) -> Response:
        """Validate, predict, count, log, respond; bad input becomes a 4xx in the protocol's error shape.

        ``text`` is a body already read as text (CSV); otherwise the body is read here and decoded as JSON.
        """
        started = time.perf_counter()
        model = self.holder.model
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        headers = {REQUEST_ID_HEADER: request_id}
        try:
            if model is None:
                raise NotReady
            raw = text.encode() if text is not None else await self.read_body(request)
            batch = parse(text if text is not None else self.decode_json(raw), model.parser)
            labels, proba = await self.predict(model, batch, endpoint, raw)
            self._count(model, labels)
            self.logger.submit(
                PredictionEvent(
                    ts=time.time(),
                    request_id=request_id,
                    model_name=model.info.name,
                    model_version=model.version,
                    features=batch.columns,
                    labels=np.asarray(model.class_names, dtype=object)[labels],
                    probabilities=proba,
                )
            )
            response = _json(respond(labels, proba, model), 200, headers)
        except InputError as error:
            self.metrics.count_error(endpoint, error.reason)
            response = _json(error_body(error), error.status, headers)
        except NotReady:
            self.metrics.count_error(endpoint, "not_ready")
            response = _json(error_body(InputError(503, "not_ready", self.not_ready_reason())), 503, headers)
        self.metrics.request_timer(endpoint).observe(time.perf_counter() - started)
        return response

    async def predict(
        self, model: ServingModel, batch: FeatureBatch, endpoint: str, raw: bytes
    ) -> tuple[np.ndarray, np.ndarray]:
        key = None
        if self.cache is not None:
            key = PredictionCache.key(model.version, endpoint, raw)
            try:
                cached = await self.cache.get(key)
            except Exception as error:  # a cache outage must not fail a request: fall through to the model
                self.metrics.count_error(endpoint, "cache_unavailable")
                log.warning("prediction cache unavailable: %s", error)
                cached, key = None, None
            if key is not None:
                self.metrics.cache.labels("hit" if cached is not None else "miss").inc()
            if cached is not None:
                return cached
        started = time.perf_counter()
        labels, proba = model.predict(batch)
        self.metrics.model_latency.observe(time.perf_counter() - started)
        if self.cache is not None and key is not None:
            try:
                await self.cache.put(key, labels, proba)
            except Exception as error:
                log.warning("prediction cache unavailable: %s", error)
        return labels, proba

    def _count(self, model: ServingModel, labels: np.ndarray) -> None:
        if labels.shape[0] == 1:
            self.metrics.count_predictions(model.version, model.class_names[int(labels[0])])
            return
        for index, rows in enumerate(np.bincount(labels, minlength=2)):
            if rows:
                self.metrics.count_predictions(model.version, model.class_names[index], int(rows))

    def not_ready_reason(self) -> str:
        holder = self.holder
        if holder.last_failure is not None:
            return f"no model is serving: version {holder.last_failure.version} failed: {holder.last_failure.error}"
        if holder.last_check_error is not None:
            return f"no model yet: cannot read the model source: {holder.last_check_error}"
        if self.settings.model_source == "registry":
            return f"no model yet: model {self.settings.model_name!r} has no champion (run `driftloop train`)"
        return "no model loaded yet"


def _error_detail(error: InputError) -> dict[str, Any]:
    return {"detail": error.message, "reason": error.reason}


def create_app(settings: Settings | None = None, source: ModelSource | None = None) -> FastAPI:
    """The serving application; ``source`` defaults to the settings' registry alias or model directory."""
    settings = settings or get_settings()
    server = Server(settings, source or default_source(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server.start()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(
        title="driftloop model server",
        description="Serves the champion model (ONNX). Protocols: the tutorial's /predict, MLflow's /invocations, "
        "and the Open Inference Protocol (KServe V2) under /v2.",
        version="1",
        lifespan=lifespan,
    )
    app.state.server = server
    _add_version_header(app, server)
    _routes(app, server)
    _openapi_examples(app, server)
    return app


def _add_version_header(app: FastAPI, server: Server) -> None:
    """Every response, errors and /metrics included, names the model version that was being served."""
    inner = app.build_middleware_stack

    def build() -> Any:
        asgi = inner()

        async def with_version(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await asgi(scope, receive, send)
                return

            async def send_with_header(message: Any) -> None:
                if message["type"] == "http.response.start":
                    model = server.holder.model
                    version = model.version if model else "none"
                    message["headers"] = [*message.get("headers", []), (b"x-model-version", version.encode())]
                await send(message)

            await asgi(scope, receive, send_with_header)

        return with_version

    app.build_middleware_stack = build  # type: ignore[method-assign]


def _routes(app: FastAPI, server: Server) -> None:  # noqa: C901 (one place lists every endpoint)
    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], responses={503: {"description": "no model has passed its self-check"}})
    async def ready() -> Response:
        """Readiness: a model is loaded and passed its self-check."""
        model = server.holder.model
        if model is None:
            return _json({"status": "not ready", "reason": server.not_ready_reason()}, 503)
        return _json({"status": "ready", "model_version": model.version})

    @app.get("/model", tags=["model"])
    async def model_info() -> Response:
        """Identity and lineage of the served version, and the last refused version if any."""
        model = server.holder.model
        failure = server.holder.last_failure
        content: dict[str, Any] = {
            **(model.info.as_dict() if model else {"name": server.settings.model_name, "version": None}),
            "loaded_at": _iso(model.loaded_at) if model else None,
            "last_reload_failure": None
            if failure is None
            else {"version": failure.version, "error": failure.error, "at": _iso(failure.at)},
        }
        return _json(content, 200 if model else 503)

    @app.get("/metrics", tags=["model"])
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/predict", tags=["predict"], openapi_extra=_body("predict"))
    async def predict(request: Request) -> Response:
        """One row: `{"features": [v1, ...]}` in the model's feature order, or `{"features": {"name": v}}`."""
        return await server.serve(request, "predict", protocols.parse_predict, _predict_response, _error_detail)

    @app.post("/predict/batch", tags=["predict"], openapi_extra=_body("batch"))
    async def predict_batch(request: Request) -> Response:
        """Many rows: `{"instances": [[...], ...]}` or a list of named records."""
        return await server.serve(
            request, "predict_batch", protocols.parse_predict_batch, _batch_response, _error_detail
        )

    @app.post("/invocations", tags=["mlflow"], openapi_extra=_body("invocations", csv=True))
    async def invocations(request: Request) -> Response:
        """MLflow's scoring protocol: dataframe_split, dataframe_records, instances, inputs (JSON), or CSV."""
        content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if content_type == "text/csv":
            try:
                text = (await server.read_body(request)).decode("utf-8")
            except (InputError, UnicodeDecodeError) as error:
                reason = error if isinstance(error, InputError) else InputError(400, "malformed_csv", str(error))
                server.metrics.count_error("invocations", reason.reason)
                return _json(protocols.mlflow_error(reason), reason.status)
            return await server.serve(
                request, "invocations", protocols.parse_invocations_csv, _invocations_response,
                protocols.mlflow_error, text=text,
            )  # fmt: skip
        if content_type != JSON:
            error = InputError(415, "unsupported", f"content type {content_type!r}: send application/json or text/csv")
            server.metrics.count_error("invocations", error.reason)
            return _json(protocols.mlflow_error(error), error.status)
        return await server.serve(
            request, "invocations", protocols.parse_invocations, _invocations_response, protocols.mlflow_error
        )

    @app.post("/feedback", tags=["predict"], status_code=202, openapi_extra=_body("feedback"))
    async def give_feedback(request: Request) -> Response:
        """True classes for earlier predictions (by request id and row), for the drift monitor's label check.

        `{"request_id": "...", "label": "Yes"}`, or `{"items": [{"request_id": "...", "row": 0, "label": "No"}]}`.
        """
        model = server.holder.model
        try:
            if server.store is None:
                raise InputError(
                    409, "prediction_log_off", "feedback needs the prediction log (DRIFTLOOP_PREDICTION_LOG)"
                )
            classes = model.class_names if model else None
            items = parse_feedback(server.decode_json(await server.read_body(request)), classes)
            written = await run_in_threadpool(server.store.write_feedback, server.settings.model_name, items)
        except InputError as error:
            server.metrics.count_error("feedback", error.reason)
            return _json(_error_detail(error), error.status)
        return _json({"accepted": written}, 202)

    @app.get("/v2", tags=["v2"])
    async def v2_server() -> dict[str, Any]:
        """V2 server metadata."""
        return {"name": "driftloop", "version": "1", "extensions": []}

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", tags=["v2"])
    async def v2_ready() -> Response:
        return _json({"ready": server.holder.model is not None}, 200 if server.holder.model else 503)

    @app.get("/v2/models/{name}", tags=["v2"])
    async def v2_metadata(name: str) -> Response:
        model = _v2_model(server, name)
        if isinstance(model, Response):
            return model
        return _json(protocols.v2_model_metadata(model.info.name, model.version, model.parser.schema))

    @app.get("/v2/models/{name}/ready", tags=["v2"])
    async def v2_model_ready(name: str) -> Response:
        model = _v2_model(server, name)
        return model if isinstance(model, Response) else _json({"name": name, "ready": True})

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=_body("v2_infer"))
    async def v2_infer(name: str, request: Request) -> Response:
        """Open Inference Protocol inference (JSON tensors; the binary extension is not supported)."""
        model = _v2_model(server, name)
        if isinstance(model, Response):
            return model
        if protocols.V2_BINARY_HEADER in request.headers:
            error = InputError(400, "unsupported", "binary tensor data is not supported; use binary_data=False")
            server.metrics.count_error("v2_infer", error.reason)
            return _json(protocols.v2_error(error.message), error.status)
        # What the request asked for, captured while parsing for use when responding.
        requested: list[list[str] | None] = [None]
        body_id: list[Any] = [None]

        def parse(body: Any, parser: FeatureParser) -> FeatureBatch:
            batch, outputs = protocols.parse_v2_infer(body, parser)
            requested[0] = outputs
            body_id[0] = body.get("id") if isinstance(body, dict) else None
            return batch

        def respond(labels: np.ndarray, proba: np.ndarray, served: ServingModel) -> Any:
            return protocols.v2_infer_response(
                served.info.name, served.version, labels, proba, requested[0], body_id[0]
            )

        return await server.serve(request, "v2_infer", parse, respond, lambda error: protocols.v2_error(error.message))


def parse_feedback(body: Any, classes: tuple[str, str] | None) -> list[Feedback]:
    """Feedback items from either body form; labels must be one of the model's classes."""
    entries = body.get("items") if isinstance(body, dict) and "items" in body else [body]
    if not isinstance(entries, list) or not entries:
        raise InputError(422, "wrong_shape", 'expected {"request_id", "label"} or {"items": [...]} with items')
    items = []
    for index, entry in enumerate(entries):
        where = f"item {index}: " if len(entries) > 1 else ""
        if not isinstance(entry, dict):
            raise InputError(422, "wrong_shape", f"{where}expected an object with request_id and label")
        request_id, label, row = entry.get("request_id"), entry.get("label"), entry.get("row", 0)
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
            raise InputError(422, "wrong_type", f"{where}request_id must be a non-empty string (≤ 128 characters)")
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise InputError(422, "wrong_type", f"{where}row must be a row index ≥ 0, got {row!r}")
        if not isinstance(label, str) or (classes is not None and label not in classes):
            expected = " or ".join(repr(c) for c in classes) if classes else "a class name"
            raise InputError(422, "unknown_label", f"{where}label must be {expected}, got {label!r}")
        items.append(Feedback(request_id=request_id, row_index=row, actual=label))
    return items


def _v2_model(server: Server, name: str) -> ServingModel | Response:
    model = server.holder.model
    if model is None:
        return _json(protocols.v2_error(server.not_ready_reason()), 503)
    if name != model.info.name:
        return _json(protocols.v2_error(f"unknown model {name!r}; this server serves {model.info.name!r}"), 404)
    return model


def _predict_response(labels: np.ndarray, proba: np.ndarray, model: ServingModel) -> Any:
    return protocols.predict_response(labels, proba, model.parser.schema, model.version)


def _batch_response(labels: np.ndarray, proba: np.ndarray, model: ServingModel) -> Any:
    return protocols.batch_response(labels, proba, model.parser.schema, model.version)


def _invocations_response(labels: np.ndarray, proba: np.ndarray, model: ServingModel) -> Any:
    return protocols.invocations_response(labels, proba)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _body(kind: str, csv: bool = False) -> dict[str, Any]:
    """A request body declaration; its examples are filled per served model by ``_openapi_examples``."""
    content: dict[str, Any] = {JSON: {"schema": {"type": "object"}, "x-driftloop-examples": kind}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "content": content}}


def _openapi_examples(app: FastAPI, server: Server) -> None:
    """OpenAPI with request examples built from the served model's schema (rebuilt when the model changes)."""
    cache: dict[str | None, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        model = server.holder.model
        key = model.version if model else None
        if key in cache:
            return cache[key]
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        examples = protocols.openapi_examples(model.parser.schema) if model else {}
        if model:
            examples["feedback"] = {"request_id": "3f2a9c0e5b7d4e1f", "label": model.class_names[1]}
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                body = operation.get("requestBody", {}).get("content", {}).get(JSON)
                if not body:
                    continue
                kind = body.pop("x-driftloop-examples", None)
                chosen = {name: {"value": value} for name, value in examples.items() if name.startswith(kind or "-")}
                if chosen:
                    body["examples"] = chosen
        cache.clear()
        cache[key] = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
