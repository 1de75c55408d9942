"""`driftloop demo`: the whole loop on one box, narrated.

It starts the services in a data directory of its own, trains v1 on long-tenure customers, serves it, replays
normal traffic (the scheduled drift check finds nothing), then a wave of new, short-tenure customers whose
behaviour is new: a competitor's fibre offer makes the ones on DSL leave. Their outcomes come back as labels; the
check finds drift, the automation starts the retrain deployment, the gate promotes the retrained model only if it
is significantly better on those recent rows and not significantly worse on v1's own holdout, and the server
follows the alias. Each step is printed with its time and links.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from driftloop.core import scenarios
from driftloop.io.prefect_http import prefect_api_client
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA, Settings

Say = Callable[[str], None]

# Its own data directory and ports, so the demo never touches the user's models or running services.
DEMO_OVERRIDES: dict[str, Any] = {
    "prefect_port": 4210,
    "mlflow_ui_port": 5010,
    "serve_port": 8010,
    "worker_port": 8099,
    "drift_cron": "* * * * *",
    "drift_window_rows": 500,
    "drift_min_rows": 200,
    "label_min_rows": 100,
    "retrain_cooldown_seconds": 0.0,
    "reload_interval": 1.0,
    "worker_poll_seconds": 2.0,
    "deploy": "local",  # the demo shows the loop on embedded defaults: its server follows the alias
}
NORMAL_ROWS = 400
# Trees can learn a relation confined to the new segment (short tenure) without unlearning the old one; a linear
# model would have to trade one for the other, and the gate would refuse it for the regression on v1's holdout.
ESTIMATOR = "hist_gradient_boosting"
DRIFTED_ROWS = 600
SEED = 11


def demo_settings(base: Settings) -> Settings:
    """The demo's own settings: its home and ports, the bundled churn model.

    Its project file would be in the demo's home, where there is none: the demo never deploys a user's models.
    """
    home = base.home / "demo"
    return base.model_copy(update={"home": home, "project_file": home / "driftloop.yaml", **DEMO_OVERRIDES})


@dataclass
class Step:
    name: str
    seconds: float
    detail: str


@dataclass
class DemoReport:
    steps: list[Step] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    loop_latency: float | None = None
    final_version: str | None = None
    retrain_verdict: str = ""
    retrain_rule: str = ""


class Demo:
    def __init__(self, settings: Settings, say: Say) -> None:
        self.settings = settings
        self.say = say
        self.report = DemoReport()
        self.api = prefect_api_client(settings.prefect_api)
        self.server = httpx.Client(base_url=settings.serve_url, timeout=30)
        self._clock = time.monotonic()

    def step(self, name: str, detail: str) -> None:
        now = time.monotonic()
        self.report.steps.append(Step(name, now - self._clock, detail))
        self._clock = now
        self.say(f"[{len(self.report.steps)}] {name}: {detail}")

    # --- data -------------------------------------------------------------------------------------------
    def write_reference(self) -> Path:
        full = pd.read_csv(BUNDLED_DATA)
        reference = scenarios.longer_tenure_reference(full, seed=SEED, share_new=0.0)
        path = self.settings.home / "data" / "reference.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        reference.to_csv(path, index=False)
        return path

    def replay(self, frame: pd.DataFrame, target: str) -> tuple[int, int]:
        """Send every row to /predict, then its true class to /feedback; returns (ok, failed)."""
        labels = frame[target].astype(str).to_numpy()
        features = frame.drop(columns=[target])
        # pandas-stubs reject other=None, which pandas takes (None where missing, on object dtype)
        rows = features.astype(object).where(features.notna(), None).to_dict(orient="records")  # type: ignore[call-overload]
        ok = failed = 0
        for row, label in zip(rows, labels, strict=True):
            response = self.server.post("/predict", json={"features": row})
            if response.status_code != 200:
                failed += 1
                continue
            ok += 1
            self.server.post("/feedback", json={"request_id": response.headers["x-request-id"], "label": label})
        return ok, failed

    # --- waiting on the loop ------------------------------------------------------------------------------
    def served_version(self) -> str | None:
        try:
            response = self.server.get("/ready")
        except httpx.HTTPError:
            return None
        return str(response.json().get("model_version")) if response.status_code == 200 else None

    def wait_served(self, version: str, timeout: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.served_version() == version:
                return time.monotonic()
            time.sleep(0.2)
        raise TimeoutError(f"the model server did not serve v{version} within {timeout:.0f}s")

    def flow_runs(self, flow_name: str, since: datetime) -> list[dict[str, Any]]:
        body = {
            "flows": {"name": {"any_": [flow_name]}},
            "flow_runs": {"start_time": {"after_": since.isoformat()}},
            "sort": "START_TIME_ASC",
        }
        response = self.api.post("/flow_runs/filter", json=body)
        response.raise_for_status()
        return list(response.json())

    def wait_run(self, flow_name: str, since: datetime, timeout: float, progress: str) -> dict[str, Any]:
        """The first run of ``flow_name`` started after ``since`` that reached a final state."""
        started = time.monotonic()
        announced = False
        while time.monotonic() - started < timeout:
            for run in self.flow_runs(flow_name, since):
                if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    return run
                if not announced:
                    self.say(f"    … {flow_name} run {run['name']} is {run['state_name'].lower()}")
                    announced = True
            if not announced and int(time.monotonic() - started) % 15 == 0:
                self.say(f"    … {progress} ({time.monotonic() - started:.0f}s)")
            time.sleep(1)
        raise TimeoutError(f"no {flow_name} run finished within {timeout:.0f}s after {since:%H:%M:%S}")

    def artifact(self, flow_run_id: str, key: str) -> str:
        body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}}
        response = self.api.post("/artifacts/filter", json=body)
        response.raise_for_status()
        found = response.json()
        return str(found[-1]["data"]) if found else ""

    def run_url(self, run: dict[str, Any]) -> str:
        return f"{self.settings.prefect_ui}/runs/flow-run/{run['id']}"


def verdict_line(markdown: str) -> str:
    """The first heading or verdict line of a markdown record, without markup."""
    for line in markdown.splitlines():
        if "verdict" in line.lower() or line.startswith("#"):
            return line.replace("*", "").strip("# ")
    return markdown.strip().splitlines()[0] if markdown.strip() else "?"


def record_line(markdown: str, field: str) -> str:
    """The value of a ``- field: value`` line of a retrain-decision record ("?" when absent)."""
    prefix = f"- {field}: "
    return next((line.removeprefix(prefix) for line in markdown.splitlines() if line.startswith(prefix)), "?")


def prepare_home(settings: Settings, stop: Callable[[Settings], None]) -> None:
    """Stop a previous demo's services and start from an empty data directory."""
    stop(settings)
    if settings.home.exists():
        shutil.rmtree(settings.home)
    settings.home.mkdir(parents=True)
    os.environ.update(settings.process_env())


def run_demo(settings: Settings, say: Say, up: Callable[[Settings], object], train: Callable[..., Any]) -> DemoReport:
    """The narrated loop; ``up`` starts services + deployments + worker, ``train`` runs the training flow."""
    demo = Demo(settings, say)
    schema_target = "churn"
    full = pd.read_csv(BUNDLED_DATA)

    up(settings)
    demo.step("services", f"Prefect {settings.prefect_ui}, MLflow {settings.mlflow_ui}, server {settings.serve_url}")

    reference = demo.write_reference()
    outcome = train(data_path=str(reference), schema_path=str(BUNDLED_SCHEMA), estimator=ESTIMATOR)
    demo.report.links["v1 MLflow"] = outcome.mlflow_version_url
    demo.step("train v1", f"v{outcome.version} ({ESTIMATOR}) on {reference.name}, customers with tenure > 12: "
                          f"{outcome.verdict}, ROC AUC {outcome.metrics['roc_auc']:.4f}")  # fmt: skip
    demo.wait_served(outcome.version)
    demo.step("serve v1", f"{settings.serve_url}/predict answers with v{outcome.version}")

    ok, failed = demo.replay(scenarios.normal_traffic(pd.read_csv(reference), NORMAL_ROWS, SEED), schema_target)
    # A check started during the replay judges part of it (too few rows, or a window of the wrong traffic): the
    # next one, started after the last request, is the one to show.
    normal_since = datetime.now(UTC)
    demo.step("normal traffic", f"{ok} predictions ({failed} failed) + their true labels")
    check = demo.wait_run("check-drift", normal_since, 150, "waiting for the scheduled drift check (every minute)")
    demo.report.links["drift check (normal)"] = demo.run_url(check)
    demo.step("drift check", verdict_line(demo.artifact(check["id"], "drift-verdict")))

    drifted = scenarios.new_customers(full, DRIFTED_ROWS, SEED)
    drifted[schema_target] = scenarios.competitor_offer_labels(drifted, SEED)
    replay_started = datetime.now(UTC)  # a check during the replay may already ask for the retrain
    ok, failed = demo.replay(drifted, schema_target)
    drift_since = datetime.now(UTC)
    demo.step("drifted traffic", f"{ok} predictions from new customers (tenure ≤ 12) ({failed} failed); a competitor's "
                                 "offer makes those on DSL leave: their outcomes come back as labels")  # fmt: skip
    check = demo.wait_run("check-drift", drift_since, 150, "waiting for the scheduled drift check")
    detected_at = datetime.fromisoformat(check["end_time"])
    demo.report.links["drift check (drifted)"] = demo.run_url(check)
    demo.step("drift check", verdict_line(demo.artifact(check["id"], "drift-verdict")))

    retrain = demo.wait_run("retrain-model", replay_started, 300, "waiting for the automation to start the retrain")
    decision = demo.artifact(retrain["id"], "retrain-decision")
    demo.report.links["retrain"] = demo.run_url(retrain)
    demo.report.retrain_verdict = verdict_line(decision)
    demo.report.retrain_rule = record_line(decision, "gate rule")
    why = record_line(decision, "gate").split(": ", 1)[-1].split("; ")[0]  # "promote: <first reason>; ..."
    demo.step("retrain", f"{retrain['state_name']}: {demo.report.retrain_verdict}: {why}")
    promoted = "promoted" in demo.report.retrain_verdict
    if promoted:
        version = demo.report.retrain_verdict.split("v", 1)[1].split()[0]
        demo.wait_served(version)
        demo.report.loop_latency = (datetime.now(UTC) - detected_at).total_seconds()
        demo.report.final_version = version
        demo.step("serve new champion", f"the server swapped to v{version} with no restart")
    else:
        demo.report.final_version = demo.served_version()
        demo.step("keep champion", f"the retrained model was refused; v{demo.report.final_version} keeps serving")
    return demo.report
