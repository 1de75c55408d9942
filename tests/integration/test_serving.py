"""The model server as a real uvicorn process on loopback, following a real registry's champion alias."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop.core import lineage
from driftloop.io.bundle import write_model_info
from driftloop.io.datasets import read_snapshot
from driftloop.io.registry import ModelRegistry
from driftloop.serving.source import RegistryModelSource
from driftloop.settings import BUNDLED_DATA, TELEMETRY_OFF
from tests.support.broken_version import register_broken_copy
from tests.support.churn import sample_rows
from tests.support.cli import Driftloop, PrefectServer, make_driftloop
from tests.support.host import VENV_BIN, free_port
from tests.support.load import PredictLoad

pytestmark = pytest.mark.integration

FEATURES = [c for c in read_snapshot(BUNDLED_DATA).columns if c != "churn"]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    home: Path
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def wait(self, predicate_path: str = "/ready", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + predicate_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"server not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def served_version(self) -> str:
        return str(httpx.get(self.url + "/model", timeout=10).json()["version"])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_server(dl: Driftloop, **env: str) -> RunningServer:
    port = free_port()
    log = dl.home.parent / f"server-{port}.log"
    with log.open("wb") as handle:  # the server writes to its own copy of the descriptor
        process = subprocess.Popen(
            [str(VENV_BIN / "driftloop"), "serve", "--port", str(port)],
            env={**dl.env, "DRIFTLOOP_RELOAD_INTERVAL": "0.5", **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return RunningServer(process, f"http://127.0.0.1:{port}", dl.home, log)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_server: PrefectServer) -> Driftloop:
    dl = make_driftloop(tmp_path_factory.mktemp("serving"), prefect_server)
    dl.run("train")
    return dl


@pytest.fixture(scope="module")
def server(trained: Driftloop) -> Iterator[RunningServer]:
    running = start_server(trained)
    running.wait()
    yield running
    running.stop()


def test_health_ready_model_metrics(server: RunningServer, trained: Driftloop) -> None:
    with server.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.headers["x-model-version"] == "1"
        info = client.get("/model").json()
        tags = ModelRegistry("churn", trained.tracking_uri).get_version("1").tags
        assert info["name"] == "churn"
        assert info["version"] == "1"
        assert info["alias"] == "champion"
        assert info["onnx_sha256"] == tags[lineage.ONNX_SHA256]
        assert info["data_hash"] == tags[lineage.DATA_HASH]
        assert info["run_id"]
        assert info["trained_at"]
        assert info["loaded_at"]
        assert info["served_graph"] == "serving.onnx"  # the grouped graph training registered with v1
        client.post("/predict", json={"features": sample_rows(1)[0]})
        metrics = client.get("/metrics")
        assert metrics.headers["x-model-version"] == "1"
        text = metrics.text
        for name in (
            "driftloop_predictions_total",
            "driftloop_model_latency_seconds_bucket",
            "driftloop_request_latency_seconds_bucket",
            "driftloop_model_info",
            "driftloop_model_reloads_total",
            "driftloop_prediction_log_dropped_rows_total",
        ):
            assert name in text
        assert 'driftloop_model_reloads_total{model="churn",result="success"} 1.0' in text


def test_predict_positional_and_named_agree(server: RunningServer) -> None:
    row = sample_rows(1, start=7)[0]
    with server.client() as client:
        named = client.post("/predict", json={"features": row})
        positional = client.post("/predict", json={"features": [row[f] for f in FEATURES]})
    assert named.status_code == 200, named.text
    assert positional.status_code == 200, positional.text
    body = named.json()
    assert body == positional.json()
    assert set(body) >= {"prediction", "probability", "label", "probabilities", "model_version"}
    assert body["label"] in ("No", "Yes")
    assert abs(sum(body["probability"]) - 1) < 1e-5
    assert body["model_version"] == "1"


def test_batch_and_invocations_agree_with_predict(server: RunningServer) -> None:
    rows = sample_rows(25, start=100)
    matrix = [[r[f] for f in FEATURES] for r in rows]
    with server.client() as client:
        singles = [client.post("/predict", json={"features": r}).json()["probability"][1] for r in rows]
        batch = client.post("/predict/batch", json={"instances": matrix}).json()
        records = client.post("/predict/batch", json={"instances": rows}).json()
        split = client.post("/invocations", json={"dataframe_split": {"columns": FEATURES, "data": matrix}})
        recs = client.post("/invocations", json={"dataframe_records": rows})
        inst = client.post("/invocations", json={"instances": rows})
        inputs = client.post("/invocations", json={"inputs": {f: [r[f] for r in rows] for f in FEATURES}})
        frame = pd.DataFrame(rows, columns=FEATURES)
        csv = client.post("/invocations", content=frame.to_csv(index=False), headers={"content-type": "text/csv"})
    np.testing.assert_allclose([p[1] for p in batch["probabilities"]], singles, atol=1e-6)
    assert batch == records
    for response in (split, recs, inst, inputs, csv):
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        np.testing.assert_allclose([p[1] for p in predictions["probabilities"]], singles, atol=1e-6)
        assert predictions["label"] == batch["predictions"]


def test_mlflow_scoring_client_works_unchanged(server: RunningServer) -> None:
    """MLflow's own REST client helper, as a client of `mlflow models serve` would call it."""
    from mlflow.deployments import get_deploy_client  # noqa: F401 (documents the protocol we mirror)
    from mlflow.utils.proto_json_utils import dump_input_data

    frame = pd.DataFrame(sample_rows(5), columns=FEATURES)
    payload = dump_input_data(frame)
    response = httpx.post(server.url + "/invocations", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]["label"]) == 5


def test_open_inference_protocol_with_tritonclient(server: RunningServer) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("churn")
    metadata = client.get_model_metadata("churn")
    assert {i["name"] for i in metadata["inputs"]} == set(FEATURES)
    rows = sample_rows(4, start=30)
    inputs = []
    for meta in metadata["inputs"]:
        values = [r[meta["name"]] for r in rows]
        if meta["datatype"] == "BYTES":
            array = np.array(values, dtype=object).reshape(-1, 1)
        else:
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float32).reshape(-1, 1)
        tensor = triton.InferInput(meta["name"], list(array.shape), meta["datatype"])
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer("churn", inputs, outputs=outputs)
    proba = result.as_numpy("probabilities")
    assert proba.shape == (4, 2)
    expected = httpx.post(server.url + "/predict/batch", json={"instances": rows}).json()["probabilities"]
    np.testing.assert_allclose(proba, expected, atol=1e-6)


BAD_REQUESTS: list[tuple[str, str, object, int, str]] = [
    # (name, path, body (bytes = raw), expected status, text the message must contain)
    ("malformed json", "/predict", b'{"features": [1, 2', 400, "malformed JSON"),
    ("empty body", "/predict", b"", 400, "empty"),
    ("not an object", "/predict", [1, 2, 3], 400, "features"),
    ("wrong feature count", "/predict", {"features": [1, 2, 3]}, 422, "19"),
    ("unknown feature", "/predict", {"features": {**dict.fromkeys(FEATURES), "colour": "red"}}, 422, "colour"),
    ("missing feature", "/predict", {"features": {"tenure": 3}}, 422, "contract"),
    ("wrong type", "/predict", {"features": {**dict.fromkeys(FEATURES, 0), "tenure": "three"}}, 422, "tenure"),
    ("unknown category", "/predict", "unknown_category", 422, "Lifetime"),
    ("null where not allowed", "/predict", "null_tenure", 422, "tenure"),
    ("out of range", "/predict", "negative_tenure", 422, "tenure"),
    ("empty batch", "/predict/batch", {"instances": []}, 422, "empty"),
    ("oversized batch", "/predict/batch", "oversized", 413, "1,000"),
    ("invocations two forms", "/invocations", "two_forms", 400, ""),
    # /invocations answers as `mlflow models serve` does: 400 for any input it cannot score.
    ("invocations params", "/invocations", "params", 400, "params"),
    ("invocations unknown category", "/invocations", "records_unknown_category", 400, "Lifetime"),
    ("overflowing number", "/predict", "overflowing_tenure", 422, "'tenure': inf is not allowed"),
]


def _bad_body(kind: object) -> object:
    row = sample_rows(1)[0]
    if kind == "unknown_category":
        return {"features": {**row, "contract": "Lifetime"}}
    if kind == "null_tenure":
        return {"features": {**row, "tenure": None}}
    if kind == "negative_tenure":
        return {"features": {**row, "tenure": -5}}
    if kind == "oversized":
        return {"instances": [[row[f] for f in FEATURES]] * 1001}
    if kind == "two_forms":
        return {"dataframe_records": [row], "instances": [row]}
    if kind == "params":
        return {"dataframe_records": [row], "params": {"threshold": 0.3}}
    if kind == "overflowing_tenure":  # a number no double holds: orjson refuses it, Python's json reads inf
        return json.dumps({"features": {**row, "tenure": 7}}).replace('"tenure": 7', '"tenure": 1e999').encode()
    if kind == "records_unknown_category":
        return {"dataframe_records": [{**row, "contract": "Lifetime"}]}
    return kind


@pytest.mark.parametrize(("name", "path", "body", "status", "needle"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_clear_4xx(
    server: RunningServer, name: str, path: str, body: object, status: int, needle: str
) -> None:
    payload = _bad_body(body)
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = httpx.post(server.url + path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, (name, response.text)
    assert needle in response.text, (name, response.text)
    assert response.headers["x-model-version"] == "1"


def test_oversized_body_is_refused_before_reading(trained: Driftloop) -> None:
    small = start_server(trained, DRIFTLOOP_MAX_BODY_BYTES="2048", DRIFTLOOP_PREDICTION_LOG="false")
    try:
        small.wait()
        response = httpx.post(small.url + "/predict", content=b"{" + b" " * 5000 + b"}")
        assert response.status_code == 413
        assert "2048" in response.text
    finally:
        small.stop()


def test_schemathesis_finds_no_server_error(server: RunningServer, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"), "run", f"{server.url}/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "1",
            "--generation-deterministic",
        ],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
        env={**os.environ, **TELEMETRY_OFF, "SCHEMATHESIS_TELEMETRY": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def wait_for_version(server: RunningServer, version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.served_version() == version:
            return
        time.sleep(0.2)
    pytest.fail(f"server still serves {server.served_version()} after {timeout}s, expected {version}")


def test_promote_and_rollback_under_load_fail_no_request(tmp_path: Path, prefect_server: PrefectServer) -> None:
    dl = make_driftloop(tmp_path, prefect_server)
    dl.run("train")
    running = start_server(dl)
    try:
        running.wait()
        with PredictLoad(running.url, sample_rows(50)) as load:
            dl.run("train")  # v2 takes the alias through the pipeline
            wait_for_version(running, "2")
            dl.run("rollback", "--reason", "hot-reload test")
            wait_for_version(running, "1")
            dl.run("promote", "2", "--reason", "and back again")
            wait_for_version(running, "2")
            time.sleep(1)
        assert load.report.failures == [], load.report.failures[:5]
        assert load.report.requests > 100
        assert load.report.versions["1"] > 0
        assert load.report.versions["2"] > 0
        assert set(load.report.versions) == {"1", "2"}
    finally:
        running.stop()


def test_a_version_failing_its_self_check_is_not_swapped_in(tmp_path: Path, prefect_server: PrefectServer) -> None:
    dl = make_driftloop(tmp_path, prefect_server)
    dl.run("train")
    # A real registered version whose recorded outputs disagree with its graph: a corrupted self-check sample.
    broken = register_broken_copy(dl.tracking_uri, "churn", "1", tmp_path)
    running = start_server(dl)
    try:
        running.wait()
        with PredictLoad(running.url, sample_rows(50)) as load:
            dl.run("promote", broken, "--reason", "self-check test")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                model = httpx.get(running.url + "/model").json()
                if model["last_reload_failure"]:
                    break
                time.sleep(0.2)
        assert model["version"] == "1"
        assert model["last_reload_failure"]["version"] == broken
        assert "differ from the recording" in model["last_reload_failure"]["error"]
        assert load.report.failures == []
        assert set(load.report.versions) == {"1"}
        metrics = httpx.get(running.url + "/metrics").text
        assert 'driftloop_model_reloads_total{model="churn",result="failure"} 1.0' in metrics
        assert httpx.get(running.url + "/ready").status_code == 200
    finally:
        running.stop()
    assert "refused" in running.log.read_text()


def test_sigterm_flushes_the_prediction_log(trained: Driftloop) -> None:
    running = start_server(trained, DRIFTLOOP_PREDICTION_LOG_URL=f"sqlite:///{trained.home / 'flush-test.db'}")
    running.wait()
    rows = sample_rows(40)
    sent = 0
    with running.client() as client:
        for i in range(300):
            assert client.post("/predict", json={"features": rows[i % 40]}).status_code == 200
            sent += 1
        assert client.post("/predict/batch", json={"instances": rows}).status_code == 200
        sent += len(rows)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught, so the exit status is -15.
    assert running.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in running.log.read_text()
    with sqlite3.connect(trained.home / "flush-test.db") as db:
        (count,) = db.execute("select count(*) from predictions").fetchone()
    assert count == sent


def test_file_mode_serves_a_bundle_without_registry_libraries(trained: Driftloop, tmp_path: Path) -> None:
    bundle = RegistryModelSource("churn", trained.tracking_uri, tmp_path / "cache").fetch("1")
    write_model_info(bundle.directory, bundle.info)
    code = (
        "import sys\n"
        "from driftloop.settings import Settings\n"
        "from driftloop.serving.app import create_app\n"
        "from fastapi.testclient import TestClient\n"
        f"settings = Settings(model_source='file', model_dir={str(bundle.directory)!r}, prediction_log=False)\n"
        "with TestClient(create_app(settings)) as client:\n"
        "    assert client.get('/ready').status_code == 200, client.get('/ready').text\n"
        "    assert client.get('/model').json()['version'] == '1'\n"
        "loaded = sorted(m for m in ('mlflow', 'sklearn', 'prefect', 'skl2onnx', 'pandas') if m in sys.modules)\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **TELEMETRY_OFF},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("LOADED", 1)[1].strip() == "[]"


def test_redis_cache_answers_repeats_and_never_across_versions(trained: Driftloop, tmp_path: Path) -> None:
    from tests.support.redis_server import running_redis

    with running_redis(tmp_path) as url:
        running = start_server(trained, DRIFTLOOP_REDIS_URL=url, DRIFTLOOP_PREDICTION_LOG="false")
        try:
            running.wait()
            body = {"features": sample_rows(1, start=3)[0]}
            with running.client() as client:
                first = client.post("/predict", json=body)
                second = client.post("/predict", json=body)
                metrics = client.get("/metrics").text
            assert first.status_code == second.status_code == 200
            assert first.json() == second.json()
            assert 'driftloop_prediction_cache_total{result="miss"} 1.0' in metrics
            assert 'driftloop_prediction_cache_total{result="hit"} 1.0' in metrics
        finally:
            running.stop()
    from driftloop.serving.cache import PredictionCache

    payload = b'{"features": []}'
    assert PredictionCache.key("churn", "1", "predict", payload) != PredictionCache.key(
        "churn", "2", "predict", payload
    )
    assert PredictionCache.key("churn", "1", "predict", payload) != PredictionCache.key("wine", "1", "predict", payload)


def test_a_cache_outage_does_not_fail_requests(trained: Driftloop) -> None:
    running = start_server(
        trained, DRIFTLOOP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", DRIFTLOOP_PREDICTION_LOG="false"
    )
    try:
        running.wait()
        response = httpx.post(running.url + "/predict", json={"features": sample_rows(1)[0]})
        assert response.status_code == 200, response.text
        metrics = httpx.get(running.url + "/metrics").text
        assert (
            'driftloop_request_errors_total{endpoint="predict",model="churn",reason="cache_unavailable"} 1.0' in metrics
        )
    finally:
        running.stop()


def test_feedback_labels_join_the_prediction_log(trained: Driftloop) -> None:
    from driftloop.io.prediction_store import open_prediction_log

    db = trained.home / "feedback-test.db"
    running = start_server(trained, DRIFTLOOP_PREDICTION_LOG_URL=f"sqlite:///{db}")
    try:
        running.wait()
        with running.client() as client:
            single = client.post("/predict", json={"features": sample_rows(1)[0]})
            batch = client.post("/predict/batch", json={"instances": sample_rows(3, start=10)})
            ok = client.post("/feedback", json={"request_id": single.headers["x-request-id"], "label": "Yes"})
            rows = [{"request_id": batch.headers["x-request-id"], "row": i, "label": "No"} for i in (0, 2)]
            ok_batch = client.post("/feedback", json={"items": rows})
            bad_label = client.post("/feedback", json={"request_id": "abc", "label": "Maybe"})
            bad_row = client.post("/feedback", json={"request_id": "abc", "row": -1, "label": "No"})
        assert ok.status_code == ok_batch.status_code == 202
        assert ok_batch.json() == {"accepted": 2, "already_labelled": 0}
        assert bad_label.status_code == 422
        assert "'No' or 'Yes'" in bad_label.text
        assert bad_row.status_code == 422
    finally:
        running.stop()
    store = open_prediction_log(f"sqlite:///{db}")
    labelled = store.read_window("churn", labelled=True)
    assert sorted(labelled["actual"]) == ["No", "No", "Yes"]
    assert len(store.read_window("churn")) == 4


def test_a_clients_request_id_is_logged_beside_the_servers_and_an_overlong_one_dropped(trained: Driftloop) -> None:
    db = trained.home / "long-id-test.db"
    running = start_server(trained, DRIFTLOOP_PREDICTION_LOG_URL=f"sqlite:///{db}")
    try:
        running.wait()
        body = {"features": sample_rows(1)[0]}
        with running.client() as client:
            short = client.post("/predict", json=body, headers={"x-request-id": "abc-1"})
            long = client.post("/predict", json=body, headers={"x-request-id": "x" * 500})
        assert short.headers["x-client-request-id"] == "abc-1"
        assert long.status_code == 200
        assert "x-client-request-id" not in long.headers
    finally:
        running.stop()
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT request_id, client_request_id FROM predictions ORDER BY id").all()
    engine.dispose()
    assert [tuple(row) for row in stored] == [
        (short.headers["x-request-id"], "abc-1"),
        (long.headers["x-request-id"], None),
    ]
