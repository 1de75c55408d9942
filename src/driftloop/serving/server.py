"""The server's core: the state one app owns and the path every prediction takes (validate, predict, count, log).

``Server.handle`` is that path; ``Server.answer`` serves a JSON request straight from ASGI messages (the fast
path, skipping Starlette's request and routing machinery), ``Server.serve`` a Starlette request (the routes).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from driftloop.core.text_encoding import not_utf8
from driftloop.errors import InputError, ModelNotReady
from driftloop.io.check_store import CheckStore
from driftloop.io.onnx_runtime import Outputs
from driftloop.io.prediction_store import PredictionEvent, PredictionRow, SqlPredictionStore, open_prediction_log
from driftloop.serving.cache import PredictionCache
from driftloop.serving.endpoints import INVOCATIONS, Endpoint
from driftloop.serving.feedback_auth import FeedbackGate
from driftloop.serving.health_metrics import ModelHealthMetrics
from driftloop.serving.inputs import FeatureBatch
from driftloop.serving.metrics import UNKNOWN_MODEL, ServingMetrics
from driftloop.serving.model import ServingModel
from driftloop.serving.prediction_log import NullPredictionLogger, PredictionLogger
from driftloop.serving.reloader import ModelEntry
from driftloop.serving.source import FileModelSource, ModelSource, RegistryModelSource
from driftloop.settings import Settings

log = logging.getLogger("driftloop.serving")

JSON = "application/json"
JSON_BYTES = JSON.encode()
VERSION_HEADER = "x-model-version"
REQUEST_ID_HEADER = "x-request-id"
CLIENT_REQUEST_ID_HEADER = "x-client-request-id"
VERSION_HEADER_BYTES = VERSION_HEADER.encode()
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
CLIENT_REQUEST_ID_HEADER_BYTES = CLIENT_REQUEST_ID_HEADER.encode()
# The prediction log's column width: a longer incoming id is not kept, or its batch of log rows would be lost.
MAX_REQUEST_ID = 128

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

_SERVER_ERROR = b"Internal Server Error"


def _all_text(document: Any) -> bool:
    """False when a string (key or value) of a parsed JSON document holds a lone surrogate.

    Such a string is not text: no database stores it, nor does orjson write it back. Iterative: the document may
    be as deep as json.loads allows.
    """
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def media_type(content_type: str | None) -> str | None:
    """A content-type header's media type, lowercase and without parameters (``; charset=...``)."""
    return content_type.split(";", 1)[0].strip().lower() if content_type is not None else None


# What `curl -d` and HTML forms send unless told otherwise.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _naming_a_form(error: InputError, content_type: str | bytes | None) -> InputError:
    """``error``, saying the body was sent as a form when it is a JSON error on a form's content type."""
    if error.reason != "malformed_json":
        return error
    sent_as = media_type(content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type)
    if sent_as not in FORM_TYPES:
        return error
    hint = f"; the request said content-type {sent_as}: send JSON with content-type application/json"
    return InputError(error.status, error.reason, error.message + hint)


def _start(
    status: int,
    body: bytes,
    content_type: bytes,
    version: bytes,
    request_id: bytes | None = None,
    client_request_id: bytes | None = None,
) -> Any:
    """An ``http.response.start`` message with the headers, in the order, the FastAPI route would send."""
    headers = [(REQUEST_ID_HEADER_BYTES, request_id)] if request_id is not None else []
    if client_request_id is not None:
        headers.append((CLIENT_REQUEST_ID_HEADER_BYTES, client_request_id))
    headers += [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    headers.append((VERSION_HEADER_BYTES, version))
    return {"type": "http.response.start", "status": status, "headers": headers}


def default_sources(settings: Settings) -> list[ModelSource]:
    """The models the settings name: one bundle directory (file mode), or each served name's champion alias."""
    if settings.model_source == "file":
        if settings.model_dir is None:
            raise ValueError("DRIFTLOOP_MODEL_SOURCE=file needs DRIFTLOOP_MODEL_DIR (a model bundle directory)")
        return [FileModelSource(settings.model_dir)]
    cache = settings.home / "serving-cache"
    return [RegistryModelSource(name, settings.tracking_uri, cache / name) for name in settings.served_model_names]


_SHOWN_BYTES = 40


def _not_json(body: bytes, error: orjson.JSONDecodeError) -> str:
    """The parser's complaint; a body that is no JSON from its first character says so, and how it begins.

    For ``not json`` orjson says "invalid literal, expected 'null'", true only of a body starting with an n.
    """
    text = body.lstrip()
    if error.pos != len(body) - len(text):
        return str(error)
    start = text[:_SHOWN_BYTES].decode("utf-8", errors="replace")
    more = "…" if len(text) > _SHOWN_BYTES else ""
    return f"the body is not a JSON document: it begins {start!r}{more}"


class Server:
    """The state one app instance owns: the models it serves, metrics, the prediction logger.

    Models are kept by name; the first is the default, served on the unnamed routes.
    """

    def __init__(self, settings: Settings, sources: Sequence[ModelSource]) -> None:
        if not sources:
            raise ValueError("a server needs at least one model source")
        self.settings = settings
        self.metrics = ServingMetrics()
        self.models: dict[str, ModelEntry] = {}
        for source in sources:
            if source.name in self.models:
                raise ValueError(f"model {source.name!r} is listed twice")
            self.models[source.name] = ModelEntry(
                source,
                settings.max_batch_rows,
                settings.unknown_categories,
                settings.reload_interval,
                partial(self._reloaded, source.name),
            )
        self.default = next(iter(self.models.values()))
        self.holder = self.default.holder  # the unnamed routes' model
        self.logger: PredictionLogger | NullPredictionLogger = NullPredictionLogger()
        self.store: SqlPredictionStore | None = None
        self.feedback_gate = FeedbackGate.from_settings(settings)
        self.cache = PredictionCache(settings.redis_url, settings.cache_ttl_seconds) if settings.redis_url else None

    def _reloaded(self, name: str, result: str, model: ServingModel | None, error: str | None) -> None:
        self.metrics.reloads.labels(name, result).inc()
        if model is not None:
            self.metrics.set_model(name, model.version, model.info.onnx_sha256)

    def start(self) -> None:
        if self.settings.prediction_log:
            self.store = open_prediction_log(self.settings.predictions_url)
            health = ModelHealthMetrics(CheckStore(self.store).latest, self.models)
            self.metrics.registry.register(health)
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
        for entry in self.models.values():
            entry.holder.refresh()  # never raises: a model that fails to load is reported, the others serve
        # Everything alive now (libraries, the models) lives as long as the process: keep it out of the
        # collector's full passes, which otherwise walk a few hundred thousand objects and stall requests.
        gc.collect()
        gc.freeze()
        for entry in self.models.values():
            entry.watcher.start()

    async def stop(self) -> None:
        for entry in self.models.values():
            entry.watcher.stop()
        self.logger.close()
        if self.cache is not None:
            await self.cache.close()

    async def read_body(self, request: Request) -> bytes:
        """The body of a Starlette request, within the size limit (``receive_body``)."""
        body = await self.receive_body(request.receive, request.headers.get("content-length"))
        if body is None:
            raise ClientDisconnect
        if isinstance(body, InputError):
            raise body
        return body

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
                    document = json.loads(body)
                except (ValueError, RecursionError):  # orjson stops at 1,024 levels; json.loads recurses until it fails
                    pass
                else:
                    if not _all_text(document):
                        # orjson refuses a lone surrogate ("\ud800"); json.loads takes it: the same answer either way.
                        raise InputError(400, "malformed_json", "malformed JSON: a string holds a lone surrogate")
                    return document
            found = not_utf8(body)  # orjson says only "not valid UTF-8 … (char 0)", wherever the byte is
            problem = f"the body is not UTF-8: {found.describe()}" if found else _not_json(body, error)
            raise InputError(400, "malformed_json", f"malformed JSON: {problem}") from None

    @staticmethod
    def new_request_id() -> str:
        """128 random bits: a label for a prediction needs its id, which nobody can guess (a counter could be)."""
        return os.urandom(16).hex()

    async def serve(
        self, request: Request, endpoint: Endpoint, text: str | None = None, entry: ModelEntry | None = None
    ) -> Response:
        """``handle`` for a Starlette request to ``entry`` (default: the default model).

        ``text`` is a body already read as text (CSV).
        """
        started = time.perf_counter()
        entry = entry or self.default
        model = entry.holder.model
        incoming = request.headers.get(REQUEST_ID_HEADER)
        client_request_id = incoming if incoming and len(incoming) <= MAX_REQUEST_ID else None
        request_id = self.new_request_id()
        raw: bytes | InputError = b""
        if text is not None:
            raw = text.encode()
        elif model is not None:
            try:
                raw = await self.read_body(request)
            except InputError as error:
                raw = error
        status, body = await self.handle(
            endpoint,
            entry,
            model,
            raw,
            request_id,
            started,
            text,
            client_request_id,
            request.headers.get("content-type"),
        )
        headers = {REQUEST_ID_HEADER: request_id}
        if client_request_id is not None:
            headers[CLIENT_REQUEST_ID_HEADER] = client_request_id
        return Response(body, status, headers, media_type=JSON)

    async def handle(
        self,
        endpoint: Endpoint,
        entry: ModelEntry,
        model: ServingModel | None,
        raw: bytes | InputError,
        request_id: str,
        started: float,
        text: str | None = None,
        client_request_id: str | None = None,
        content_type: str | bytes | None = None,
    ) -> tuple[int, bytes]:
        """Validate, predict, count, log: the status and JSON body; bad input is a 4xx in the protocol's shape.

        The core of every prediction endpoint, whatever carried the request (the FastAPI routes or the ASGI
        fast path). ``raw`` is the body, or the error met reading it; ``text`` the body decoded as text (CSV),
        otherwise the body is decoded as JSON; ``started`` is when the request arrived (perf_counter);
        ``content_type`` the request's header (read only for an error: it names a form sent in place of JSON).
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
                self.metrics.model_timer(entry.name).observe(time.perf_counter() - began)
            else:
                labels, proba = await self.predict(entry.name, model, batch, endpoint.name, raw)
            names = self._count(entry.name, model, labels)
            if self.logger.enabled:
                scores = proba if proba is not None else labels.reshape(-1, 1)
                self.logger.submit(self._logged(model, batch, request_id, names, scores, client_request_id))
            status, content = 200, endpoint.respond(labels, proba, model)
        except InputError as error:
            self.metrics.count_error(entry.name, endpoint.name, error.reason)
            status = endpoint.invalid_status if error.status == 422 else error.status
            content = endpoint.error_body(_naming_a_form(error, content_type))
        except ModelNotReady:
            self.metrics.count_error(entry.name, endpoint.name, "not_ready")
            status, content = 503, endpoint.error_body(InputError(503, "not_ready", entry.not_ready_reason()))
        except Exception:
            # A bug, never bad input: counted (the canary's error rate must see it), then a 500 from the caller.
            self.metrics.count_error(entry.name, endpoint.name, "internal")
            self.metrics.request_timer(entry.name, endpoint.name).observe(time.perf_counter() - started)
            raise
        body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
        self.metrics.request_timer(entry.name, endpoint.name).observe(time.perf_counter() - started)
        return status, body

    async def answer(self, endpoint: Endpoint, entry: ModelEntry, scope: Scope, receive: Receive, send: Send) -> bool:
        """The ASGI fast path: ``handle`` a JSON request straight from ASGI messages, skipping Starlette.

        The same status, body and headers as the FastAPI route. False, with nothing read or sent, for a
        request the route must see instead (a content type other than JSON on /invocations).
        """
        started = time.perf_counter()
        request_id = declared = content_type = None
        for key, value in scope["headers"]:  # the first of repeated headers counts, as in Starlette
            if key == b"content-length" and declared is None:
                declared = value
            elif key == REQUEST_ID_HEADER_BYTES and request_id is None and len(value) <= MAX_REQUEST_ID:
                request_id = value
            elif key == b"content-type" and content_type is None:
                content_type = value
        if endpoint is INVOCATIONS and content_type is not None and media_type(content_type.decode("latin-1")) != JSON:
            return False
        model = entry.holder.model
        raw: bytes | InputError = b""
        if model is not None:
            read = await self.receive_body(receive, None if declared is None else declared.decode("latin-1"))
            if read is None:
                return True  # the client went away: nobody to answer
            raw = read
        rid = self.new_request_id()
        client = request_id.decode("latin-1") if request_id else None
        version = b"none" if model is None else model.version.encode()
        try:
            status, body = await self.handle(endpoint, entry, model, raw, rid, started, None, client, content_type)
        except Exception:
            # What Starlette's ServerErrorMiddleware does: a plain 500, then the error for the server to log.
            await send(_start(500, _SERVER_ERROR, b"text/plain; charset=utf-8", version))
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
            raise
        await send(_start(status, body, JSON_BYTES, version, rid.encode(), request_id))
        await send({"type": "http.response.body", "body": body})
        return True

    async def receive_body(self, receive: Receive, declared: str | None) -> bytes | InputError | None:
        """The body from ASGI messages; a 413 error past the size limit; None when the client disconnected.

        ``declared`` is the content-length header, if any: a body declared too large is refused unread.
        """
        limit = self.settings.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return InputError.body_too_large(limit, int(declared))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        return InputError.body_too_large(limit)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            elif message["type"] == "http.disconnect":
                return None

    async def predict(self, name: str, model: ServingModel, batch: FeatureBatch, endpoint: str, raw: bytes) -> Outputs:
        key = None
        if self.cache is not None:
            key = PredictionCache.key(name, model.version, endpoint, raw)
            try:
                cached = await self.cache.get(key)
            except Exception as error:  # a cache outage must not fail a request: fall through to the model
                self.metrics.count_error(name, endpoint, "cache_unavailable")
                log.warning("prediction cache unavailable: %s", error)
                cached, key = None, None
            if key is not None:
                self.metrics.cache.labels("hit" if cached is not None else "miss").inc()
            if cached is not None:
                return cached
        started = time.perf_counter()
        labels, proba = model.predict(batch)
        self.metrics.model_timer(name).observe(time.perf_counter() - started)
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
        client_request_id: str | None = None,
    ) -> PredictionEvent | PredictionRow:
        """The log entry for a request.

        ``names`` are the predicted classes (a regressor's values, as text), ``proba`` the probabilities (a
        regressor's values, one column).
        """
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
                client_request_id,
            )
        return PredictionEvent(
            ts=time.time(),
            request_id=request_id,
            model_name=model.info.name,
            model_version=model.version,
            features=batch.columns,
            labels=names,
            probabilities=proba,
            client_request_id=client_request_id,
        )

    def _count(self, name: str, model: ServingModel, labels: np.ndarray) -> Sequence[str] | np.ndarray:
        """Count predictions by class (a regressor's in its histogram); the class name (value, as text) of each row."""
        if not model.class_names:
            self.metrics.count_values(name, model.version, model.value_buckets, labels)
            return [str(value) for value in labels.tolist()]
        if labels.shape[0] == 1:
            label = model.class_names[int(labels[0])]
            self.metrics.count_predictions(name, model.version, label)
            return (label,)
        for index, rows in enumerate(np.bincount(labels, minlength=len(model.class_names))):
            if rows:
                self.metrics.count_predictions(name, model.version, model.class_names[index], int(rows))
        names: np.ndarray = np.asarray(model.class_names, dtype=object)[labels]
        return names

    def entry(self, name: str) -> ModelEntry | None:
        """The model served under ``name``, or None."""
        return self.models.get(name)

    def unknown_model(self, name: str) -> InputError:
        """The 404 for a name this server does not serve, counted under one label whatever the name."""
        self.metrics.count_error(UNKNOWN_MODEL, "route", "unknown_model")
        served = ", ".join(repr(known) for known in self.models)
        return InputError(404, "unknown_model", f"unknown model {name!r}; this server serves {served}")
