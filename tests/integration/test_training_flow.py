"""The training flow end to end: the real CLI, a real Prefect server, a real MLflow store."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from driftloop.core import lineage
from driftloop.core.features import to_model_frame
from driftloop.core.snapshot import split_holdout
from driftloop.deploy.rollout import check_admissible
from driftloop.errors import DeployError
from driftloop.io.datasets import load_schema, read_snapshot
from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.registry import ModelRegistry
from driftloop.io.tracking import ONNX_MODEL_NAME, use_tracking_uri
from driftloop.settings import BUNDLED_DATA, BUNDLED_SCHEMA, TELEMETRY_OFF, Settings
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.loans import write_loans

pytestmark = pytest.mark.integration


def registry_state(dl: Driftloop, model: str = "churn") -> dict[str, object]:
    """Everything a rejected run must leave untouched."""
    client = MlflowClient(tracking_uri=dl.tracking_uri, registry_uri=dl.tracking_uri)
    registry = ModelRegistry(model, dl.tracking_uri)
    runs = [
        run.info.run_id
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    champion = registry.champion()
    return {
        "versions": [(v.version, tuple(v.aliases)) for v in registry.versions()],
        "champion": None if champion is None else str(champion.version),
        "history": [m.to_json() for m in registry.history()],
        "runs": sorted(runs),
    }


def flow_run(prefect: PrefectServer, flow_run_id: str) -> dict[str, object]:
    with prefect.client() as client:
        response = client.get(f"/flow_runs/{flow_run_id}")
        response.raise_for_status()
        return dict(response.json())


def artifact_keys(prefect: PrefectServer, flow_run_id: str) -> set[str]:
    with prefect.client() as client:
        response = client.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
        response.raise_for_status()
        return {a["key"] for a in response.json() if a.get("key")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer) -> Driftloop:
    """One data directory with one training run of the bundled data (v1, champion), its pipeline logged too."""
    dl = make_driftloop(tmp_path_factory.mktemp("trained"), prefect_server, log_sklearn_model="true")
    dl.run("train")
    return dl


def test_first_run_registers_v1_as_champion_with_lineage(trained: Driftloop, prefect_server: PrefectServer) -> None:
    registry = ModelRegistry("churn", trained.tracking_uri)
    champion = registry.champion()
    assert champion is not None
    assert str(champion.version) == "1"
    tags = champion.tags
    schema = load_schema(BUNDLED_SCHEMA)
    from driftloop.core.snapshot import content_hash

    assert tags[lineage.DATA_HASH] == content_hash(read_snapshot(BUNDLED_DATA), schema)
    assert tags[lineage.PARITY] == lineage.PASSED
    assert tags[lineage.GATE] == "promote"
    assert len(tags[lineage.ONNX_SHA256]) == 64
    assert len(tags[lineage.GIT_COMMIT]) >= 7
    assert float(tags["driftloop.metric.roc_auc"]) > 0.8

    # The MLflow run and the Prefect flow run point at each other.
    run = MlflowClient(tracking_uri=trained.tracking_uri, registry_uri=trained.tracking_uri).get_run(champion.run_id)
    flow_run_id = run.data.tags[lineage.FLOW_RUN_ID]
    assert tags[lineage.FLOW_RUN_ID] == flow_run_id
    assert flow_run_id in run.data.tags[lineage.FLOW_RUN_URL]
    assert flow_run(prefect_server, flow_run_id)["state_type"] == "COMPLETED"
    assert {"promotion-decision", "model-metrics", "mlflow-run", "mlflow-model-version"} <= artifact_keys(
        prefect_server, flow_run_id
    )
    artifacts = {
        a.path
        for a in MlflowClient(tracking_uri=trained.tracking_uri, registry_uri=trained.tracking_uri).list_artifacts(
            run.info.run_id, "plots"
        )
    }
    assert artifacts == {"plots/confusion_matrix.png", "plots/roc_curve.png", "plots/feature_importance.png"}
    assert "holdout_roc_auc" in run.data.metrics


def test_registered_onnx_matches_sklearn_on_the_holdout(trained: Driftloop) -> None:
    registry = ModelRegistry("churn", trained.tracking_uri)
    version = registry.champion()
    assert version is not None
    schema = load_schema(BUNDLED_SCHEMA)
    holdout = split_holdout(read_snapshot(BUNDLED_DATA), schema, fraction=0.25, seed=42).holdout
    frame = to_model_frame(holdout, schema)

    onnx_labels, onnx_proba = OnnxModel.from_bytes(registry.onnx_bytes(str(version.version)), schema).predict(frame)
    use_tracking_uri(trained.tracking_uri)  # not mlflow.set_tracking_uri: it leaves MLFLOW_TRACKING_URI set
    sklearn_model = mlflow.sklearn.load_model(version.tags[lineage.SKLEARN_MODEL_URI])  # logged: the fixture asks
    sk_proba = sklearn_model.predict_proba(frame)
    assert np.max(np.abs(sk_proba - onnx_proba)) <= 1e-5
    decided = np.abs(sk_proba[:, 1] - 0.5) > 1e-5
    assert np.array_equal(sklearn_model.predict(frame)[decided], onnx_labels[decided])


def test_plain_mlflow_client_loads_the_champion(trained: Driftloop) -> None:
    # A separate interpreter that knows nothing of driftloop: only the tracking URI.
    code = (
        "import mlflow, pandas as pd, sys\n"
        f"frame = pd.read_csv({str(BUNDLED_DATA)!r}).drop(columns=['churn']).head(5)\n"
        "model = mlflow.pyfunc.load_model('models:/churn@champion')\n"
        "out = model.predict(frame)\n"
        "print(out['probabilities'].shape, list(out['label']))\n"
    )
    env = {**TELEMETRY_OFF, "MLFLOW_TRACKING_URI": trained.tracking_uri, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(5, 2)" in result.stdout


def test_corrupted_snapshot_fails_with_every_problem_and_changes_nothing(trained: Driftloop, tmp_path: Path) -> None:
    frame = read_snapshot(BUNDLED_DATA)
    frame.loc[frame.index[:3], "contract"] = "Lifetime"
    frame.loc[frame.index[3:5], "tenure"] = -4
    frame = frame.drop(columns=["payment_method"])
    corrupted = tmp_path / "corrupted.csv.gz"
    with gzip.open(corrupted, "wt") as handle:
        frame.to_csv(handle, index=False)
    before = registry_state(trained)

    result = trained.run("train", "--data", str(corrupted), "--schema", str(BUNDLED_SCHEMA), check=False)

    assert result.returncode == 1
    assert "failed validation (3 problem(s))" in result.stderr
    for needle in ("'payment_method'", "'contract'", "Lifetime", "'tenure'"):
        assert needle in result.stderr
    assert registry_state(trained) == before


def test_a_users_model_that_cannot_be_exported_fails_before_its_full_fit_and_changes_nothing(
    trained: Driftloop, tmp_path: Path
) -> None:
    """Trial 52: a converter existed for every step, the full fit ran, then the export refused, three times."""
    models = tmp_path / "models.py"
    models.write_text(
        "from sklearn.compose import ColumnTransformer\n"
        "from sklearn.ensemble import ExtraTreesClassifier\n"
        "from sklearn.impute import SimpleImputer\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import OneHotEncoder\n\n\n"
        "def texts_filled():\n"
        "    fill = make_pipeline(SimpleImputer(strategy='constant', fill_value='none'), OneHotEncoder())\n"
        "    prepare = ColumnTransformer([('texts', fill, ['contract', 'payment_method'])])\n"
        "    return make_pipeline(prepare, ExtraTreesClassifier(n_estimators=20))\n"
    )
    before = registry_state(trained)

    result = trained.run("train", "--model", f"{models}:texts_filled", check=False)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert 'impute text columns with SimpleImputer(missing_values="", ...)' in errors[0]
    assert "found before the full fit" in errors[0]
    assert "fitting " not in output  # the full fit never started
    assert "Retry" not in output
    assert registry_state(trained) == before


def test_gate_second_runs_and_rollback(driftloop: Driftloop) -> None:
    first = driftloop.run("train")
    assert "churn v1: promoted to champion" in first.stdout

    # Same data, same seed: a tie with the champion, within the default tolerance → promoted (exit 0 for a script).
    second = driftloop.run("train", "--fail-if-refused")
    assert "churn v2: promoted to champion (was v1)" in second.stdout

    # A policy this model cannot meet → registered, refused, the champion stays; exit 3 when a script asks.
    floors = ("--floor", "roc_auc=0.99", "--floor", "f1=0.3", "--floor", "accuracy=none")
    third = driftloop.run("train", *floors, "--fail-if-refused", check=False)
    assert third.returncode == 3, third.stderr[-3000:]
    assert not [line for line in third.stderr.splitlines() if line.startswith("error:")], third.stderr[-3000:]
    assert "churn v3: not promoted: refused by the gate (see its line below); champion stays v2" in third.stdout
    registry = ModelRegistry("churn", driftloop.tracking_uri)
    assert registry.get_version("3").tags[lineage.GATE] == "refuse"
    # The test settings leave the scikit-learn pipeline out (DRIFTLOOP_LOG_SKLEARN_MODEL=false): the ONNX model only.
    assert lineage.SKLEARN_MODEL_URI not in registry.get_version("1").tags
    run = registry.get_version("1").run_id
    client = MlflowClient(tracking_uri=driftloop.tracking_uri, registry_uri=driftloop.tracking_uri)
    experiment = client.get_run(run).info.experiment_id
    logged = client.search_logged_models([experiment], filter_string=f"source_run_id = '{run}'")
    assert [model.name for model in logged] == [ONNX_MODEL_NAME]
    assert json.loads(registry.get_version("3").tags[lineage.GATE_POLICY])["floors"] == {"roc_auc": 0.99, "f1": 0.3}
    assert str(registry.champion().version) == "2"

    # Nor does it get traffic by hand without a reason: refused in one line, before Docker is looked for.
    refused_rollout = driftloop.run("rollout", "3", check=False)
    assert refused_rollout.returncode == 1
    assert refused_rollout.stderr.startswith("error: version 3 of 'churn' was refused by its promotion gate ("), (
        refused_rollout.stderr
    )
    assert 'driftloop rollout 3 --reason "WHY"' in refused_rollout.stderr
    assert len(refused_rollout.stderr.strip().splitlines()) == 1
    assert str(registry.champion().version) == "2"
    settings = Settings(home=driftloop.home)
    gate_reason = registry.get_version("3").tags[lineage.GATE_REASON].split("\n", 1)[0]
    # A reason given: admitted, and what it overrules is returned for the record.
    assert check_admissible(settings, "3", "the floors were set for another dataset") == gate_reason
    assert check_admissible(settings, "2", None) is None  # its gate promoted it
    with pytest.raises(DeployError, match="refused by its promotion gate"):
        check_admissible(settings, "3", "  ")

    rolled = driftloop.run("rollback", "--reason", "v2 misbehaves in production")
    assert "v2 → v1" in rolled.stdout
    assert str(registry.champion().version) == "1"

    history = driftloop.run("history").stdout
    moves = registry.history()
    assert [(m.action, m.from_version, m.to_version) for m in moves] == [
        ("promote", None, "1"),
        ("promote", "1", "2"),
        ("rollback", "2", "1"),
    ]
    assert "v2 misbehaves in production" in history
    assert "rollback" in history

    listing = driftloop.run("models").stdout
    assert "champion" in listing
    assert "refuse" in listing

    # Made champion over its gate, with the reason in the alias history: a rollout of it needs none again.
    driftloop.run("promote", "3", "--reason", "the floors were set for another dataset")
    assert check_admissible(settings, "3", None) is None


def test_second_dataset_trains_through_the_same_flow(driftloop: Driftloop, tmp_path: Path) -> None:
    data, schema = write_loans(tmp_path, fmt="parquet")
    result = driftloop.run("train", "--data", str(data), "--schema", str(schema), "--model-name", "loans")
    assert "loans v1: promoted to champion" in result.stdout
    version = ModelRegistry("loans", driftloop.tracking_uri).champion()
    assert version is not None
    assert version.tags[lineage.SCHEMA_NAME] == load_schema(schema).name

    # The same data under a schema inferred again elsewhere (another name and description): the same model takes it.
    renamed = tmp_path / "renamed.schema.yaml"
    text = schema.read_text()
    renamed.write_text(text.replace(f"name: {load_schema(schema).name}", "name: loans-from-parquet-parts", 1))
    assert load_schema(renamed).name == "loans-from-parquet-parts"
    again = driftloop.run("train", "--data", str(data), "--schema", str(renamed), "--model-name", "loans")
    assert "loans v2:" in again.stdout

    # Without --model-name a user's schema names its model (the renamed one: a model of its own).
    named = driftloop.run("train", "--data", str(data), "--schema", str(renamed))
    assert "loans-from-parquet-parts v1: promoted to champion" in named.stdout

    # The loans data under the churn model's name: refused before anything is trained or registered.
    driftloop.run("train")
    before = registry_state(driftloop)
    clash = driftloop.run("train", "--data", str(data), "--schema", str(schema), "--model-name", "churn", check=False)
    assert clash.returncode == 1
    assert clash.stderr.startswith("error: champion v")
    assert "removes feature(s)" in clash.stderr
    assert "cannot be scored on the same rows" in clash.stderr
    assert "bundled churn sample" not in clash.stderr
    assert registry_state(driftloop) == before

    # The user's model named in the environment, no --data and no project file: the default data, the bundled
    # churn sample, is what clashes, and the error says so.
    driftloop.env["DRIFTLOOP_MODEL_NAME"] = "loans"
    for args in (("train",), ("train", "loans")):
        default = driftloop.run(*args, check=False)
        assert default.returncode == 1, default.stdout
        assert default.stderr.startswith("error: champion v"), default.stderr
        assert "of model 'loans': this snapshot's schema" in default.stderr
        assert "(this run would train the bundled churn sample, the default data: give 'loans' its data" in (
            default.stderr
        )
    del driftloop.env["DRIFTLOOP_MODEL_NAME"]
    assert registry_state(driftloop) == before


def test_promote_refusals_are_clear(trained: Driftloop) -> None:
    unknown = trained.run("promote", "42", "--reason", "try", check=False)
    assert unknown.returncode == 1
    assert "42" in unknown.stderr
    no_reason = trained.run("promote", "1", check=False)
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr


def test_bad_cli_arguments_are_one_line_errors(driftloop: Driftloop) -> None:
    missing = driftloop.run("train", "--data", "/nonexistent.csv", check=False)
    assert (missing.returncode, missing.stderr) == (1, "error: --data /nonexistent.csv: no such file or directory\n")
    bad_estimator = driftloop.run("train", "--estimator", "svm", check=False)
    assert bad_estimator.returncode == 1
    assert "hist_gradient_boosting" in bad_estimator.stderr


def test_prefect_yaml_deploys_and_a_worker_runs_the_train_deployment(
    driftloop: Driftloop, prefect_server: PrefectServer
) -> None:
    project = Path(__file__).resolve().parents[2]
    prefect = str(Path(sys.executable).parent / "prefect")
    # prefect.yaml reads the drift-check schedule from the environment, as `driftloop up` provides it.
    env = {**driftloop.env, "DRIFTLOOP_DRIFT_CRON": "0 0 1 1 *"}
    pool = subprocess.run(
        [prefect, "work-pool", "create", "driftloop-process", "--type", "process", "--overwrite"],
        env=env, cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert pool.returncode == 0, pool.stderr
    deploy = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"],
        env=env, cwd=project, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    assert "train-model/train" in deploy.stdout

    # The run exists before the worker starts: a `--run-once` worker polls once, and a run created after that
    # poll would wait for a worker that has already stopped.
    created = subprocess.run(
        [prefect, "deployment", "run", "train-model/train"],
        env=env, cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout[-3000:] + created.stderr[-3000:]
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", created.stdout)
    assert flow_run_id is not None, created.stdout
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", "driftloop-process", "--run-once"],
        env={**env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    run = subprocess.run(
        [prefect, "flow-run", "watch", flow_run_id.group(1), "--timeout", "600"],
        env=env, cwd=project, capture_output=True, text=True, timeout=700, check=False,
    )  # fmt: skip
    worker_log, _ = worker.communicate(timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + worker_log[-3000:]
    assert "COMPLETED" in run.stdout.upper()
    champion = ModelRegistry("churn", driftloop.tracking_uri).champion()
    assert champion is not None
    assert str(champion.version) == "1"
    assert champion.tags[lineage.GATE] == "promote"


def test_a_run_left_running_is_closed_by_the_next_training_unless_its_flow_still_runs(driftloop: Driftloop) -> None:
    """A run whose own close failed (a full disk) stays RUNNING; the next training closes it, not a live one's."""
    driftloop.home.mkdir(parents=True)
    client = MlflowClient(tracking_uri=driftloop.tracking_uri)
    location = (driftloop.home / "mlartifacts" / "driftloop").as_uri()
    experiment = client.get_experiment(client.create_experiment("driftloop", artifact_location=location))
    api = driftloop.env["PREFECT_API_URL"]
    flow = httpx.post(f"{api}/flows/", json={"name": "still-going"}, timeout=10).json()
    live = httpx.post(
        f"{api}/flow_runs/", json={"flow_id": flow["id"], "state": {"type": "RUNNING", "name": "Running"}}, timeout=10
    ).json()
    orphan = client.create_run(experiment.experiment_id, tags={lineage.FLOW_RUN_ID: str(uuid.uuid4())})
    running = client.create_run(experiment.experiment_id, tags={lineage.FLOW_RUN_ID: live["id"]})

    driftloop.run("train")

    closed = client.get_run(orphan.info.run_id)
    assert closed.info.status == "FAILED"
    assert closed.data.tags[lineage.CLOSED_LATE].endswith("its flow run is unknown to Prefect")
    assert client.get_run(running.info.run_id).info.status == "RUNNING"  # its flow is still going
    assert lineage.CLOSED_LATE not in client.get_run(running.info.run_id).data.tags


# The retrain flow runs the training flow with its recent labelled rows (flows/retrain.py); run the same call here.
_RETRAIN_ON_RECENT_ROWS = """
import sys
from driftloop.core.recipe import RetrainInput
from flows.train import train_model
outcome = train_model(data_path=sys.argv[1], schema_path=sys.argv[2], model_name="tickets",
                      retrain=RetrainInput(drifted_version="1", recent_data_path=sys.argv[3]))
print("outcome", outcome.version, outcome.verdict, outcome.reasons[0])
"""


def test_a_retrain_whose_recent_labels_lack_a_class_is_refused_not_failed(driftloop: Driftloop, tmp_path: Path) -> None:
    """Trial 53: one label of a three-class model came back, and its retrain failed validating the recent rows ("all
    3 classes are needed"). They join the champion's rows, which hold every class: the gate judges the run, and
    with no recent segment to test it refuses, saying so."""
    rng = np.random.default_rng(53)
    rows = 3000
    tickets = pd.DataFrame(
        {
            "wait": rng.exponential(10, rows),
            "size": rng.normal(5, 2, rows),
            "channel": rng.choice(["phone", "chat", "mail"], rows),
        }
    )
    urgency = tickets["wait"] / 10 + (tickets["channel"] == "phone") + rng.normal(0, 0.5, rows)
    tickets["priority"] = np.where(urgency > 2, "high", np.where(urgency > 1, "medium", "low"))
    data, schema, recent = tmp_path / "tickets.csv", tmp_path / "tickets.yaml", tmp_path / "recent.parquet"
    tickets.to_csv(data, index=False)
    schema.write_text(
        "name: tickets\nmin_rows: 100\ntarget: {name: priority, kind: multiclass, classes: [high, low, medium]}\n"
        "features:\n  - {name: wait, kind: numeric}\n  - {name: size, kind: numeric}\n"
        "  - {name: channel, kind: categorical, categories: [phone, chat, mail]}\n"
    )
    tickets.head(1).assign(priority="low").to_parquet(recent, index=False)
    driftloop.run("train", "--data", str(data), "--schema", str(schema), "--model-name", "tickets")

    retrain = subprocess.run(
        [sys.executable, "-c", _RETRAIN_ON_RECENT_ROWS, str(data), str(schema), str(recent)],
        env=driftloop.env, cwd=driftloop.home.parent, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert retrain.returncode == 0, retrain.stdout[-3000:] + retrain.stderr[-3000:]
    assert "outcome 2 refuse no recent segment to test the improvement on" in retrain.stdout, retrain.stdout
    registry = ModelRegistry("tickets", driftloop.tracking_uri)
    assert str(registry.champion().version) == "1"
    assert registry.get_version("2").tags[lineage.GATE] == "refuse"
