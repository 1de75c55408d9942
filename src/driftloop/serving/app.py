"""The serving app: one FastAPI application speaking the tutorial's, MLflow's and the V2 inference protocols.

Run it with ``driftloop serve`` or ``uvicorn driftloop.serving.app:create_app --factory``. Handlers read the
body themselves (orjson) and validate it with the model's ``FeatureParser`` instead of pydantic models: the
request schema depends on the served model, and the hot path stays a few microseconds over onnxruntime.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from driftloop.errors import InputError, ModelNotReady
from driftloop.io.prediction_store import (
    Feedback,
    PredictionEvent,
    PredictionRow,
    SqlPredictionStore,
    open_prediction_log,
)
from driftloop.serving import protocols
from driftloop.serving.cache import PredictionCache
from driftloop.serving.inputs import FeatureBatch, FeatureParser
from driftloop.serving.metrics import ServingMetrics
from driftloop.serving.model import ServingModel
from driftloop.serving.prediction_log import NullPredictionLogger, PredictionLogger
from driftloop.serving.reloader import ModelHolder, ModelWatcher
from driftloop.serving.source import FileModelSource, ModelSource, RegistryModelSource
from driftloop.settings import Settings, get_settings

log = logging.getLogger("driftloop.serving")

JSON = "application/json"
JSON_BYTES = JSON.encode()
VERSION_HEADER = "x-model-version"
REQUEST_ID_HEADER = "x-request-id"
# The prediction log's column width: a longer incoming id is replaced, or its batch of log rows would be lost.
MAX_REQUEST_ID = 128

Parse = Callable[[Any, FeatureParser], FeatureBatch]
Respond = Callable[[np.ndarray, np.ndarray, ServingModel], Any]
ErrorBody = Callable[[InputError], Any]
Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

_SERVER_ERROR = b"Internal Server Error"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A prediction endpoint: its metrics label, how it reads a decoded body, and how it answers."""

    name: str
    parse: Parse
    respond: Respond
    error_body: ErrorBody
    # The status for content that breaks the schema: 422, or 400 where the protocol says so (MLflow's server).
    invalid_status: int = 422


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON)


def _start(status: int, body: bytes, content_type: bytes, version: bytes, request_id: bytes | None = None) -> Any:
    """An ``http.response.start`` message with the headers, in the order, the FastAPI route would send."""
    headers = [(b"x-request-id", request_id)] if request_id is not None else []
    headers += [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    headers.append((b"x-model-version", version))
    return {"type": "http.response.start", "status": status, "headers": headers}


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
        # Request ids: unique per process start, and a counter is a tenth of uuid4's cost.
        self._boot = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

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
                # The writer holds the GIL while it converts a batch; 500 rows (~5 ms) keep the request
                # latency spikes it causes shorter than 2,000 would (p99 8-9 instead of 11-12 ms at c=16).
                batch_max_rows=500,
                on_drop=self.metrics.log_dropped.inc,
                on_write=self.metrics.log_written.inc,
                on_error=lambda error: log.error("prediction log write failed: %s", error),
            )
        self.metrics.log_pending.set_function(lambda: self.logger.pending)
        self.holder.refresh()
        # Everything alive now (libraries, the model) lives as long as the process: keep it out of the
        # collector's full passes, which otherwise walk a few hundred thousand objects and stall requests.
        gc.collect()
        gc.freeze()
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
            if b"NaN" in body or b"Infinity" in body or "infinity" in str(error):
                # Python's json.dumps and tritonclient write NaN/Infinity literals, and 1e999 overflows a double
                # (orjson refuses both): read them, and let the parser treat NaN as a missing value where
                # allowed and refuse infinities by name.
                try:
                    return json.loads(body)
                except ValueError:
                    pass
            raise InputError(400, "malformed_json", f"malformed JSON: {error}") from None

    def new_request_id(self) -> str:
        return f"{self._boot}-{next(self._ids)}"

    async def serve(self, request: Request, endpoint: Endpoint, text: str | None = None) -> Response:
        """``handle`` for a Starlette request; ``text`` is a body already read as text (CSV)."""
        started = time.perf_counter()
        model = self.holder.model
        incoming = request.headers.get(REQUEST_ID_HEADER)
        request_id = incoming if incoming and len(incoming) <= MAX_REQUEST_ID else self.new_request_id()
        raw: bytes | InputError = b""
        if text is not None:
            raw = text.encode()
        elif model is not None:
            try:
                raw = await self.read_body(request)
            except InputError as error:
                raw = error
        status, body = await self.handle(endpoint, model, raw, request_id, started, text)
        return Response(body, status, {REQUEST_ID_HEADER: request_id}, media_type=JSON)

    async def handle(
        self,
        endpoint: Endpoint,
        model: ServingModel | None,
        raw: bytes | InputError,
        request_id: str,
        started: float,
        text: str | None = None,
    ) -> tuple[int, bytes]:
        """Validate, predict, count, log: the status and JSON body; bad input is a 4xx in the protocol's shape.

        The core of every prediction endpoint, whatever carried the request (the FastAPI routes or the ASGI
        fast path). ``raw`` is the body, or the error met reading it; ``text`` the body decoded as text (CSV),
        otherwise the body is decoded as JSON; ``started`` is when the request arrived (perf_counter).
        """
        try:
            if model is None:
                raise ModelNotReady
            if isinstance(raw, InputError):
                raise raw
            batch = endpoint.parse(text if text is not None else self.decode_json(raw), model.parser)
            if self.cache is None:
                began = time.perf_counter()
                labels, proba = model.predict(batch)
                self.metrics.model_latency.observe(time.perf_counter() - began)
            else:
                labels, proba = await self.predict(model, batch, endpoint.name, raw)
            names = self._count(model, labels)
            if self.logger.enabled:
                self.logger.submit(self._logged(model, batch, request_id, names, proba))
            status, content = 200, endpoint.respond(labels, proba, model)
        except InputError as error:
            self.metrics.count_error(endpoint.name, error.reason)
            status = endpoint.invalid_status if error.status == 422 else error.status
            content = endpoint.error_body(error)
        except ModelNotReady:
            self.metrics.count_error(endpoint.name, "not_ready")
            status, content = 503, endpoint.error_body(InputError(503, "not_ready", self.not_ready_reason()))
        except Exception:
            # A bug, never bad input: counted (the canary's error rate must see it), then a 500 from the caller.
            self.metrics.count_error(endpoint.name, "internal")
            self.metrics.request_timer(endpoint.name).observe(time.perf_counter() - started)
            raise
        body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
        self.metrics.request_timer(endpoint.name).observe(time.perf_counter() - started)
        return status, body

    async def answer(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> bool:
        """The ASGI fast path: ``handle`` a JSON request straight from ASGI messages, skipping Starlette.

        The same status, body and headers as the FastAPI route. False, with nothing read or sent, for a
        request the route must see instead (a content type other than JSON on /invocations).
        """
        started = time.perf_counter()
        request_id = declared = content_type = None
        for key, value in scope["headers"]:  # the first of repeated headers counts, as in Starlette
            if key == b"content-length" and declared is None:
                declared = value
            elif key == b"x-request-id" and request_id is None and len(value) <= MAX_REQUEST_ID:
                request_id = value
            elif key == b"content-type" and content_type is None:
                content_type = value
        if (
            endpoint is INVOCATIONS
            and content_type is not None
            and content_type.decode("latin-1").split(";")[0].strip().lower() != JSON
        ):
            return False
        model = self.holder.model
        raw: bytes | InputError = b""
        if model is not None:
            read = await self._receive_body(receive, None if declared is None else declared.decode("latin-1"))
            if read is None:
                return True  # the client went away: nobody to answer
            raw = read
        rid = request_id.decode("latin-1") if request_id else self.new_request_id()
        version = b"none" if model is None else model.version.encode()
        try:
            status, body = await self.handle(endpoint, model, raw, rid, started)
        except Exception:
            # What Starlette's ServerErrorMiddleware does: a plain 500, then the error for the server to log.
            await send(_start(500, _SERVER_ERROR, b"text/plain; charset=utf-8", version))
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
            raise
        await send(_start(status, body, JSON_BYTES, version, rid.encode("latin-1")))
        await send({"type": "http.response.body", "body": body})
        return True

    async def _receive_body(self, receive: Receive, declared: str | None) -> bytes | InputError | None:
        """``read_body`` over ASGI messages; None when the client disconnected."""
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return InputError(413, "body_too_large", f"request body of {declared} bytes exceeds the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        return InputError(413, "body_too_large", f"request body exceeds the limit of {limit} bytes")
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            elif message["type"] == "http.disconnect":
                return None

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

    def _logged(
        self,
        model: ServingModel,
        batch: FeatureBatch,
        request_id: str,
        names: Sequence[str] | np.ndarray,
        proba: np.ndarray,
    ) -> PredictionEvent | PredictionRow:
        if batch.rows == 1:
            return PredictionRow(
                time.time(),
                request_id,
                model.info.name,
                model.version,
                batch.layout,
                batch.numeric,
                batch.categorical,
                names[0],
                proba[0],
            )
        return PredictionEvent(
            ts=time.time(),
            request_id=request_id,
            model_name=model.info.name,
            model_version=model.version,
            features=batch.columns,
            labels=names,
            probabilities=proba,
        )

    def _count(self, model: ServingModel, labels: np.ndarray) -> Sequence[str] | np.ndarray:
        """Count predictions by class; the class name of each row."""
        if labels.shape[0] == 1:
            name = model.class_names[int(labels[0])]
            self.metrics.count_predictions(model.version, name)
            return (name,)
        for index, rows in enumerate(np.bincount(labels, minlength=2)):
            if rows:
                self.metrics.count_predictions(model.version, model.class_names[index], int(rows))
        return np.asarray(model.class_names, dtype=object)[labels]

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
    """Every response, errors and /metrics included, names the model version that was being served.

    Also the fast path: JSON requests to the prediction routes are answered here by ``Server.answer``, the
    same answers as the routes below (which document them in OpenAPI) without Starlette's request and
    routing machinery, a third of the request's time otherwise.
    """
    inner = app.build_middleware_stack

    def build() -> Any:
        asgi = inner()

        async def with_version(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await asgi(scope, receive, send)
                return
            if scope["method"] == "POST" and not scope.get("root_path"):
                endpoint = FAST_PATHS.get(scope["path"])
                if endpoint is not None and await server.answer(endpoint, scope, receive, send):
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
            "served_graph": model.graph if model else None,
            "served_graph_sha256": model.graph_sha256 if model else None,
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
        return await server.serve(request, PREDICT)

    @app.post("/predict/batch", tags=["predict"], openapi_extra=_body("batch"))
    async def predict_batch(request: Request) -> Response:
        """Many rows: `{"instances": [[...], ...]}` or a list of named records."""
        return await server.serve(request, PREDICT_BATCH)

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
            return await server.serve(request, INVOCATIONS_CSV, text=text)
        if content_type != JSON:
            error = InputError(415, "unsupported", f"content type {content_type!r}: send application/json or text/csv")
            server.metrics.count_error("invocations", error.reason)
            return _json(protocols.mlflow_error(error), error.status)
        return await server.serve(request, INVOCATIONS)

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

        return await server.serve(request, Endpoint("v2_infer", parse, respond, _v2_error))


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


def _v2_error(error: InputError) -> Any:
    return protocols.v2_error(error.message)


def _parse_invocations(body: Any, parser: FeatureParser) -> FeatureBatch:
    """``protocols.parse_invocations``, with the one-row parser for MLflow clients' commonest request.

    One row as ``dataframe_split`` (in schema order) or ``dataframe_records``: the batch parser's numpy work
    per column costs ten times the one-row checks. Both accept the same values and build the same feed;
    any problem goes to the batch parser, so error messages stay exactly its own.
    """
    if type(body) is dict and len(body) == 1:
        split = body.get("dataframe_split")
        if type(split) is dict and len(split) <= 2:
            data = split.get("data")
            columns = split.get("columns", None if len(split) == 1 else False)
            if type(data) is list and len(data) == 1 and (columns is None or columns == parser.feature_names):
                try:
                    return parser.from_row(data[0])
                except InputError:
                    pass
        records = body.get("dataframe_records")
        if type(records) is list and len(records) == 1:
            try:
                return parser.from_record(records[0])
            except InputError:
                pass
    return protocols.parse_invocations(body, parser)


PREDICT = Endpoint("predict", protocols.parse_predict, _predict_response, _error_detail)
PREDICT_BATCH = Endpoint("predict_batch", protocols.parse_predict_batch, _batch_response, _error_detail)
# `mlflow models serve` answers every input it cannot score with 400 BAD_REQUEST: so does /invocations.
INVOCATIONS = Endpoint("invocations", _parse_invocations, _invocations_response, protocols.mlflow_error, 400)
INVOCATIONS_CSV = Endpoint(
    "invocations", protocols.parse_invocations_csv, _invocations_response, protocols.mlflow_error, 400
)
# The routes the ASGI fast path answers (JSON bodies; /invocations with another content type goes to its route).
FAST_PATHS = {"/predict": PREDICT, "/predict/batch": PREDICT_BATCH, "/invocations": INVOCATIONS}


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
