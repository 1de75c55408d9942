"""A failed flow's log in the terminal: a named driftloop error without its traceback, anything else with it."""

from __future__ import annotations

import io
import logging

import pytest
from prefect.logging.handlers import PrefectConsoleHandler

from driftloop.errors import ExportError
from driftloop.io.console_logs import brief_named_errors


class _Kept(logging.Handler):
    """Stands for Prefect's API handler: it must still get the traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(logging.Formatter().format(record))


@pytest.mark.parametrize("kind", [ExportError, ValueError])
def test_only_a_named_error_loses_its_traceback_and_only_in_the_terminal(kind: type[Exception]) -> None:
    root = logging.Logger(f"root-{kind.__name__}")
    terminal = io.StringIO()
    console = PrefectConsoleHandler(stream=terminal)
    root.addHandler(console)
    brief_named_errors(root)
    wrapped = console.formatter
    brief_named_errors(root)  # twice: still one wrapper
    assert console.formatter is wrapped
    task_runs = logging.Logger("prefect.task_runs")
    task_runs.parent = root
    server = _Kept()
    task_runs.addHandler(server)
    try:
        raise kind("cannot export the pipeline to ONNX: nope")
    except Exception:
        task_runs.error("Task run failed with exception: %s", kind.__name__, exc_info=True)
        task_runs.error("and again", exc_info=True)

    shown = terminal.getvalue()
    assert shown.count("Task run failed with exception") == 1
    assert ("Traceback (most recent call last)" in shown) is (kind is ValueError), shown
    assert all("Traceback (most recent call last)" in text for text in server.texts)  # the server keeps it
    # Nor the traceback's last line: the CLI's one `error: …` line says it.
    assert ("cannot export the pipeline to ONNX: nope" in shown) is (kind is ValueError)
