"""The serving app in-process: ``create_app`` with a file model source, driven by Starlette's test client.

Real components throughout: a real ONNX bundle (tests/support/bundles.py), the real prediction log on a SQLite file
under tmp_path, the app's own lifespan (model load and self-check, the log's writer thread, the watcher). The
ASGI fast path (``Server.answer``) is compared message for message with the routes, which answer the same request
when it comes through a proxy's ``root_path`` (the fast path leaves those to Starlette).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from driftloop.io.onnx_runtime import OnnxModel
from driftloop.io.prediction_store import open_prediction_log
from driftloop.serving import protocols
from driftloop.serving.app import create_app
from driftloop.serving.endpoints import FAST_PATHS
from driftloop.serving.server import MAX_REQUEST_ID, Server
from driftloop.serving.source import FileModelSource
from driftloop.settings import Settings
from tests.support.bundles import TrainedModel
from tests.support.serving import MovingSource, serving_settings, wait_until

PROXY_ROOT = "/behind-proxy"  # a root_path, as a reverse proxy mounting the server under a prefix sets it
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")  # the server's own ids: 128 random bits


@contextmanager
def running(app: FastAPI) -> Iterator[TestClient]:
    """A client of ``app`` with its lifespan running (model loaded, prediction log open) until the block ends.

    Its start freezes every object then alive out of the collector's way (``gc.freeze``, as a server process should):
    in the test session that adds to what tests/unit/conftest.py froze after collection.
    """
    with TestClient(app) as client:
        yield client


# A server start costs a third of a second (most of it Server.start's full garbage collection), so the tests that
# only read their own answers share one server per module; those that count or read what it logged get their own.


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return serving_settings(tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def app(settings: Settings, bundle_dir: Path) -> FastAPI:
    return create_app(settings, source=FileModelSource(bundle_dir))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with running(app) as client:
        yield client


@pytest.fixture
def own_settings(tmp_path: Path) -> Settings:
    return serving_settings(tmp_path)


@pytest.fixture
def own_app(own_settings: Settings, bundle_dir: Path) -> FastAPI:
    """A server of the test's own: its metrics and prediction log hold only what the test did."""
    return create_app(own_settings, source=FileModelSource(bundle_dir))


@pytest.fixture(scope="module")
def refused_app(tmp_path_factory: pytest.TempPathFactory, broken_bundle_dir: Path) -> FastAPI:
    """The only version there is fails its self-check: the server never has a model."""
    settings = serving_settings(tmp_path_factory.mktemp("refused"))
    return create_app(settings, source=FileModelSource(broken_bundle_dir))


@pytest.fixture(scope="module")
def refused_client(refused_app: FastAPI) -> Iterator[TestClient]:
    with running(refused_app) as client:
        yield client


def server_of(app: FastAPI) -> Server:
    server: Server = app.state.server
    return server


def metric(client: TestClient, sample_name: str, **labels: str) -> float:
    """The value of one Prometheus sample in /metrics (0 when absent)."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


# ------------------------------------------------------------------------------------------------- health, model


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "model_version": "1"})


def test_model_names_the_served_version_and_graph(client: TestClient, served_model: TrainedModel) -> None:
    response = client.get("/model")

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("name", "version", "alias", "source")} == {
        "name": "churn",
        "version": "1",
        "alias": None,
        "source": "file",
    }
    assert body["served_graph"] == "serving.onnx"
    assert body["served_graph_sha256"] == hashlib.sha256(served_model.serving_onnx_bytes).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["loaded_at"])
    assert body["last_reload_failure"] is None


def test_every_response_names_the_model_version(client: TestClient) -> None:
    answers = [
        client.get("/health"),
        client.get("/metrics"),
        client.get("/v2"),
        client.get("/no-such-route"),
        client.post("/predict", content=b"{"),
        client.post("/feedback", json={"request_id": "x", "label": "Maybe"}),
    ]
    assert [a.headers["x-model-version"] for a in answers] == ["1"] * len(answers)
    assert answers[3].status_code == 404


def test_openapi_examples_come_from_the_served_schema(client: TestClient, served_model: TrainedModel) -> None:
    spec = client.get("/openapi.json").json()

    examples = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"predict_positional", "predict_named"}
    assert list(examples["predict_named"]["value"]["features"]) == served_model.schema.feature_names
    feedback = spec["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert feedback["feedback"]["value"]["label"] == served_model.schema.target.positive


# ------------------------------------------------------------------------------------------------- predictions


def test_predict_answers_with_the_models_outputs(client: TestClient, served_model: TrainedModel) -> None:
    (record,) = served_model.records(1)
    positional = [record[name] for name in served_model.schema.feature_names]

    named = client.post("/predict", json={"features": record})
    ordered = client.post("/predict", json={"features": positional})

    assert named.status_code == ordered.status_code == 200
    assert named.json() == ordered.json()
    body = named.json()
    negative, positive = served_model.schema.target.negative, served_model.schema.target.positive
    assert body["prediction"] == int(served_model.labels[0])
    assert body["label"] == (negative, positive)[body["prediction"]]
    np.testing.assert_allclose(body["probability"], served_model.probabilities[0], rtol=1e-6)
    assert body["probabilities"] == {negative: body["probability"][0], positive: body["probability"][1]}
    assert body["model_version"] == "1"
    assert named.headers["x-model-version"] == "1"


def test_batch_and_invocations_answer_every_row(client: TestClient, served_model: TrainedModel) -> None:
    records = served_model.records(5)
    names = served_model.schema.feature_names
    rows = [[r[n] for n in names] for r in records]

    batch = client.post("/predict/batch", json={"instances": records})
    split = client.post("/invocations", json={"dataframe_split": {"columns": names, "data": rows}})
    by_records = client.post("/invocations", json={"dataframe_records": records})
    csv = "\n".join([",".join(names), *(",".join("" if v is None else str(v) for v in row) for row in rows)])
    from_csv = client.post("/invocations", content=csv.encode(), headers={"content-type": "text/csv"})

    assert [r.status_code for r in (batch, split, by_records, from_csv)] == [200] * 4
    assert batch.json()["predictions"] == served_model.labels[:5].tolist()
    assert batch.json()["model_version"] == "1"
    np.testing.assert_allclose(batch.json()["probabilities"], served_model.probabilities[:5], rtol=1e-6)
    expected = {"label": batch.json()["predictions"], "probabilities": batch.json()["probabilities"]}
    assert split.json() == by_records.json() == from_csv.json() == {"predictions": expected}


def test_v2_routes(client: TestClient, served_model: TrainedModel) -> None:
    schema = served_model.schema
    infer = protocols.openapi_examples(schema)["v2_infer"]
    (record,) = served_model.records(1)
    infer["inputs"] = [{**tensor, "data": [record[tensor["name"]]]} for tensor in infer["inputs"]]

    assert client.get("/v2").json() == {"name": "driftloop", "version": "1", "extensions": []}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    metadata = client.get("/v2/models/churn").json()
    assert (metadata["name"], metadata["versions"]) == ("churn", ["1"])
    assert [i["name"] for i in metadata["inputs"]] == schema.feature_names
    assert client.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
    answer = client.post("/v2/models/churn/infer", json=infer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("churn", "1", "example-1")
    label, proba = body["outputs"]
    assert label["data"] == [int(served_model.labels[0])]
    np.testing.assert_allclose(proba["data"], served_model.probabilities[0], rtol=1e-6)
    # A KServe client's versioned paths reach the version served (trial 18: a generic 404), and only that one.
    assert client.get("/v2/models/churn/versions/1").json() == metadata
    assert client.get("/v2/models/churn/versions/1/ready").json() == {"name": "churn", "ready": True}
    versioned = client.post("/v2/models/churn/versions/1/infer", json=infer)
    assert versioned.status_code == 200, versioned.text
    assert versioned.json() == body
    other = client.post("/v2/models/churn/versions/3/infer", json=infer)
    assert (other.status_code, other.json()) == (
        404,
        {"error": "model 'churn' serves version 1 here, not 3 (/v2/models/churn is it)"},
    )
    assert client.get("/v2/models/churn/versions/3").status_code == 404
    assert client.get("/v2/models/churn/versions/3/ready").status_code == 404


def test_v2_refusals(client: TestClient, served_model: TrainedModel) -> None:
    infer = protocols.openapi_examples(served_model.schema)["v2_infer"]
    unknown = client.get("/v2/models/other")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": "unknown model 'other'; this server serves 'churn'"},
    )
    assert client.get("/v2/models/other/ready").status_code == 404
    assert client.post("/v2/models/other/infer", json=infer).status_code == 404
    binary = client.post("/v2/models/churn/infer", json=infer, headers={protocols.V2_BINARY_HEADER: "0"})
    assert (binary.status_code, binary.json()) == (
        400,
        {"error": "binary tensor data is not supported; use binary_data=False"},
    )


# ------------------------------------------------------------------------------------------------- bad input


def test_malformed_json_is_a_400_in_each_protocols_shape(client: TestClient) -> None:
    predict = client.post("/predict", content=b'{"features": [1, 2', headers={"content-type": "application/json"})
    invocations = client.post("/invocations", content=b"{", headers={"content-type": "application/json"})
    v2 = client.post("/v2/models/churn/infer", content=b"[", headers={"content-type": "application/json"})
    empty = client.post("/predict/batch", content=b"")

    assert predict.status_code == invocations.status_code == v2.status_code == empty.status_code == 400
    assert predict.json()["reason"] == "malformed_json"
    assert predict.json()["detail"].startswith("malformed JSON: ")
    assert invocations.json()["error_code"] == "BAD_REQUEST"
    assert invocations.json()["message"].startswith("malformed JSON: ")
    assert v2.json()["error"].startswith("malformed JSON: ")
    assert empty.json() == {"detail": "empty request body; expected a JSON document", "reason": "malformed_json"}


def test_a_body_that_is_no_json_at_all_says_how_it_begins(client: TestClient) -> None:
    """Trial 21: `not json` answered orjson's "invalid literal, expected 'null'", true only of its first letter."""
    text = client.post("/predict", content=b"  not json", headers={"content-type": "application/json"})
    assert (text.status_code, text.json()["reason"]) == (400, "malformed_json")
    assert text.json()["detail"] == "malformed JSON: the body is not a JSON document: it begins 'not json'"
    long = client.post("/predict", content=b"x" * 100, headers={"content-type": "application/json"})
    assert long.json()["detail"].endswith(f"it begins '{'x' * 40}'…")
    # Broken further in, the parser's own words say where.
    cut = client.post("/predict", content=b'{"features": [1, 2', headers={"content-type": "application/json"})
    assert cut.json()["detail"] == "malformed JSON: unexpected end of data: line 1 column 19 (char 18)"


def test_a_form_body_is_a_400_that_says_it_came_as_a_form(client: TestClient, served_model: TrainedModel) -> None:
    form = client.post("/predict", data={"tenure": "3"})  # what `curl -d tenure=3` sends
    assert form.status_code == 400
    assert form.json()["reason"] == "malformed_json"
    assert form.json()["detail"].startswith("malformed JSON: ")
    assert form.json()["detail"].endswith(
        "; the request said content-type application/x-www-form-urlencoded: send JSON with content-type "
        "application/json"
    )
    # JSON sent under a form's content type (curl -d without -H) is read as JSON, as before.
    (record,) = served_model.records(1)
    body = json.dumps({"features": record}).encode()
    sent = client.post("/predict", content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    assert sent.status_code == 200, sent.text


def test_wrong_shapes_are_refused(client: TestClient, served_model: TrainedModel) -> None:
    (record,) = served_model.records(1)
    positional = [record[name] for name in served_model.schema.feature_names]

    short = client.post("/predict", json={"features": positional[:-1]})
    no_features = client.post("/predict", json={"rows": [positional]})
    not_a_list = client.post("/predict/batch", json={"instances": 3})
    too_many = client.post("/predict/batch", json={"instances": [record] * 11})  # max_batch_rows is 10
    no_format = client.post("/invocations", json={"records": [record]})

    assert (short.status_code, short.json()["reason"]) == (422, "feature_count")
    assert short.json()["detail"].startswith("expected 19 values in schema order")
    assert (no_features.status_code, no_features.json()["reason"]) == (400, "wrong_shape")
    assert "no 'features' key" in no_features.json()["detail"]
    assert (not_a_list.status_code, not_a_list.json()["reason"]) == (422, "wrong_shape")
    assert (too_many.status_code, too_many.json()["reason"]) == (413, "batch_too_large")
    assert too_many.json()["detail"] == "the batch has 11 rows; this server takes at most 10 rows per request"
    assert no_format.status_code == 400
    assert no_format.json()["error_code"] == "BAD_REQUEST"


def test_an_unknown_category_is_refused_by_name(client: TestClient, served_model: TrainedModel) -> None:
    (record,) = served_model.records(1)
    record["contract"] = "Ten year"
    before = metric(client, "driftloop_request_errors_total", endpoint="predict", reason="unknown_category")

    predict = client.post("/predict", json={"features": record})
    invocations = client.post("/invocations", json={"dataframe_records": [record]})

    assert (predict.status_code, predict.json()["reason"]) == (422, "unknown_category")
    assert "'Ten year'" in predict.json()["detail"]
    assert invocations.status_code == 400  # MLflow's server answers every input it cannot score with 400
    assert "'Ten year'" in invocations.json()["message"]
    after = metric(client, "driftloop_request_errors_total", endpoint="predict", reason="unknown_category")
    assert after == before + 1


def test_a_body_over_the_limit_is_a_413_read_or_not(client: TestClient, settings: Settings) -> None:
    big = b'{"features": [' + b"1, " * settings.max_body_bytes + b"1]}"

    declared = client.post("/predict", content=big, headers={"content-type": "application/json"})
    streamed = client.post("/predict/batch", content=iter([big]))  # chunked: no content-length to refuse it by
    csv = client.post("/invocations", content=big, headers={"content-type": "text/csv"})

    assert declared.status_code == streamed.status_code == csv.status_code == 413
    assert declared.json() == {
        "detail": f"request body of {len(big)} bytes exceeds the limit of {settings.max_body_bytes} bytes",
        "reason": "body_too_large",
    }
    assert streamed.json()["detail"] == f"request body exceeds the limit of {settings.max_body_bytes} bytes"
    assert csv.json()["error_code"] == "BAD_REQUEST"


def test_invocations_refuses_a_content_type_it_does_not_read(client: TestClient) -> None:
    before = metric(client, "driftloop_request_errors_total", endpoint="invocations", reason="unsupported")

    response = client.post("/invocations", content=b"a,b", headers={"content-type": "text/plain"})

    assert response.status_code == 415
    assert response.json()["message"] == "content type 'text/plain': send application/json or text/csv"
    after = metric(client, "driftloop_request_errors_total", endpoint="invocations", reason="unsupported")
    assert after == before + 1


# ------------------------------------------------------------------------------------------------- request ids


def test_request_ids_are_the_servers_and_a_clients_is_kept_beside(
    client: TestClient, served_model: TrainedModel
) -> None:
    body = {"features": served_model.records(1)[0]}

    given = client.post("/predict", json=body, headers={"x-request-id": "client-42"})
    made = [client.post(path, json=body) for path in ("/predict", "/predict")]
    too_long = client.post("/predict", json=body, headers={"x-request-id": "x" * (MAX_REQUEST_ID + 1)})
    refused = client.post("/predict", content=b"{", headers={"x-request-id": "client-43"})

    ids = [r.headers["x-request-id"] for r in (given, *made, too_long, refused)]
    assert all(REQUEST_ID.match(i) for i in ids), ids  # never the client's: it could collide, or be guessed
    assert len(set(ids)) == 5
    assert given.headers["x-client-request-id"] == "client-42"
    assert refused.headers["x-client-request-id"] == "client-43"  # errors carry it too, to match a client's logs
    assert "x-client-request-id" not in too_long.headers  # longer than the log keeps: not kept at all
    assert "x-client-request-id" not in made[0].headers


# ------------------------------------------------------------------------------------------------- log, feedback


def test_predictions_are_logged_and_feedback_labels_them(
    own_app: FastAPI, own_settings: Settings, served_model: TrainedModel
) -> None:
    records = served_model.records(3)
    with running(own_app) as client:
        one = client.post("/predict", json={"features": records[0]}, headers={"x-request-id": "one"})
        two = client.post("/predict/batch", json={"instances": records[1:]})
        refused = client.post("/predict", json={"features": {}}, headers={"x-request-id": "bad"})
        ids = [one.headers["x-request-id"], two.headers["x-request-id"]]
        feedback = client.post(
            "/feedback",
            json={"items": [{"request_id": ids[0], "label": "Yes"}, {"request_id": ids[1], "row": 1, "label": "No"}]},
        )
        wrong_label = client.post("/feedback", json={"request_id": ids[0], "label": "Maybe"})
    assert (one.status_code, two.status_code, refused.status_code) == (200, 200, 422)
    assert (feedback.status_code, feedback.json()) == (202, {"accepted": 2, "already_labelled": 0})
    assert (wrong_label.status_code, wrong_label.json()["reason"]) == (422, "unknown_label")

    store = open_prediction_log(own_settings.predictions_url)  # the app has stopped: its log is flushed
    try:
        window = store.read_window("churn")
    finally:
        store.close()
    assert window["request_id"].tolist() == [ids[0], ids[1], ids[1]]  # a refused request is not a prediction
    assert window["model_version"].tolist() == ["1", "1", "1"]
    negative, positive = served_model.schema.target.negative, served_model.schema.target.positive
    assert window["label"].tolist() == [(negative, positive)[i] for i in served_model.labels[:3]]
    np.testing.assert_allclose(window["probability"], served_model.probabilities[:3, 1], rtol=1e-6)
    assert window["actual"].tolist() == ["Yes", None, "No"]
    assert window["contract"].tolist() == [r["contract"] for r in records]


def test_feedback_needs_the_prediction_log(tmp_path: Path, bundle_dir: Path) -> None:
    app = create_app(serving_settings(tmp_path, prediction_log=False), source=FileModelSource(bundle_dir))
    with running(app) as client:
        response = client.post("/feedback", json={"request_id": "one", "label": "Yes"})
        assert (response.status_code, response.json()["reason"]) == (409, "prediction_log_off")
        assert client.post("/predict", json={"features": {}}).status_code == 422  # serving does not need it


# ------------------------------------------------------------------------------------------------- metrics


def test_metrics_count_predictions_errors_and_the_model(own_app: FastAPI, served_model: TrainedModel) -> None:
    with running(own_app) as client:
        check_metrics(client, served_model)


def check_metrics(client: TestClient, served_model: TrainedModel) -> None:
    records = served_model.records(4)
    client.post("/predict", json={"features": records[0]})
    client.post("/predict/batch", json={"instances": records[1:]})
    client.post("/predict", content=b"{")

    negative, positive = served_model.schema.target.negative, served_model.schema.target.positive
    counted = {
        name: metric(client, "driftloop_predictions_total", model_version="1", label=name)
        for name in (negative, positive)
    }
    expected = np.bincount(served_model.labels[:4], minlength=2)
    assert counted == {negative: expected[0], positive: expected[1]}
    assert metric(client, "driftloop_request_errors_total", endpoint="predict", reason="malformed_json") == 1
    assert metric(client, "driftloop_model_info", name="churn", version="1") == 1
    assert metric(client, "driftloop_model_reloads_total", result="success") == 1
    assert metric(client, "driftloop_request_latency_seconds_count", endpoint="predict") == 2
    assert metric(client, "driftloop_request_latency_seconds_count", endpoint="predict_batch") == 1


# ------------------------------------------------------------------------------------------------- not ready


def test_a_version_that_fails_its_self_check_is_never_served(refused_client: TestClient) -> None:
    reason = "no model is serving: version 3 failed: SelfCheckFailed: version 3 (serving.onnx): probabilities differ"

    not_ready = metric(refused_client, "driftloop_request_errors_total", endpoint="predict", reason="not_ready")

    assert refused_client.get("/health").status_code == 200  # alive, not ready
    ready = refused_client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith(reason)
    model = refused_client.get("/model")
    assert model.status_code == 503
    assert (model.json()["version"], model.json()["last_reload_failure"]["version"]) == (None, "3")
    predict = refused_client.post("/predict", json={"features": {}})
    assert (predict.status_code, predict.json()["reason"]) == (503, "not_ready")
    assert predict.json()["detail"].startswith(reason)
    invocations = refused_client.post("/invocations", json={"dataframe_records": []})
    assert invocations.status_code == 503
    assert invocations.json()["message"].startswith(reason)
    assert refused_client.get("/v2/health/ready").status_code == 503
    assert refused_client.get("/v2/models/churn").status_code == 503
    assert refused_client.post("/v2/models/churn/infer", json={}).status_code == 503
    assert {ready.headers["x-model-version"], predict.headers["x-model-version"]} == {"none"}
    assert metric(refused_client, "driftloop_model_reloads_total", result="failure") == 1
    errors = metric(refused_client, "driftloop_request_errors_total", endpoint="predict", reason="not_ready")
    assert errors == not_ready + 1


# ------------------------------------------------------------------------------------------------- fast path


@dataclass(frozen=True)
class Answer:
    """What an ASGI app sent back for one request."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def http_scope(path: str, headers: list[tuple[bytes, bytes]], root_path: str = "") -> dict[str, Any]:
    """A POST as uvicorn passes it; behind a proxy's ``root_path`` the path carries that prefix too."""
    full = root_path + path
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": full,
        "raw_path": full.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }


async def exchange(call: Any, scope: dict[str, Any], chunks: list[bytes], *args: Any) -> tuple[Any, Answer]:
    """Run ``call(*args, scope, receive, send)`` with the body in ``chunks``; what it returned and what it sent."""
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    returned = await call(*args, scope, receive, send)
    if not sent:
        return returned, Answer(0, [], b"")
    assert sent[0]["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in sent[1:] if m["type"] == "http.response.body")
    return returned, Answer(sent[0]["status"], list(sent[0]["headers"]), body)


def fast_and_routed(client: TestClient, app: FastAPI, path: str, chunks: list[bytes], headers: list[Any]) -> Any:
    """The same request answered by ``Server.answer`` itself, by the app (fast path), and by the app's route."""
    server = server_of(app)
    assert client.portal is not None
    handled, direct = client.portal.call(
        exchange, server.answer, http_scope(path, headers), chunks, FAST_PATHS[path], server.default
    )
    _, fast = client.portal.call(exchange, app, http_scope(path, headers), chunks)
    _, routed = client.portal.call(exchange, app, http_scope(path, headers, PROXY_ROOT), chunks)
    assert handled is True
    return direct, fast, routed


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def parity_cases(model: TrainedModel, limit: int) -> dict[str, tuple[int, str, list[bytes], list[Any]]]:
    """Requests the fast path takes, by name: (the status expected, path, body chunks, headers)."""
    records = model.records(3)
    names = model.schema.feature_names
    unknown = {**records[0], "contract": "Ten year"}
    json_type = (b"content-type", b"application/json")
    rid = (b"x-request-id", b"parity-1")
    return {
        "predict": (200, "/predict", [_body({"features": records[0]})], [json_type, rid]),
        "predict-positional": (200, "/predict", [_body({"features": [records[0][n] for n in names]})], [rid]),
        "predict-chunked": (200, "/predict", [b'{"features": ', _body(records[0]), b"}"], [rid]),
        "batch": (200, "/predict/batch", [_body({"instances": records})], [json_type, rid]),
        "invocations-split": (
            200,
            "/invocations",
            [_body({"dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in records]}})],
            [json_type, rid],
        ),
        "invocations-records": (200, "/invocations", [_body({"dataframe_records": records[:1]})], [rid]),
        "repeated-headers": (
            200,
            "/predict",
            [_body({"features": records[0]})],
            [rid, (b"x-request-id", b"second"), (b"content-type", b"application/json; charset=utf-8")],
        ),
        "malformed": (400, "/predict", [b'{"features": [1,'], [json_type, rid]),
        "empty": (400, "/predict/batch", [b""], [rid]),
        "wrong-shape": (422, "/predict/batch", [_body({"instances": 3})], [rid]),
        "unknown-category": (422, "/predict", [_body({"features": unknown})], [rid]),
        "unknown-category-mlflow": (400, "/invocations", [_body({"dataframe_records": [unknown]})], [json_type, rid]),
        "declared-too-large": (413, "/predict", [b"{}"], [json_type, rid, (b"content-length", b"%d" % (limit + 1))]),
        "streamed-too-large": (413, "/invocations", [b"[" + b"1," * (limit // 4)] * 3 + [b"1]"], [json_type, rid]),
        "too-long-request-id": (400, "/predict", [b"{"], [(b"x-request-id", b"x" * (MAX_REQUEST_ID + 1))]),
        "no-request-id": (200, "/predict", [_body({"features": records[1]})], [json_type]),
    }


PARITY_CASES = [
    "predict",
    "predict-positional",
    "predict-chunked",
    "batch",
    "invocations-split",
    "invocations-records",
    "repeated-headers",
    "malformed",
    "empty",
    "wrong-shape",
    "unknown-category",
    "unknown-category-mlflow",
    "declared-too-large",
    "streamed-too-large",
    "too-long-request-id",
    "no-request-id",
]


def without_request_id(answer: Answer) -> Answer:
    return Answer(answer.status, [(k, b"*" if k == b"x-request-id" else v) for k, v in answer.headers], answer.body)


@pytest.mark.parametrize("case", PARITY_CASES)
def test_the_fast_path_answers_exactly_as_the_route(
    client: TestClient, app: FastAPI, served_model: TrainedModel, settings: Settings, case: str
) -> None:
    status, path, chunks, headers = parity_cases(served_model, settings.max_body_bytes)[case]

    direct, fast, routed = fast_and_routed(client, app, path, chunks, headers)

    assert routed.status == status, routed.body
    ids = [dict(a.headers)[b"x-request-id"].decode() for a in (direct, fast, routed)]
    assert all(REQUEST_ID.match(i) for i in ids), ids  # each request gets an id of its own
    assert len(set(ids)) == 3
    direct, fast, routed = (without_request_id(a) for a in (direct, fast, routed))
    assert direct == fast == routed
    client_id = case not in ("too-long-request-id", "no-request-id")  # the client's, kept beside
    assert [name for name, _ in routed.headers] == [
        b"x-request-id", *([b"x-client-request-id"] if client_id else []), b"content-length", b"content-type",
        b"x-model-version",
    ]  # fmt: skip
    assert dict(routed.headers)[b"x-model-version"] == b"1"


def test_the_fast_path_answers_exactly_as_the_route_without_a_model(
    refused_client: TestClient, refused_app: FastAPI, served_model: TrainedModel
) -> None:
    body = [_body({"features": served_model.records(1)[0]})]
    for path in FAST_PATHS:
        direct, fast, routed = fast_and_routed(
            refused_client, refused_app, path, body, [(b"x-request-id", b"parity-2")]
        )
        assert routed.status == 503
        assert without_request_id(direct) == without_request_id(fast) == without_request_id(routed)
        assert dict(routed.headers)[b"x-client-request-id"] == b"parity-2"
        assert dict(routed.headers)[b"x-model-version"] == b"none"


def test_the_fast_path_leaves_csv_to_the_route(client: TestClient, app: FastAPI, served_model: TrainedModel) -> None:
    names = served_model.schema.feature_names
    (record,) = served_model.records(1)
    csv = f"{','.join(names)}\n{','.join('' if record[n] is None else str(record[n]) for n in names)}".encode()
    headers = [(b"content-type", b"text/csv"), (b"x-request-id", b"csv-1")]
    assert client.portal is not None

    handled, nothing = client.portal.call(
        exchange,
        server_of(app).answer,
        http_scope("/invocations", headers),
        [csv],
        FAST_PATHS["/invocations"],
        server_of(app).default,
    )
    _, fast = client.portal.call(exchange, app, http_scope("/invocations", headers), [csv])
    _, routed = client.portal.call(exchange, app, http_scope("/invocations", headers, PROXY_ROOT), [csv])

    assert (handled, nothing) == (False, Answer(0, [], b""))  # nothing read, nothing sent
    assert without_request_id(fast) == without_request_id(routed)
    assert fast.status == 200
    assert json.loads(fast.body)["predictions"]["label"] == [int(served_model.labels[0])]


# ------------------------------------------------------------------------------------------------- reloads


def test_the_app_follows_its_source_and_keeps_serving_through_a_refused_version(
    tmp_path: Path,
    bundle_dir: Path,
    other_bundle_dir: Path,
    broken_bundle_dir: Path,
    served_model: TrainedModel,
    other_model: TrainedModel,
) -> None:
    source = MovingSource({"1": bundle_dir, "2": other_bundle_dir, "3": broken_bundle_dir}, current="1")
    app = create_app(serving_settings(tmp_path, reload_interval=0.02), source=source)
    body = {"features": served_model.records(1)[0]}
    _, v2_proba = OnnxModel.from_bytes(other_model.onnx_bytes, other_model.schema).predict(served_model.holdout.head(1))

    with running(app) as client:
        first = client.post("/predict", json=body)
        assert (first.headers["x-model-version"], first.json()["model_version"]) == ("1", "1")

        source.current = "2"
        wait_until("version 2 to serve", lambda: client.get("/ready").json().get("model_version") == "2")
        second = client.post("/predict", json=body)
        assert (second.headers["x-model-version"], second.json()["model_version"]) == ("2", "2")
        np.testing.assert_allclose(second.json()["probability"], v2_proba[0], rtol=1e-6)
        assert second.json()["probability"] != first.json()["probability"]

        source.current = "3"
        failure = wait_until("version 3 to be refused", lambda: client.get("/model").json()["last_reload_failure"])
        assert failure["version"] == "3"
        assert failure["error"].startswith("SelfCheckFailed: version 3 (serving.onnx): probabilities differ")
        assert client.get("/ready").json() == {"status": "ready", "model_version": "2"}
        assert client.post("/predict", json=body).json() == second.json()
        assert metric(client, "driftloop_model_reloads_total", result="failure") == 1
        assert source.fetched.count("3") == 1  # refused once, not downloaded again at every check

        source.current = "1"
        wait_until("version 1 to serve again", lambda: client.get("/ready").json().get("model_version") == "1")
        assert client.get("/model").json()["last_reload_failure"] is None
        assert metric(client, "driftloop_model_reloads_total", result="success") == 3
        assert metric(client, "driftloop_model_info", name="churn", version="1") == 1
        assert metric(client, "driftloop_model_info", name="churn", version="2") == 0
