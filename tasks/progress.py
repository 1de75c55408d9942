"""Progress lines of the long training steps: rows read, split, fitted on, evaluated and checked.

They go to the flow run's log, which `driftloop train` shows as it runs; a step called outside a flow run (a
benchmark calling ``.fn``) logs to the ``driftloop.training`` logger instead.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def progress(message: str, *args: object) -> None:
    try:
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
    except MissingContextError:
        logger = logging.getLogger("driftloop.training")
    logger.info(message, *args)
