"""The prediction log: cost of submit on the caller's thread, SQLite write throughput, read_window on 100k rows.

Run: .venv/bin/python bench/bench_prediction_log.py   (about 30 s; prints one table, asserts nothing)

Events are built from the bundled churn data (19 features: 9 float32, 10 categorical) the way the server
builds them: the onnx feed of the request's rows, the labels and the (n, 2) float32 probabilities.
  submit             PredictionLogger.submit of a 1-row event, median ns per call:
                       idle     the writer is parked (its store waits on an Event): the caller's cost alone
                       busy     while the writer thread is inserting into SQLite (shares the GIL with the caller)
  queue alternatives the two designs the logger could use, on the same 1-row event (no writer thread)
  store.write        SqlPredictionStore.write of 2,000-row batches, rows/s (SQLite file, WAL), expansion included
  logger end to end  200,000 rows submitted as fast as possible until close() returned, rows/s
  read_window        100,000 rows of one model: all of them, last=10,000, a since/until slice
"""

from __future__ import annotations

import os
import platform
import queue
import statistics
import tempfile
import threading
import time
import timeit
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy

from driftloop import settings
from driftloop.core.features import onnx_feed, to_model_frame
from driftloop.io.datasets import load_schema, read_snapshot
from driftloop.io.prediction_store import PredictionEvent, SqlPredictionStore
from driftloop.serving.prediction_log import PredictionLogger

MODEL = "churn"
SUBMIT_CALLS = 200_000
WRITE_ROWS = 100_000
END_TO_END_ROWS = 200_000
READ_ROWS = 100_000
REPEATS = 5
POOL = 2_000
BATCH_ROWS = 2_000


class ParkedStore:
    """A store whose write waits until released: keeps the writer thread off the GIL while submit is timed."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, events: Sequence[PredictionEvent]) -> int:
        self.release.wait()
        return sum(event.rows for event in events)

    def read_window(self, model_name: str, **_: object) -> pd.DataFrame:
        return pd.DataFrame()

    def count(self, model_name: str | None = None) -> int:
        return 0

    def close(self) -> None:
        self.release.set()


def request_pool(rows_per_event: int, count: int) -> list[dict[str, np.ndarray]]:
    """Distinct onnx feeds of the bundled data, copied as a server's parsed request would be (not frame views)."""
    schema = load_schema(settings.BUNDLED_SCHEMA)
    frame = to_model_frame(read_snapshot(settings.BUNDLED_DATA), schema)
    rng = np.random.default_rng(7)
    starts = rng.integers(0, len(frame) - rows_per_event, size=count)
    feeds = []
    for start in starts:
        feed = onnx_feed(frame.iloc[start : start + rows_per_event], schema)
        feeds.append({name: np.array(values) for name, values in feed.items()})
    return feeds


def build_events(rows_per_event: int, count: int, start: float) -> list[PredictionEvent]:
    pool = request_pool(rows_per_event, min(count, POOL))
    rng = np.random.default_rng(11)
    events = []
    for number in range(count):
        positive = rng.random((rows_per_event, 1)).astype(np.float32)
        events.append(
            PredictionEvent(
                ts=start + number * 0.001,
                request_id=f"req-{number}",
                model_name=MODEL,
                model_version=str(1 + number % 2),
                features=pool[number % len(pool)],
                labels=np.where(positive[:, 0] >= 0.5, "Yes", "No"),
                probabilities=np.hstack([1 - positive, positive]),
            )
        )
    return events


def median_ns(call: Callable[[], object], number: int) -> float:
    return statistics.median(timeit.repeat(call, number=number, repeat=REPEATS)) / number * 1e9


def submit_costs(event: PredictionEvent, db: Path) -> dict[str, float]:
    costs: dict[str, float] = {}
    parked = ParkedStore()
    logger = PredictionLogger(parked, max_queue=10**9, batch_max_rows=10**9, flush_interval=3600)
    costs["submit, writer idle"] = median_ns(lambda: logger.submit(event), SUBMIT_CALLS)
    parked.release.set()
    logger.close(timeout=600)

    store = SqlPredictionStore(f"sqlite:///{db}")
    logger = PredictionLogger(store, max_queue=10**9)
    costs["submit, writer busy (SQLite)"] = median_ns(lambda: logger.submit(event), SUBMIT_CALLS // 10)
    logger.close(timeout=600)
    store.close()

    lock_queue: deque[PredictionEvent] = deque()
    ready = threading.Condition(threading.Lock())

    def deque_condition() -> None:
        with ready:
            lock_queue.append(event)

    plain_queue: queue.Queue[PredictionEvent] = queue.Queue()
    counter_lock = threading.Lock()
    pending = [0]

    def queue_put_nowait() -> None:
        # queue.Queue bounds items, not rows, so the row count needs a lock of its own.
        with counter_lock:
            pending[0] += event.rows
        plain_queue.put_nowait(event)

    costs["  deque.append under a Condition"] = median_ns(deque_condition, SUBMIT_CALLS)
    costs["  queue.Queue.put_nowait + row lock"] = median_ns(queue_put_nowait, SUBMIT_CALLS)
    costs["PredictionEvent(...) construction"] = median_ns(
        lambda: PredictionEvent(time.time(), "r", MODEL, "1", event.features, event.labels, event.probabilities),
        SUBMIT_CALLS,
    )
    return costs


def store_write_rate(events: list[PredictionEvent], db: Path) -> float:
    """Rows/s of store.write called with batches of BATCH_ROWS rows, as the logger's writer does."""
    store = SqlPredictionStore(f"sqlite:///{db}")
    per_batch = max(1, BATCH_ROWS // events[0].rows)
    started = time.perf_counter()
    rows = sum(store.write(events[at : at + per_batch]) for at in range(0, len(events), per_batch))
    elapsed = time.perf_counter() - started
    store.close()
    return rows / elapsed


def end_to_end_rate(events: list[PredictionEvent], db: Path) -> tuple[float, int]:
    store = SqlPredictionStore(f"sqlite:///{db}")
    logger = PredictionLogger(store, max_queue=END_TO_END_ROWS)
    started = time.perf_counter()
    for event in events:
        logger.submit(event)
    logger.close(timeout=600)
    elapsed = time.perf_counter() - started
    store.close()
    return logger.written / elapsed, logger.dropped


def read_times(db: Path, first_ts: float) -> dict[str, float]:
    store = SqlPredictionStore(f"sqlite:///{db}")
    since = datetime.fromtimestamp(first_ts + READ_ROWS * 0.001 * 0.25, UTC)
    until = datetime.fromtimestamp(first_ts + READ_ROWS * 0.001 * 0.75, UTC)
    calls: dict[str, Callable[[], pd.DataFrame]] = {
        f"all {READ_ROWS:,} rows": lambda: store.read_window(MODEL),
        "last=10,000": lambda: store.read_window(MODEL, last=10_000),
        "since/until (middle half)": lambda: store.read_window(MODEL, since=since, until=until),
        "model_version='1' (half)": lambda: store.read_window(MODEL, model_version="1"),
    }
    times = {}
    for name, call in calls.items():
        rows = len(call())
        times[f"{name} -> {rows:,} rows"] = statistics.median(timeit.repeat(call, number=1, repeat=REPEATS))
    store.close()
    return times


def main() -> None:
    start = time.time() - 3600
    one_row = build_events(1, WRITE_ROWS, start)
    with tempfile.TemporaryDirectory(prefix="bench-plog-") as scratch:
        tmp = Path(scratch)
        costs = submit_costs(one_row[0], tmp / "submit.db")
        write_one = store_write_rate(one_row, tmp / "write1.db")
        batch_100 = build_events(100, WRITE_ROWS // 100, start)
        write_100 = store_write_rate(batch_100, tmp / "write100.db")
        twice = [*one_row, *build_events(1, END_TO_END_ROWS - WRITE_ROWS, start + 1000)]
        end_to_end, dropped = end_to_end_rate(twice, tmp / "e2e.db")
        reads = read_times(tmp / "write1.db", start)

    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), SQLAlchemy {sqlalchemy.__version__}, "
        f"pandas {pd.__version__}; 19 churn features; median of {REPEATS} repeats"
    )
    width = 56
    print(f"{'measure':<{width}}{'result':>16}")
    print("-" * (width + 16))
    for name, nanoseconds in costs.items():
        print(f"{name:<{width}}{nanoseconds / 1000:>13.2f} µs")
    print(f"{'store.write, 1-row events':<{width}}{write_one:>11,.0f} rows/s")
    print(f"{'store.write, 100-row events':<{width}}{write_100:>11,.0f} rows/s")
    print(f"{'logger end to end, 1-row events':<{width}}{end_to_end:>11,.0f} rows/s   (dropped {dropped})")
    for name, seconds in reads.items():
        print(f"{'read_window ' + name:<{width}}{seconds * 1000:>13.1f} ms")


if __name__ == "__main__":
    main()
