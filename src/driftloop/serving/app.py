"""The serving app: one FastAPI application speaking the tutorial's, MLflow's and the V2 inference protocols.

One server serves one or more models, each following its own source. The unnamed routes (``/predict``,
``/invocations``, ...) serve the default model; ``/models/{name}/...`` and ``/v2/models/{name}/...`` any of them.

Run it with ``driftloop serve`` or ``uvicorn driftloop.serving.app:create_app --factory``. Handlers read the
body themselves (orjson) and validate it with the model's ``FeatureParser`` instead of pydantic models: the
request schema depends on the served model, and the hot path stays a few microseconds over onnxruntime.
This module holds the routes; ``server.py`` the path every prediction takes, ``endpoints.py`` the endpoints.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from driftloop.core.text_encoding import first_line_not_utf8
from driftloop.errors import InputError
from driftloop.serving import protocols
from driftloop.serving.docs_page import install_docs
from driftloop.serving.endpoints import (
    FAST_PATHS,
    INVOCATIONS,
    INVOCATIONS_CSV,
    PREDICT,
    PREDICT_BATCH,
    Endpoint,
    error_detail,
    v2_error,
)
from driftloop.serving.inputs import FeatureBatch, FeatureParser
from driftloop.serving.model import ServingModel
from driftloop.serving.openapi import install_openapi_examples, request_body
from driftloop.serving.reloader import ModelEntry
from driftloop.serving.server import JSON, VERSION_HEADER_BYTES, Server, default_sources, media_type
from driftloop.serving.source import ModelSource
from driftloop.settings import Settings, get_settings


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON)


def create_app(
    settings: Settings | None = None,
    source: ModelSource | None = None,
    sources: Sequence[ModelSource] | None = None,
) -> FastAPI:
    """The serving application.

    ``source`` serves one model; ``sources`` several (the first is the default). Neither: the settings' registry
    aliases (``served_model_names``) or model directory.
    """
    settings = settings or get_settings()
    server = Server(settings, [source] if source is not None else sources or default_sources(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server.start()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(
        title="driftloop model server",
        description="Serves champion models (ONNX). Protocols: the tutorial's /predict, MLflow's /invocations, "
        "and the Open Inference Protocol (KServe V2) under /v2; /models/{name}/... for each model served.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN: docs_page serves them from here
        redoc_url=None,
    )
    install_docs(app, app.title)
    app.state.server = server
    _add_version_header(app, server)
    _health_routes(app, server)
    _default_model_routes(app, server)
    _named_model_routes(app, server)
    _v2_routes(app, server)
    install_openapi_examples(app, server)
    return app


NAMED = "/models/"


def _route_entry(server: Server, path: str) -> ModelEntry | None:
    """The model a request path addresses: ``/models/{name}/...`` names one, any other path the default."""
    if path.startswith(NAMED):
        return server.entry(path[len(NAMED) :].partition("/")[0])
    if path.startswith("/v2/models/"):
        return server.entry(path[len("/v2/models/") :].partition("/")[0])
    return server.default


def _add_version_header(app: FastAPI, server: Server) -> None:
    """Every response, errors and /metrics included, names the version of the model the path addresses.

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
            path = scope["path"]
            if scope["method"] == "POST" and not scope.get("root_path"):
                endpoint = FAST_PATHS.get(path)
                entry: ModelEntry | None = server.default
                if endpoint is None and path.startswith(NAMED):
                    name, _, tail = path[len(NAMED) :].partition("/")
                    endpoint, entry = FAST_PATHS.get("/" + tail), server.entry(name)
                if (
                    endpoint is not None
                    and entry is not None
                    and await server.answer(endpoint, entry, scope, receive, send)
                ):
                    return
            addressed = _route_entry(server, path)

            async def send_with_header(message: Any) -> None:
                if message["type"] == "http.response.start":
                    model = addressed.holder.model if addressed else None
                    version = model.version if model else "none"
                    message["headers"] = [*message.get("headers", []), (VERSION_HEADER_BYTES, version.encode())]
                await send(message)

            await asgi(scope, receive, send_with_header)

        return with_version

    app.build_middleware_stack = build  # type: ignore[method-assign]


def _health_routes(app: FastAPI, server: Server) -> None:
    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus metrics, labelled by model."""
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/models", tags=["models"])
    async def list_models() -> Response:
        """Every model this server serves (the first is the default, on the unnamed routes), and its state."""
        return _json(
            {
                "default": server.default.name,
                "models": [
                    {
                        "name": entry.name,
                        "version": entry.holder.model.version if entry.holder.model else None,
                        "ready": entry.holder.model is not None,
                        **({} if entry.holder.model else {"reason": entry.not_ready_reason()}),
                    }
                    for entry in server.models.values()
                ],
            }
        )


def _ready(entry: ModelEntry) -> Response:
    model = entry.holder.model
    if model is None:
        return _json({"status": "not ready", "reason": entry.not_ready_reason()}, 503)
    return _json({"status": "ready", "model_version": model.version})


def _model_info(entry: ModelEntry) -> Response:
    model = entry.holder.model
    failure = entry.holder.last_failure
    content: dict[str, Any] = {
        **(model.info.as_dict() if model else {"name": entry.name, "version": None}),
        "loaded_at": _iso(model.loaded_at) if model else None,
        "served_graph": model.graph if model else None,
        "served_graph_sha256": model.graph_sha256 if model else None,
        "last_reload_failure": None
        if failure is None
        else {"version": failure.version, "error": failure.error, "at": _iso(failure.at)},
    }
    return _json(content, 200 if model else 503)


def _csv_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        found = first_line_not_utf8(body.splitlines(keepends=True))  # the codec's position is not one a person can find
        where = found.describe() if found else str(error)
        raise InputError(400, "malformed_csv", f"the CSV body is not UTF-8: {where}") from None


async def _invocations(server: Server, request: Request, entry: ModelEntry) -> Response:
    """MLflow's scoring protocol: JSON (the fast path's, when it came through a proxy's root_path) or CSV."""
    content_type = media_type(request.headers.get("content-type", JSON))
    if content_type == "text/csv":
        try:
            text = _csv_text(await server.read_body(request))
        except InputError as reason:
            server.metrics.count_error(entry.name, "invocations", reason.reason)
            return _json(protocols.mlflow_error(reason), reason.status)
        return await server.serve(request, INVOCATIONS_CSV, text=text, entry=entry)
    if content_type != JSON:
        unsupported = InputError(
            415, "unsupported", f"content type {content_type!r}: send application/json or text/csv"
        )
        server.metrics.count_error(entry.name, "invocations", unsupported.reason)
        return _json(protocols.mlflow_error(unsupported), unsupported.status)
    return await server.serve(request, INVOCATIONS, entry=entry)


async def _feedback(server: Server, request: Request, entry: ModelEntry) -> Response:
    model = entry.holder.model
    try:
        if server.store is None:
            raise InputError(409, "prediction_log_off", "feedback needs the prediction log (DRIFTLOOP_PREDICTION_LOG)")
        server.feedback_gate.check(request.headers.get("authorization"))
        if media_type(request.headers.get("content-type")) != JSON:
            # A form or text/plain body is what any web page can make a visitor's browser send, with no preflight.
            raise InputError(415, "unsupported", "feedback takes content-type application/json only")
        items = protocols.parse_feedback(
            server.decode_json(await server.read_body(request)),
            model.task if model else None,
            max_items=server.settings.max_batch_rows,
        )
        written = await run_in_threadpool(server.store.write_feedback, entry.name, items)
    except InputError as error:
        server.metrics.count_error(entry.name, "feedback", error.reason)
        challenge = {"www-authenticate": "Bearer"} if error.status == 401 else None
        return _json(error_detail(error), error.status, challenge)
    return _json({"accepted": written.accepted, "already_labelled": written.already_labelled}, 202)


def _default_model_routes(app: FastAPI, server: Server) -> None:
    """The unnamed routes: the tutorial's and MLflow's protocols for the default model."""

    @app.get("/ready", tags=["health"], responses={503: {"description": "no model has passed its self-check"}})
    async def ready() -> Response:
        """Readiness: the default model is loaded and passed its self-check."""
        return _ready(server.default)

    @app.get("/model", tags=["model"])
    async def model_info() -> Response:
        """Identity and lineage of the default model's served version, and its last refused version if any."""
        return _model_info(server.default)

    @app.post("/predict", tags=["predict"], openapi_extra=request_body("predict"))
    async def predict(request: Request) -> Response:
        """One row: `{"features": [v1, ...]}` in the model's feature order, or `{"features": {"name": v}}`."""
        return await server.serve(request, PREDICT)

    @app.post("/predict/batch", tags=["predict"], openapi_extra=request_body("batch"))
    async def predict_batch(request: Request) -> Response:
        """Many rows: `{"instances": [[...], ...]}` or a list of named records."""
        return await server.serve(request, PREDICT_BATCH)

    @app.post("/invocations", tags=["mlflow"], openapi_extra=request_body("invocations", csv=True))
    async def invocations(request: Request) -> Response:
        """MLflow's scoring protocol: dataframe_split, dataframe_records, instances, inputs (JSON), or CSV."""
        return await _invocations(server, request, server.default)

    @app.post("/feedback", tags=["predict"], status_code=202, openapi_extra=request_body("feedback"))
    async def give_feedback(request: Request) -> Response:
        """True labels for earlier predictions (by request id and row), for the drift monitor's label check.

        `{"request_id": "...", "label": "Yes"}`, or `{"items": [{"request_id": "...", "row": 0, "label": "No"}]}`;
        a regressor's label is a number (`{"request_id": "...", "label": 151.0}`).
        """
        return await _feedback(server, request, server.default)


def _named_model_routes(app: FastAPI, server: Server) -> None:
    """``/models/{name}/...``: the same protocols for any model the server serves; 404 for any other name."""

    def unknown(name: str, shape: Callable[[InputError], Any] = error_detail) -> Response:
        error = server.unknown_model(name)
        return _json(shape(error), error.status)

    @app.get("/models/{name}", tags=["models"])
    async def named_model_info(name: str) -> Response:
        """Identity and lineage of the model's served version, and its last refused version if any."""
        entry = server.entry(name)
        return unknown(name) if entry is None else _model_info(entry)

    @app.get("/models/{name}/ready", tags=["models"])
    async def named_ready(name: str) -> Response:
        """Readiness of one model: loaded and passed its self-check."""
        entry = server.entry(name)
        return unknown(name) if entry is None else _ready(entry)

    @app.post("/models/{name}/predict", tags=["models"], openapi_extra=request_body("predict"))
    async def named_predict(name: str, request: Request) -> Response:
        """`/predict` for the named model."""
        entry = server.entry(name)
        return unknown(name) if entry is None else await server.serve(request, PREDICT, entry=entry)

    @app.post("/models/{name}/predict/batch", tags=["models"], openapi_extra=request_body("batch"))
    async def named_predict_batch(name: str, request: Request) -> Response:
        """`/predict/batch` for the named model."""
        entry = server.entry(name)
        return unknown(name) if entry is None else await server.serve(request, PREDICT_BATCH, entry=entry)

    @app.post("/models/{name}/invocations", tags=["models"], openapi_extra=request_body("invocations", csv=True))
    async def named_invocations(name: str, request: Request) -> Response:
        """`/invocations` (MLflow's scoring protocol) for the named model."""
        entry = server.entry(name)
        if entry is None:
            return unknown(name, protocols.mlflow_error)
        return await _invocations(server, request, entry)

    @app.post("/models/{name}/feedback", tags=["models"], status_code=202, openapi_extra=request_body("feedback"))
    async def named_feedback(name: str, request: Request) -> Response:
        """`/feedback` for the named model's predictions."""
        entry = server.entry(name)
        return unknown(name) if entry is None else await _feedback(server, request, entry)


def _v2_routes(app: FastAPI, server: Server) -> None:
    @app.get("/v2", tags=["v2"])
    async def v2_server() -> dict[str, Any]:
        """V2 server metadata."""
        return {"name": "driftloop", "version": "1", "extensions": []}

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", tags=["v2"])
    async def v2_ready() -> Response:
        """Ready when the default model is (each model's own readiness: /v2/models/{name}/ready)."""
        ready = server.default.holder.model is not None
        return _json({"ready": ready}, 200 if ready else 503)

    @app.get("/v2/models/{name}", tags=["v2"])
    async def v2_metadata(name: str) -> Response:
        return _v2_metadata(server, name)

    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"])
    async def v2_version_metadata(name: str, version: str) -> Response:
        return _v2_metadata(server, name, version)

    @app.get("/v2/models/{name}/ready", tags=["v2"])
    async def v2_model_ready(name: str) -> Response:
        model = _v2_model(server, name)
        return model if isinstance(model, Response) else _json({"name": name, "ready": True})

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"])
    async def v2_version_ready(name: str, version: str) -> Response:
        model = _v2_model(server, name, version)
        return model if isinstance(model, Response) else _json({"name": name, "ready": True})

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=request_body("v2_infer"))
    async def v2_infer(name: str, request: Request) -> Response:
        """Open Inference Protocol inference (JSON tensors; the binary extension is not supported)."""
        return await _v2_infer(server, name, request)

    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"], openapi_extra=request_body("v2_infer"))
    async def v2_version_infer(name: str, version: str, request: Request) -> Response:
        """The same, for the version this server serves of the model (another one: 404)."""
        return await _v2_infer(server, name, request, version)


def _v2_metadata(server: Server, name: str, version: str | None = None) -> Response:
    model = _v2_model(server, name, version)
    if isinstance(model, Response):
        return model
    return _json(protocols.v2_model_metadata(model.info.name, model.version, model.parser.schema))


async def _v2_infer(server: Server, name: str, request: Request, version: str | None = None) -> Response:
    """Open Inference Protocol inference on the model ``name`` (with ``version``: only the one it serves)."""
    model = _v2_model(server, name, version)
    if isinstance(model, Response):
        return model
    entry = server.models[name]  # _v2_model found it: the models are fixed when the server starts
    if protocols.V2_BINARY_HEADER in request.headers:
        error = InputError(400, "unsupported", "binary tensor data is not supported; use binary_data=False")
        server.metrics.count_error(entry.name, "v2_infer", error.reason)
        return _json(protocols.v2_error(error.message), error.status)
    # What the request asked for, captured while parsing for use when responding.
    requested: list[list[str] | None] = [None]
    body_id: list[Any] = [None]

    def parse(body: Any, parser: FeatureParser) -> FeatureBatch:
        batch, outputs = protocols.parse_v2_infer(body, parser)
        requested[0] = outputs
        body_id[0] = body.get("id") if isinstance(body, dict) else None
        return batch

    def respond(labels: np.ndarray, proba: np.ndarray | None, served: ServingModel) -> Any:
        return protocols.v2_infer_response(served.info.name, served.version, labels, proba, requested[0], body_id[0])

    return await server.serve(request, Endpoint("v2_infer", parse, respond, v2_error), entry=entry)


def _v2_model(server: Server, name: str, version: str | None = None) -> ServingModel | Response:
    """The model ``name`` serves now; with ``version``, only if that is the one it serves (a KServe client's path)."""
    entry = server.entry(name)
    if entry is None:
        return _json(protocols.v2_error(server.unknown_model(name).message), 404)
    model = entry.holder.model
    if model is None:
        return _json(protocols.v2_error(entry.not_ready_reason()), 503)
    if version is not None and version != model.version:
        message = f"model {name!r} serves version {model.version} here, not {version} (/v2/models/{name} is it)"
        return _json(protocols.v2_error(message), 404)
    return model


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
