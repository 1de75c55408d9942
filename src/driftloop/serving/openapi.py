"""The OpenAPI document: request examples built from the served model's schema, rebuilt when the model changes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from driftloop.serving import protocols
from driftloop.serving.server import JSON, Server


def request_body(kind: str, csv: bool = False) -> dict[str, Any]:
    """A request body declaration; its examples are filled per served model by ``_openapi_examples``."""
    content: dict[str, Any] = {JSON: {"schema": {"type": "object"}, "x-driftloop-examples": kind}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "content": content}}


def install_openapi_examples(app: FastAPI, server: Server) -> None:
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
            label: Any = model.class_names[-1] if model.class_names else 1.0
            examples["feedback"] = {"request_id": "3f2a9c0e5b7d4e1f", "label": label}
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
