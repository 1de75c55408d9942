"""The serving app: one FastAPI application speaking the tutorial's, MLflow's and the V2 inference protocols.

Run it with ``driftloop serve`` or ``uvicorn driftloop.serving.app:create_app --factory``. Handlers read the
body themselves (orjson) and validate it with the model's ``FeatureParser`` instead of pydantic models: the
request schema depends on the served model, and the hot path stays a few microseconds over onnxruntime.
This module holds the routes; ``server.py`` the path every prediction takes, ``endpoints.py`` the endpoints.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from driftloop.errors import InputError
from driftloop.serving import protocols
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
from driftloop.serving.server import JSON, VERSION_HEADER_BYTES, Server, default_source
from driftloop.serving.source import ModelSource
from driftloop.settings import Settings, get_settings


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON)


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
    install_openapi_examples(app, server)
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
                    message["headers"] = [*message.get("headers", []), (VERSION_HEADER_BYTES, version.encode())]
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
            unsupported = InputError(
                415, "unsupported", f"content type {content_type!r}: send application/json or text/csv"
            )
            server.metrics.count_error("invocations", unsupported.reason)
            return _json(protocols.mlflow_error(unsupported), unsupported.status)
        return await server.serve(request, INVOCATIONS)

    @app.post("/feedback", tags=["predict"], status_code=202, openapi_extra=request_body("feedback"))
    async def give_feedback(request: Request) -> Response:
        """True labels for earlier predictions (by request id and row), for the drift monitor's label check.

        `{"request_id": "...", "label": "Yes"}`, or `{"items": [{"request_id": "...", "row": 0, "label": "No"}]}`;
        a regressor's label is a number (`{"request_id": "...", "label": 151.0}`).
        """
        model = server.holder.model
        try:
            if server.store is None:
                raise InputError(
                    409, "prediction_log_off", "feedback needs the prediction log (DRIFTLOOP_PREDICTION_LOG)"
                )
            items = protocols.parse_feedback(
                server.decode_json(await server.read_body(request)), model.task if model else None
            )
            written = await run_in_threadpool(server.store.write_feedback, server.settings.model_name, items)
        except InputError as error:
            server.metrics.count_error("feedback", error.reason)
            return _json(error_detail(error), error.status)
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

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=request_body("v2_infer"))
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

        def respond(labels: np.ndarray, proba: np.ndarray | None, served: ServingModel) -> Any:
            return protocols.v2_infer_response(
                served.info.name, served.version, labels, proba, requested[0], body_id[0]
            )

        return await server.serve(request, Endpoint("v2_infer", parse, respond, v2_error))


def _v2_model(server: Server, name: str) -> ServingModel | Response:
    model = server.holder.model
    if model is None:
        return _json(protocols.v2_error(server.not_ready_reason()), 503)
    if name != model.info.name:
        return _json(protocols.v2_error(f"unknown model {name!r}; this server serves {model.info.name!r}"), 404)
    return model


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
