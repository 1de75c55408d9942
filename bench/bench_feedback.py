"""Feedback (true labels) against the prediction log: what a request of labels costs, and whether it costs rows.

Run: .venv/bin/python bench/bench_feedback.py   (about 1 minute; prints one table, asserts nothing)

baseline  the write before issue 15: one DELETE per item then the inserts, in one transaction (last label wins),
          reproduced here as it was, on the same SQLite file
now       SqlPredictionStore.write_feedback: one SELECT per 500 request ids and one INSERT ... ON CONFLICT DO
          NOTHING (first label wins); at most DRIFTLOOP_MAX_BATCH_ROWS (1,000) items a request

  one request      seconds to write N labels into a log of 100,000 predicted rows (N = 1,000: the cap now;
                   N = 100,000: the request of the finding, which the cap now refuses with a 413: "now" writes
                   it as 100 requests of 1,000)
  while logging    a PredictionLogger (its default 20,000-row queue) fed 1-row predictions at 2,000 rows/s for
                   10 s while another thread writes 1,000 labels every 0.5 s (2,000 labels/s): rows dropped;
                   then labels flat out: the baseline one request of 100,000 labels, now requests of 1,000
                   back to back for the same 10 s
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from driftloop.io.prediction_store import Feedback, PredictionEvent, SqlPredictionStore, feedback
from driftloop.serving.prediction_log import PredictionLogger

MODEL = "churn"
LOGGED_ROWS = 100_000
RATE_ROWS_PER_S = 2_000
SECONDS = 10.0
LABELS_PER_REQUEST = 1_000
LABEL_EVERY_S = 0.5

Write = Callable[[SqlPredictionStore, Sequence[Feedback]], object]


def event(ts: float, request_id: str, rows: int = 1) -> PredictionEvent:
    rng = np.random.default_rng(len(request_id))
    features = {
        "tenure": rng.uniform(0, 72, (rows, 1)).astype(np.float32),
        "contract": np.array([["Month-to-month"]] * rows, dtype=object),
    }
    probabilities = np.tile(np.array([[0.3, 0.7]], dtype=np.float32), (rows, 1))
    return PredictionEvent(ts, request_id, MODEL, "1", features, ["Yes"] * rows, probabilities)


def baseline_write(store: SqlPredictionStore, items: Sequence[Feedback]) -> object:
    """The write as it was: a DELETE per item, then the inserts (a later label replaced an earlier one)."""
    now = datetime.now(UTC)
    rows = [{"ts": now, "model_name": MODEL, "request_id": i.request_id, "row_index": i.row_index, "actual": i.actual}
            for i in items]  # fmt: skip
    table = feedback.c
    with store._engine.begin() as connection:  # noqa: SLF001 (the baseline needs the store's own engine)
        for item in items:
            connection.execute(
                feedback.delete().where(
                    (table.model_name == MODEL)
                    & (table.request_id == item.request_id)
                    & (table.row_index == item.row_index)
                )
            )
        connection.execute(feedback.insert(), rows)
    return len(rows)


def current_write(store: SqlPredictionStore, items: Sequence[Feedback]) -> object:
    return store.write_feedback(MODEL, items)


def labels(start: int, count: int) -> list[Feedback]:
    return [Feedback(f"r{i}", 0, "No") for i in range(start, start + count)]


def filled_store(path: Path) -> SqlPredictionStore:
    store = SqlPredictionStore(f"sqlite:///{path}")
    now = time.time()
    for at in range(0, LOGGED_ROWS, 2_000):
        store.write([event(now, f"r{i}") for i in range(at, at + 2_000)])
    return store


def one_request(path: Path, write: Write, total: int, per_request: int) -> float:
    store = filled_store(path)
    try:
        started = time.perf_counter()
        for at in range(0, total, per_request):
            write(store, labels(at, per_request))
        return time.perf_counter() - started
    finally:
        store.close()


def while_logging(
    path: Path, write: Write, per_request: int = LABELS_PER_REQUEST, pause: float = LABEL_EVERY_S
) -> tuple[int, int]:
    """(rows dropped, label requests written) over SECONDS of steady predictions and labels."""
    store = filled_store(path)
    logger = PredictionLogger(store)
    stop = threading.Event()
    requests = [0]

    def label_steadily() -> None:
        at = 0
        while not stop.is_set():
            write(store, labels(at % LOGGED_ROWS, per_request))
            at += per_request
            requests[0] += 1
            stop.wait(pause)

    labeller = threading.Thread(target=label_steadily, daemon=True)
    labeller.start()
    started = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - started) < SECONDS:
        due = int(elapsed * RATE_ROWS_PER_S)
        while sent < due:
            logger.submit(event(time.time(), f"p{sent}"))
            sent += 1
        time.sleep(0.001)
    stop.set()
    labeller.join()
    logger.close(timeout=600)
    store.close()
    return logger.dropped, requests[0]


def main() -> None:
    figures: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as scratch:
        tmp = Path(scratch)
        for total in (LABELS_PER_REQUEST, 100_000):
            before = one_request(tmp / f"b{total}.db", baseline_write, total, total)
            now = one_request(tmp / f"n{total}.db", current_write, total, LABELS_PER_REQUEST)
            shape = "in one request" if total == LABELS_PER_REQUEST else "(now: 100 requests of 1,000)"
            figures.append((f"one request: {total:,} labels {shape}", f"{before:.2f} s", f"{now:.2f} s"))
        dropped_before, requests_before = while_logging(tmp / "lb.db", baseline_write)
        dropped_now, requests_now = while_logging(tmp / "ln.db", current_write)
        figures.append(
            (
                f"while logging {RATE_ROWS_PER_S:,} rows/s, 2,000 labels/s: rows dropped",
                f"{dropped_before:,} ({requests_before} label requests)",
                f"{dropped_now:,} ({requests_now} label requests)",
            )
        )
        # The finding: 100,000 labels at once (now refused: sent as requests of 1,000, back to back).
        dropped_before, requests_before = while_logging(tmp / "bb.db", baseline_write, 100_000, SECONDS)
        dropped_now, requests_now = while_logging(tmp / "bn.db", current_write, LABELS_PER_REQUEST, 0.0)
        figures.append(
            (
                f"while logging {RATE_ROWS_PER_S:,} rows/s, labels flat out: rows dropped",
                f"{dropped_before:,} ({requests_before} × 100,000)",
                f"{dropped_now:,} ({requests_now} × 1,000)",
            )
        )
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), SQLite, {LOGGED_ROWS:,} rows logged first")
    width = 60
    print(f"{'measure':<{width}}{'baseline':>26}{'now':>26}")
    print("-" * (width + 52))
    for name, before_text, now_text in figures:
        print(f"{name:<{width}}{before_text:>26}{now_text:>26}")


if __name__ == "__main__":
    main()
