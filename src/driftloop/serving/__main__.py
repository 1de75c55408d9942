"""``python -m driftloop.serving``: the model server with every setting from the environment (the image's CMD).

Unlike ``driftloop serve`` it imports only the serving path (no CLI, Typer, Prefect, MLflow or scikit-learn),
so it runs in the slim serving image. One process, one worker: the app holds the model and the prediction-log
queue. uvicorn handles SIGTERM: it stops accepting, finishes requests in flight (up to 10 s), then exits.
"""

from __future__ import annotations

import logging

import uvicorn

from driftloop.serving.app import create_app
from driftloop.serving.deadlines import deadline_protocol
from driftloop.settings import Settings, get_settings

GRACEFUL_SHUTDOWN_SECONDS = 10


def serve(settings: Settings, access_log: bool = False) -> None:
    """Run the server in this process until SIGTERM/SIGINT (also what ``driftloop serve`` runs)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.serve_host,
        port=settings.serve_port,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        http=deadline_protocol(settings.header_timeout, settings.body_timeout),
        limit_concurrency=settings.max_connections,
    )


def main() -> None:
    serve(get_settings())


if __name__ == "__main__":
    main()
