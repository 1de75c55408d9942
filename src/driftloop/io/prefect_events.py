"""Emit driftloop's events to the Prefect server: the one place the library imports Prefect (events must)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from driftloop.events import model_resource

log = logging.getLogger(__name__)


def emit(event: str, model_name: str, payload: Mapping[str, Any]) -> str | None:
    """Emit ``event`` about ``model_name``; returns the event id, or None when no Prefect API took it."""
    from prefect.events import emit_event

    emitted = emit_event(
        event=event,
        resource={"prefect.resource.id": model_resource(model_name), "prefect.resource.name": model_name},
        payload=dict(payload),
    )
    if emitted is None:
        log.warning("event %s was not emitted: no Prefect API is configured", event)
        return None
    return str(emitted.id)
