"""The prediction store contract, checked on every backend: SQLite (unit tests) and PostgreSQL (integration).

``check_round_trip`` and ``check_windows`` take an open store and a model name of the caller's (tests sharing one
database each use their own); ``make_event`` builds a request's predictions shaped like the server's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from driftloop.io.prediction_store import WINDOW_COLUMNS, Feedback, FeedbackWritten, PredictionEvent, PredictionStore

T0 = 1_790_000_000.25  # 2026-09-21 14:13:20.25 UTC
CONTRACTS = np.array(["Month-to-month", "One year", "Two year"], dtype=object)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def make_event(
    ts: float, request_id: str, *, rows: int = 1, version: str = "1", model: str = "churn", seed: int = 0
) -> PredictionEvent:
    """A request of ``rows`` rows shaped like the server's: (n, 1) feed columns, (n, 2) float32 probabilities."""
    rng = np.random.default_rng(seed)
    positive = rng.random((rows, 1)).astype(np.float32)
    return PredictionEvent(
        ts=ts,
        request_id=request_id,
        model_name=model,
        model_version=version,
        features={
            "tenure": rng.integers(0, 72, size=(rows, 1)).astype(np.float32),
            "contract": rng.choice(CONTRACTS, size=(rows, 1)),
        },
        labels=np.where(positive[:, 0] >= 0.5, "Yes", "No"),
        probabilities=np.hstack([1 - positive, positive]),
    )


def check_round_trip(store: PredictionStore, model: str) -> None:
    """Values come back as the model saw them; NaN and "" both come back as missing."""
    three = PredictionEvent(
        ts=T0,
        request_id="req-a",
        model_name=model,
        model_version="1",
        features={
            "tenure": np.array([[1.0], [np.nan], [24.0]], dtype=np.float32),
            "monthly_charges": np.array([[0.1], [70.35], [np.nan]], dtype=np.float32),
            "contract": np.array([["One year"], [""], ["Month-to-month"]], dtype=object),
            "term": np.array([["12"], ["24"], [""]], dtype=object),  # a category that looks like a number
        },
        labels=["No", "Yes", "Yes"],
        probabilities=np.array([[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]], dtype=np.float32),
    )
    one = PredictionEvent(
        ts=T0 + 1.5,
        request_id="req-b",
        model_name=model,
        model_version="2",
        features={
            "tenure": np.array([[72.0]], dtype=np.float32),
            "monthly_charges": np.array([[19.99]], dtype=np.float32),
            "contract": np.array([["Two year"]], dtype=object),
            "term": np.array([["36"]], dtype=object),
        },
        labels=np.array(["No"]),
        probabilities=np.array([[0.875, 0.125]], dtype=np.float32),
    )

    assert store.write([three, one]) == 4
    frame = store.read_window(model)

    assert list(frame.columns) == [*WINDOW_COLUMNS, "tenure", "monthly_charges", "contract", "term"]
    assert frame["ts"].dt.tz is not None
    assert frame["ts"].tolist() == [at(0), at(0), at(0), at(1.5)]
    assert frame["request_id"].tolist() == ["req-a", "req-a", "req-a", "req-b"]
    assert frame["model_version"].tolist() == ["1", "1", "1", "2"]
    assert frame["label"].tolist() == ["No", "Yes", "Yes", "No"]
    # float32 values are logged in their shortest form, so 0.1 comes back as 0.1, not 0.10000000149011612.
    assert frame["probability"].tolist() == [0.1, 0.75, 0.5, 0.125]
    assert frame["tenure"].dtype == np.float64
    np.testing.assert_array_equal(frame["tenure"].to_numpy(), [1.0, np.nan, 24.0, 72.0])
    np.testing.assert_array_equal(frame["monthly_charges"].to_numpy(), [0.1, 70.35, np.nan, 19.99])
    assert frame["contract"].dtype == object
    assert frame["contract"].tolist() == ["One year", None, "Month-to-month", "Two year"]
    assert frame["term"].tolist() == ["12", "24", None, "36"]
    assert store.count(model) == 4


def check_windows(store: PredictionStore, model: str) -> None:
    """Filters combine; rows always come oldest first, whatever order they were written in."""
    events = [make_event(T0 + i, f"r{i}", version=str(1 + i % 2), model=model, seed=i) for i in range(10)]
    events[4] = make_event(T0 + 4, "r4", rows=2, version="1", model=model, seed=4)
    order = [7, 2, 9, 0, 5, 3, 8, 1, 6, 4]
    store.write([events[i] for i in order[:5]])
    store.write([events[i] for i in order[5:]])
    store.write([make_event(T0 + 3.5, "other", model=f"{model}-other")])

    def ids(**window: object) -> list[str]:
        frame = store.read_window(model, **window)  # type: ignore[arg-type]
        assert frame["ts"].is_monotonic_increasing
        return frame["request_id"].tolist()

    assert ids() == ["r0", "r1", "r2", "r3", "r4", "r4", "r5", "r6", "r7", "r8", "r9"]
    assert ids(model_version="2") == ["r1", "r3", "r5", "r7", "r9"]
    assert ids(since=at(3), until=at(7)) == ["r3", "r4", "r4", "r5", "r6"]  # since inclusive, until exclusive
    assert ids(last=3) == ["r7", "r8", "r9"]
    assert ids(last=3, until=at(5)) == ["r3", "r4", "r4"]
    assert ids(model_version="1", last=2) == ["r6", "r8"]
    assert ids(model_version="1", since=at(2), until=at(7), last=2) == ["r4", "r6"]
    assert ids(since=at(5).replace(tzinfo=None)) == ["r5", "r6", "r7", "r8", "r9"]  # naive means UTC
    assert ids(since=at(8).astimezone(timezone(timedelta(hours=-5)))) == ["r8", "r9"]
    assert ids(since=at(20)) == []
    # The same windows streamed in chunks: the same rows, features and all, in the same order (r4's two rows share
    # one moment and may fall in two chunks).
    for last, version, chunk_rows in [(3, None, 2), (6, None, 1), (50, None, 4), (2, "1", 1), (11, None, 11)]:
        chunks = list(store.read_window_chunks(model, model_version=version, last=last, chunk_rows=chunk_rows))
        assert all(len(chunk) <= chunk_rows for chunk in chunks)
        streamed = pd.concat(chunks, ignore_index=True)
        pd.testing.assert_frame_equal(streamed, store.read_window(model, model_version=version, last=last))
    (empty,) = store.read_window_chunks("nobody", last=5, chunk_rows=2)
    assert empty.empty
    assert store.count(model) == 11
    assert store.count(f"{model}-other") == 1
    assert store.count("nobody") == 0


def check_first_label_wins(store: PredictionStore, model: str) -> None:
    """A row's first label stays; later ones, in the same request or after, are counted and left out."""
    store.write([make_event(T0, "r", rows=3, model=model)])
    first = [Feedback("r", 0, "No"), Feedback("r", 1, "Yes"), Feedback("r", 0, "Yes")]  # row 0 twice
    assert store.write_feedback(model, first) == FeedbackWritten(accepted=2, already_labelled=0)
    again = [Feedback("r", 0, "Yes"), Feedback("r", 1, "No"), Feedback("r", 2, "No")]
    assert store.write_feedback(model, again) == FeedbackWritten(accepted=1, already_labelled=2)
    assert store.read_window(model)["actual"].tolist() == ["No", "Yes", "No"]
    many = [Feedback(f"other{i}", 0, "Yes") for i in range(1_500)]  # more request ids than one IN list holds
    assert store.write_feedback(model, many) == FeedbackWritten(accepted=1_500, already_labelled=0)
    assert store.write_feedback(model, many) == FeedbackWritten(accepted=0, already_labelled=1_500)


def check_forget_requests(store: PredictionStore, model: str) -> None:
    """Only the model's rows from ``since`` on whose request id starts with the prefix go; a LIKE wildcard is text."""
    store.write(
        [
            make_event(T0, "batch-run1-00000-0000", rows=3, model=model),
            make_event(T0 + 5, "batch-run1-00001-0000", rows=2, model=model),
            make_event(T0 + 5, "batch-run2-00000-0000", rows=4, model=model),  # another run
            make_event(T0 + 5, "batch-run1_x", model=model),  # not the prefix: "_" is not "-"
            make_event(T0 + 5, "batch-run1-00002-0000", model=f"{model}-other"),  # another model
            make_event(T0 - 60, "batch-run1-old", model=model),  # before the run began
        ]
    )
    assert store.forget_requests(model, "batch-run1-", at(-1)) == 5
    left = store.read_window(model)
    assert sorted(left["request_id"].unique()) == ["batch-run1-old", "batch-run1_x", "batch-run2-00000-0000"]
    assert store.count(f"{model}-other") == 1
    assert store.forget_requests(model, "batch-run_-", at(-1)) == 0  # the prefix is text, not a pattern
