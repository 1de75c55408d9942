"""ONNX (onnxruntime) against scikit-learn on the bundled churn data, 1 row and 1,000 rows, and our graphs
against the one skl2onnx makes of the whole pipeline (what driftloop exported before).

Run: .venv/bin/python bench/bench_onnx.py   (under a minute; prints one table, asserts nothing)

Ways to score the same model frame (the output of core.features.to_model_frame), every session single-threaded
as the server runs it:
  sklearn       Pipeline.predict_proba(frame)
  skl2onnx      session.run of skl2onnx's conversion of the whole Pipeline: one input per feature, ~75
                preprocessing nodes (the baseline)
  model.onnx    session.run of export_onnx's graph: one input per feature, 9-10 preprocessing nodes
  serving.onnx  session.run of grouped_onnx's graph (what the server runs): two inputs, the same nodes
Feeds are built beforehand. Each figure is the median over REPEATS timeit repeats of the time per call.
"""

from __future__ import annotations

import os
import platform
import statistics
import timeit
from collections.abc import Callable
from functools import partial

import numpy as np
import onnxruntime
import pandas as pd
import sklearn
import yaml
from sklearn.model_selection import train_test_split

from driftloop import settings
from driftloop.core.features import encode_target, onnx_feed, to_model_frame
from driftloop.core.pipeline import DEFAULT_ESTIMATOR, build_pipeline
from driftloop.core.schema import DatasetSchema
from driftloop.io.onnx_export import export_onnx, grouped_onnx
from driftloop.io.onnx_runtime import OnnxModel

from baselines.skl2onnx_pipeline import convert_whole_pipeline

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
        f"{'estimator':<22}{'rows':>6}{'sklearn':>12}{'skl2onnx':>12}{'model.onnx':>12}{'serving.onnx':>14}"
        f"{'skl2onnx/serving':>18}{'sklearn/serving':>17}"
    )
    print(header)
    print("-" * len(header))
    for estimator in ESTIMATORS:
        pipeline = build_pipeline(schema, estimator).fit(train, y_train)
        model_bytes = export_onnx(pipeline, schema)
        per_feature = OnnxModel.from_bytes(model_bytes, schema, intra_op_num_threads=1)
        grouped = OnnxModel.from_bytes(grouped_onnx(model_bytes), schema, intra_op_num_threads=1)
        baseline = OnnxModel.from_bytes(convert_whole_pipeline(pipeline, schema), schema, intra_op_num_threads=1)
        for rows in BATCHES:
            batch = holdout.iloc[:rows]
            feed = onnx_feed(batch, schema)
            grouped_feed = grouped.grouped_feed(  # row-major, as the server's parser builds them
                np.ascontiguousarray(batch[schema.numeric].to_numpy(np.float32)),
                np.ascontiguousarray(batch[schema.categorical].to_numpy(object)),
            )
            t_sklearn = per_call_seconds(partial(pipeline.predict_proba, batch))
            t_baseline = per_call_seconds(partial(baseline.run, feed))
            t_model = per_call_seconds(partial(per_feature.run, feed))
            t_serving = per_call_seconds(partial(grouped.run, grouped_feed))
            print(
                f"{estimator:<22}{rows:>6,}{fmt_time(t_sklearn):>12}{fmt_time(t_baseline):>12}{fmt_time(t_model):>12}"
                f"{fmt_time(t_serving):>14}{t_baseline / t_serving:>17.1f}×{t_sklearn / t_serving:>16.1f}×"
            )


if __name__ == "__main__":
    main()
