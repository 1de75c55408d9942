"""Render the model-health board's panels for the README, from a real Prometheus scraping real model servers.

    PYTHONPATH=. .venv/bin/python scripts/render_model_health.py [--out docs/model-health.png]

Grafana cannot run on these machines, so this draws the board's own queries (deployments/grafana/dashboards/
model-health.json) with matplotlib. What it shows is a known world, compressed in time: ``P(y = yes) =
sigmoid(3·x1)``, a model that scores exactly that, a drift check every 10 s. For a while the traffic looks like
training; then x1 squeezes towards the decision boundary (the model gets less sure and less right); labels come
back late and partly; then version 2 is served by a second server (a retrain) and traffic is as in training again.
Every check's figures come from driftloop's own computations (the drift test, the weighted share, the calibrated
estimate, the label check) on the generated rows, are kept in the monitoring store, exposed on the servers'
/metrics and scraped by Debian's ``prometheus``. Needs the prometheus binary.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from driftloop.core.check_record import CheckRecord, build_record
from driftloop.core.drift import build_profile, check_drift
from driftloop.core.label_check import check_labels
from driftloop.core.performance_estimate import estimate_performance, fit_calibration
from driftloop.core.task import Task, TaskKind
from driftloop.io.check_store import open_check_store
from tests.support.bundles import train_model, write_bundle
from tests.support.prometheus import prometheus_scraping
from tests.support.serving import server_process

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "deployments" / "grafana" / "dashboards" / "model-health.json"
TASK = Task(TaskKind.BINARY, ("no", "yes"))
FEATURES = ("x1", "x2", "x3", "x4")
IMPORTANCE = {"x1": 0.85, "x2": 0.05, "x3": 0.05, "x4": 0.05}
CHECKS, SHIFT_AT, RETRAIN_AT, EVERY = 24, 7, 16, 10.0  # the server reads the store every 10 s at most
BATCH, BATCHES_PER_WINDOW = 500, 4


def _world(rng: np.random.Generator, rows: int, spread: float, x3_mean: float = 0.0) -> pd.DataFrame:
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in FEATURES})
    frame["x1"] *= spread
    frame["x3"] += x3_mean
    frame["score"] = 1 / (1 + np.exp(-3.0 * frame["x1"]))
    frame["y"] = np.where(rng.random(rows) < frame["score"], "yes", "no")
    frame["predicted"] = np.where(frame["score"] >= 0.5, "yes", "no")
    return frame


def _checks(seed: int) -> list[tuple[str, CheckRecord]]:
    """(version, figures) of every check, computed by driftloop's own functions on the generated traffic.

    Each step serves a batch; the check reads the last ``BATCHES_PER_WINDOW`` batches, with the labels known then:
    a batch's labels come back a quarter more at each later step.
    """
    rng = np.random.default_rng(seed)
    training = _world(rng, 5000, spread=2.0)
    holdout = _world(rng, 2000, spread=2.0)
    calibration = fit_calibration(TASK, holdout["score"].to_numpy(), (holdout["y"] == "yes").to_numpy().astype(int))
    baseline = float(np.mean(holdout["predicted"] == holdout["y"]))
    profile = build_profile(training, list(FEATURES), [], importances=IMPORTANCE)
    records: list[tuple[str, CheckRecord]] = []
    batches: list[pd.DataFrame] = []
    episode_open = False
    for index in range(CHECKS):
        squeezed = SHIFT_AT <= index < RETRAIN_AT
        progress = min(1.0, (index - SHIFT_AT + 1) / 3) if squeezed else 0.0
        # For a while a harmless move of a column the model ignores (x3), later the harmful squeeze of x1.
        batches.append(_world(rng, BATCH, spread=2.0 - 1.7 * progress, x3_mean=0.8 if 2 <= index < 5 else 0.0))
        if index == RETRAIN_AT:
            batches = batches[-1:]  # version 2's window starts with its own traffic
        window = pd.concat(batches[-BATCHES_PER_WINDOW:], ignore_index=True)
        ages = np.concatenate([np.full(BATCH, age) for age in range(len(batches[-BATCHES_PER_WINDOW:]) - 1, -1, -1)])
        known = np.arange(len(window)) % BATCH < BATCH * np.minimum(1.0, 0.25 * ages)
        verdict = check_drift(profile, window[list(FEATURES)], drift_share=0.5, min_rows=200, rule="weighted")
        labels = check_labels(
            TASK, window["predicted"].to_numpy()[known], window["y"].to_numpy()[known], baseline, 200, 0.05
        )
        estimate = estimate_performance(
            calibration, TASK, window["score"].to_numpy(), window["predicted"].to_numpy(), baseline, 0.05, 200
        )
        version = "2" if index >= RETRAIN_AT else "1"
        alarm = verdict.is_drift or estimate.status == "degraded" or labels.status == "degraded"
        action = "emit" if alarm and not episode_open and version == "1" else "none"
        episode_open = episode_open or action == "emit"
        record = build_record(datetime.now(UTC), "churn", version, verdict, labels, estimate, None, action, None)
        records.append((version, record))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "model-health.png")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    board = json.loads(BOARD.read_text())
    checks = _checks(args.seed)
    with tempfile.TemporaryDirectory(prefix="driftloop-board-") as tmp:
        directory = Path(tmp)
        model = train_model(rows=600, seed=0)
        bundles = {v: write_bundle(directory / f"v{v}", model, v) for v in ("1", "2")}
        url = f"sqlite:///{directory / 'predictions.db'}"
        env = {"DRIFTLOOP_PREDICTION_LOG": "true", "DRIFTLOOP_PREDICTION_LOG_URL": url}
        store = open_check_store(url)
        with ExitStack() as servers:
            blue = servers.enter_context(server_process(_made(directory / "blue"), bundles["1"], **env))
            prom = servers.enter_context(prometheus_scraping(directory / "prometheus", [_address(blue.url)]))
            start = time.time()
            for index, (_, record) in enumerate(checks):
                if index == RETRAIN_AT:  # the rollout: version 2's server takes over
                    green = servers.enter_context(server_process(_made(directory / "green"), bundles["2"], **env))
                    prom.scrape([_address(blue.url), _address(green.url)])
                    blue.process.terminate()
                store.write(replace(record, ts=datetime.now(UTC)))
                time.sleep(EVERY)
            end = time.time()
            series = {
                (panel["title"], target["legendFormat"]): prom.query_range(target["expr"], start, end, 1.0)
                for panel in board["panels"]
                for target in panel["targets"]
            }
            marks = {a["name"]: prom.query_range(a["expr"], start, end, 1.0) for a in board["annotations"]["list"]}
        store.close()
    _draw(board, series, marks, start, args.out)
    print(f"wrote {args.out}")


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _with_gaps(values: list[list[object]], start: float) -> tuple[list[float], list[float]]:
    """Times and values, with a NaN wherever Prometheus had no sample (so no line is drawn across the gap)."""
    times: list[float] = []
    points: list[float] = []
    for moment, value in values:
        at = float(str(moment)) - start
        if times and at - times[-1] > 1.5:
            times.append(times[-1] + 1.0)
            points.append(float("nan"))
        times.append(at)
        points.append(float(str(value)))
    return times, points


def _address(url: str) -> str:
    return url.removeprefix("http://")


def _draw(board: dict, series: dict, marks: dict, start: float, out: Path) -> None:  # type: ignore[type-arg]
    shown = [p for p in board["panels"] if p["type"] == "timeseries" and "RMSE" not in p["title"]]
    figure, axes = plt.subplots(2, 2, figsize=(13, 7.5), sharex=True)
    for axis, panel in zip(axes.flat, shown, strict=True):
        for target in panel["targets"]:
            for result in series[panel["title"], target["legendFormat"]]:
                times, values = _with_gaps(result["values"], start)
                label = target["legendFormat"].replace("{{model}}", result["metric"].get("model", ""))
                label = label.replace("{{column}}", result["metric"].get("column", "")).strip()
                style = {"linestyle": ":", "linewidth": 1} if "estimate low" in label or "high" in label else {}
                axis.plot(times, values, label=label, **style)
        for name, results in marks.items():
            colour = "red" if "episode" in name else "tab:blue"
            for result in results:
                first = float(result["values"][0][0]) - start
                axis.axvline(first, color=colour, alpha=0.5, linewidth=1.5)
        axis.set_title(panel["title"], fontsize=10)
        axis.legend(fontsize=7, loc="best")
        axis.grid(alpha=0.3)
    figure.supxlabel(
        "seconds (a drift check every 10 s).  Red: a drift episode opened.  Blue: a version starts being served "
        "(v1 at the start, v2 after the retrain).",
        fontsize=9,
    )
    figure.suptitle("driftloop model health: the board's queries on a real Prometheus (known world, compressed)")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)


if __name__ == "__main__":
    main()
