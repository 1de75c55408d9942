"""The terminal's view of flow logs: an error driftloop names reads as its message there, not a traceback.

Prefect logs a failed task's and flow's exception with its traceback, to the terminal and to its server. A
``DriftloopError`` already says what is wrong and what to do, and the CLI ends with it as one ``error: …`` line, so
the terminal gets the log lines without the traceback (trial 12 saw four, 140 lines, before that one line). Prefect's
server, and so its UI, keeps every traceback: its handler runs on the flow and task loggers, before the terminal's
on the root logger.
"""

from __future__ import annotations

import logging

from driftloop.errors import DriftloopError


class _BriefNamedErrors(logging.Formatter):
    """``inner``'s format, without the traceback of a DriftloopError (the record is left as it came)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info is None or not isinstance(record.exc_info[1], DriftloopError):
            return self.inner.format(record)
        kept = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = kept


def brief_named_errors(logger: logging.Logger | None = None) -> None:
    """Give the Prefect console handlers of ``logger`` (the root logger) the brief format; once is enough."""
    import prefect.main  # noqa: F401  (importing it sets Prefect's logging up, which this then adjusts)
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in (logger or logging.getLogger()).handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _BriefNamedErrors):
            handler.setFormatter(_BriefNamedErrors(handler.formatter or logging.Formatter()))
