"""What the benchmarks share: free ports, and champions trained with the real CLI into a scratch home."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driftloop.settings import TELEMETRY_OFF

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TaskModel:
    """A model of another task kind, trained from one of scikit-learn's bundled datasets (no download)."""

    name: str  # the registered model's name (DRIFTLOOP_MODEL_NAME)
    task: str  # what `driftloop schema infer` should find: multiclass | regression
    loader: str  # the sklearn.datasets function
    estimator: str

    def write_data(self, work: Path) -> tuple[Path, Path]:
        """Write the dataset to ``work/NAME.csv`` and its inferred schema to ``work/NAME.yaml``; both paths.

        Raises:
            RuntimeError: `driftloop schema infer` failed, or found another task kind.
        """
        import sklearn.datasets

        loader = getattr(sklearn.datasets, self.loader)
        frame = loader(as_frame=True, **({"scaled": False} if self.loader == "load_diabetes" else {})).frame
        csv, schema = work / f"{self.name}.csv", work / f"{self.name}.yaml"
        frame.to_csv(csv, index=False)
        argv = [str(VENV_BIN / "driftloop"), "schema", "infer", "--data", str(csv), "--target", "target"]
        argv += ["--out", str(schema), "--force"]
        env = {**os.environ, **TELEMETRY_OFF}
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        said = done.stdout + done.stderr
        if done.returncode != 0 or f"({self.task})" not in said:
            raise RuntimeError(f"driftloop schema infer on {csv} (expected {self.task}) said:\n{said}")
        return csv, schema

    def train_args(self, work: Path) -> list[str]:
        """The `driftloop train` arguments for this model (data and schema under ``work``, see write_data)."""
        csv, schema = work / f"{self.name}.csv", work / f"{self.name}.yaml"
        return ["--data", str(csv), "--schema", str(schema), "--model-name", self.name, "--estimator", self.estimator]


MULTICLASS = TaskModel("wine", "multiclass", "load_wine", "random_forest")
REGRESSION = TaskModel("diabetes", "regression", "load_diabetes", "gradient_boosting")


def has_champion(home: Path, model_name: str) -> bool:
    """Whether ``home``'s registry has a version of ``model_name`` under the champion alias."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from driftloop.settings import Settings

    mlflow.set_tracking_uri(Settings(home=home).tracking_uri)
    try:
        MlflowClient().get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        return False
    return True


def train_versions(home: Path, estimators: Sequence[str], runs: Sequence[Sequence[str]] = ()) -> float:
    """`driftloop train --estimator E` for each estimator into ``home`` (its own Prefect server, stopped after).

    Then `driftloop train ARGS` for each of ``runs`` (say TaskModel.train_args: other data, schema, model name).
    Returns the seconds it took. The output goes to ``home/train.log``.

    Raises:
        RuntimeError: A training run failed (the message ends with the log's tail).
    """
    env = {**os.environ, **TELEMETRY_OFF, "DRIFTLOOP_HOME": str(home), "DRIFTLOOP_START_MLFLOW_UI": "false"}
    env["DRIFTLOOP_LOG_SKLEARN_MODEL"] = "true"  # bench_serving.py serves the tutorial's way from the pipeline
    env["DRIFTLOOP_PREFECT_PORT"] = str(free_port())
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "train.log"
    started = time.perf_counter()
    try:
        for args in [["--estimator", estimator] for estimator in estimators] + [list(run) for run in runs]:
            with log.open("ab") as out:
                done = subprocess.run(
                    [str(VENV_BIN / "driftloop"), "train", *args],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False,
                )  # fmt: skip
            if done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"driftloop train failed (exit {done.returncode}, log {log}):\n{tail}")
    finally:
        subprocess.run([str(VENV_BIN / "driftloop"), "down"], cwd=ROOT, env=env, capture_output=True, check=False)
    return time.perf_counter() - started
