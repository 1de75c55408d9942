"""ONNX (onnxruntime) against scikit-learn predict_proba on the bundled churn data, 1 row and 1,000 rows.

Run: .venv/bin/python bench/bench_onnx.py   (about 30 s; prints one table, asserts nothing)

Three ways to score the same model frame (the output of core.features.to_model_frame):
  sklearn    Pipeline.predict_proba(frame)
  onnx       OnnxClassifier.predict(frame): builds the per-column feed, then session.run
  run        session.run on a feed built beforehand: the floor the server could reach
Each figure is the median over REPEATS timeit repeats of the time per call.
"""

from __future__ import annotations

import os
import platform
import statistics
import timeit
from collections.abc import Callable
from functools import partial

import onnxruntime
import pandas as pd
import sklearn
import yaml
from sklearn.model_selection import train_test_split

from driftloop import settings
from driftloop.core.features import encode_target, onnx_feed, to_model_frame
from driftloop.core.pipeline import DEFAULT_ESTIMATOR, build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.io.onnx_export import export_onnx
from driftloop.io.onnx_runtime import OnnxClassifier

ESTIMATORS = (DEFAULT_ESTIMATOR, "random_forest")
BATCHES = (1, 1000)
REPEATS = 7
TARGET_SECONDS_PER_REPEAT = 0.15


def per_call_seconds(call: Callable[[], object]) -> float:
    """Median seconds per call; the number of calls per repeat is sized so one repeat takes ~0.15 s."""
    call()  # warm-up: first-call allocations and lazy initialisation are not what we measure
    timer = timeit.Timer(call)
    once = min(timer.repeat(repeat=3, number=1))
    number = max(1, int(TARGET_SECONDS_PER_REPEAT / max(once, 1e-7)))
    return statistics.median(timer.repeat(repeat=REPEATS, number=number)) / number


def fmt_time(seconds: float) -> str:
    micro = seconds * 1e6
    return f"{micro:,.1f} µs" if micro < 10_000 else f"{micro / 1000:,.2f} ms"


def main() -> None:
    schema = DatasetSchema.model_validate(yaml.safe_load(settings.BUNDLED_SCHEMA.read_text(encoding="utf-8")))
    raw = pd.read_csv(settings.BUNDLED_DATA)
    frame = to_model_frame(raw, schema)
    y = encode_target(raw[schema.target.name], schema)
    train, holdout, y_train, _ = train_test_split(frame, y, test_size=0.25, stratify=y, random_state=42)

    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), scikit-learn {sklearn.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; trained on {len(train):,} rows, median of {REPEATS} repeats"
    )
    header = (
        f"{'estimator':<24}{'rows':>6}{'sklearn':>14}{'onnx predict':>15}{'onnx run':>13}"
        f"{'sklearn/predict':>17}{'sklearn/run':>13}"
    )
    print(header)
    print("-" * len(header))
    for estimator in ESTIMATORS:
        pipeline = build_pipeline(schema, estimator).fit(train, y_train)
        classifier = OnnxClassifier.from_bytes(export_onnx(pipeline, schema), schema)
        session = classifier.session
        for rows in BATCHES:
            batch = holdout.iloc[:rows]
            feed = onnx_feed(batch, schema)
            t_sklearn = per_call_seconds(partial(pipeline.predict_proba, batch))
            t_predict = per_call_seconds(partial(classifier.predict, batch))
            t_run = per_call_seconds(partial(session.run, None, feed))
            print(
                f"{estimator:<24}{rows:>6,}{fmt_time(t_sklearn):>14}{fmt_time(t_predict):>15}{fmt_time(t_run):>13}"
                f"{t_sklearn / t_predict:>16.1f}×{t_sklearn / t_run:>12.1f}×"
            )


if __name__ == "__main__":
    main()
