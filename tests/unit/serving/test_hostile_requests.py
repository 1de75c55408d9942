"""Requests an adversary sends: each gets a 4xx naming the problem, never a 500, and changes no one else's labels.

The findings of issue 15 ("Requests that still reach a 500", "Labels anyone can rewrite", "One request can stall
the log"), each as it was found: a 100k-deep JSON document holding NaN, a lone surrogate, a form body on
/feedback, a later label over an earlier one, a feedback request of 100k items.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from driftloop.core.addresses import is_loopback
from driftloop.io.prediction_store import open_prediction_log
from driftloop.serving.app import create_app
from driftloop.serving.source import FileModelSource
from driftloop.settings import Settings
from tests.support.bundles import TrainedModel
from tests.support.serving import serving_settings

JSON_ENDPOINTS = (
    "/predict",
    "/predict/batch",
    "/invocations",
    "/v2/models/churn/infer",
    "/feedback",
    "/models/churn/predict",
    "/models/churn/feedback",
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return serving_settings(tmp_path)


@pytest.fixture
def client(settings: Settings, bundle_dir: Path) -> Iterator[TestClient]:
    app: FastAPI = create_app(settings, source=FileModelSource(bundle_dir))
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_deeply_nested_document_with_nan_is_a_400(client: TestClient, path: str) -> None:
    # orjson refuses it (too deep); the NaN sends it on to json.loads, which used to die with a RecursionError.
    # 7,000 levels: deeper than Python's recursion limit, within the test server's 16 KB body limit.
    body = b"[" * 7_000 + b"NaN" + b"]" * 7_000
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "malformed JSON" in answer.text


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b'{"request_id": "abc\\ud800", "label": "Yes", "note": NaN}',
        b'{"request_id": "a", "label": "\\ud800", "note": NaN}',  # echoed in a 422 before: orjson could not write it
        b'{"request_id": "a", "label": ["\\udc80"], "note": NaN}',
        b'{"\\ud800": 1, "note": NaN}',
        b'{"request_id": "abc\\ud800", "label": "Yes"}',  # without the NaN orjson reads it, and refuses it
    ],
    ids=["request-id", "label", "label-in-list", "key", "no-nan"],
)
def test_a_lone_surrogate_anywhere_is_a_400(client: TestClient, path: str, body: bytes) -> None:
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "malformed JSON" in answer.text


@pytest.mark.parametrize("unknown_categories", ["error", "ignore"])
def test_a_lone_surrogate_in_a_feature_is_a_400(
    tmp_path: Path, bundle_dir: Path, served_model: TrainedModel, unknown_categories: str
) -> None:
    """Also where unknown categories are scored: the value would reach the model and the log's database."""
    record = served_model.records(1)[0]
    text = next(name for name, value in record.items() if isinstance(value, str))
    features = json.dumps({**record, text: "PLACEHOLDER"}).replace("PLACEHOLDER", "x\\udc80")
    # The NaN: past orjson, which refuses the surrogate, on to json.loads.
    body = f'{{"features": {features}, "note": NaN}}'.encode()
    settings = serving_settings(tmp_path, unknown_categories=unknown_categories)
    with TestClient(create_app(settings, source=FileModelSource(bundle_dir))) as client:
        for path in ("/predict", "/models/churn/predict", "/predict/batch"):
            sent = (
                body
                if path != "/predict/batch"
                else body.replace(b'"features": {', b'"instances": [{', 1).replace(b'}, "note"', b'}], "note"')
            )
            answer = client.post(path, content=sent, headers={"content-type": "application/json"})
            assert answer.status_code == 400, answer.text
            assert "lone surrogate" in answer.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}, {}],
    ids=["text", "form", "none"],
)
def test_feedback_takes_json_only(client: TestClient, headers: dict[str, str]) -> None:
    # What a web page can make a browser send without asking: the body is valid JSON all the same.
    answer = client.post("/feedback", content=b'{"request_id": "one", "label": "Yes"}', headers=headers)
    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["detail"]
    charset = client.post(
        "/feedback",
        content=b'{"request_id": "one", "label": "Yes"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 202, charset.text


def test_the_first_label_of_a_row_wins(client: TestClient, settings: Settings, served_model: TrainedModel) -> None:
    predicted = client.post("/predict", json={"features": served_model.records(1)[0]})
    request_id = predicted.headers["x-request-id"]
    first = client.post("/feedback", json={"request_id": request_id, "label": "No"})
    second = client.post("/feedback", json={"request_id": request_id, "label": "Yes"})
    both = client.post(
        "/feedback",
        json={"items": [{"request_id": "other", "label": "Yes"}, {"request_id": request_id, "label": "Yes"}]},
    )
    assert first.json() == {"accepted": 1, "already_labelled": 0}
    assert second.json() == {"accepted": 0, "already_labelled": 1}
    assert both.json() == {"accepted": 1, "already_labelled": 1}
    client.__exit__(None, None, None)  # stop the server: its log is flushed
    store = open_prediction_log(settings.predictions_url)
    try:
        assert store.read_window("churn")["actual"].tolist() == ["No"]
    finally:
        store.close()


def test_a_repeated_row_in_one_request_keeps_its_first_label(client: TestClient) -> None:
    answer = client.post(
        "/feedback", json={"items": [{"request_id": "r", "label": "No"}, {"request_id": "r", "label": "Yes"}]}
    )
    assert answer.json() == {"accepted": 1, "already_labelled": 0}
    assert client.post("/feedback", json={"request_id": "r", "label": "No"}).json()["already_labelled"] == 1


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"request_id": "r", "label": "Yes", "foo": 1}, "unknown key(s) 'foo': a label has request_id, label, row"),
        ({"request_id": "r", "lable": "Yes"}, "unknown key(s) 'lable': a label has request_id, label, row"),
        ({"items": [{"request_id": "r", "label": "Yes"}], "model": "x"}, "unknown key(s) 'model': the body holds"),
        (
            {"items": [{"request_id": "r", "label": "Yes"}, {"request_id": "s", "label": "No", "weight": 2}]},
            "item 1: unknown key(s) 'weight'",
        ),
    ],
)
def test_feedback_with_a_key_it_does_not_read_is_refused_and_nothing_is_stored(
    client: TestClient, body: dict[str, object], detail: str
) -> None:
    """As /predict: a key beside the ones read (a typo, a field from another API) is a 400, not silently dropped."""
    answer = client.post("/feedback", json=body)
    assert answer.status_code == 400, answer.text
    assert detail in answer.json()["detail"]
    assert client.post("/feedback", json={"request_id": "r", "label": "No"}).json() == {
        "accepted": 1, "already_labelled": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"request_id": "r"}, "missing key(s) 'label'"),
        ({"label": "No"}, "missing key(s) 'request_id'"),
        ({"items": [{"request_id": "r", "label": "No"}, {"row": 1}]}, "item 1: missing key(s) 'request_id', 'label'"),
        ({"items": [{"request_id": "r", "label": "No"}, "r"]}, "item 1: expected an object with request_id and label"),
        ({"items": "r"}, 'expected {"request_id", "label"} or {"items": [...]}, got items of a string'),
    ],
)
def test_feedback_without_a_key_it_needs_names_it_and_stores_nothing(
    client: TestClient, body: dict[str, object], detail: str
) -> None:
    """Trial 10: a body without its label answered that the label was null. A missing key is a 400, as /predict
    without "features" and /feedback with a key it does not read (it was a 422)."""
    answer = client.post("/feedback", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == detail
    assert client.post("/feedback", json={"request_id": "r", "label": "No"}).json() == {
        "accepted": 1, "already_labelled": 0,
    }  # fmt: skip


def test_no_feedback_items_is_a_422_that_says_so(client: TestClient) -> None:
    answer = client.post("/feedback", json={"items": []})
    assert (answer.status_code, answer.json()["reason"]) == (422, "empty_batch"), answer.text
    assert answer.json()["detail"] == "no feedback items; send at least one"


def test_too_many_feedback_items_is_a_413(client: TestClient, settings: Settings) -> None:
    limit = settings.max_batch_rows
    items = [{"request_id": f"r{i}", "label": "Yes"} for i in range(limit + 1)]
    answer = client.post("/feedback", json={"items": items})
    assert answer.status_code == 413, answer.text
    assert answer.json()["reason"] == "too_many_items"
    assert client.post("/feedback", json={"items": items[:limit]}).json()["accepted"] == limit


@pytest.mark.parametrize(
    "exposed",
    [{"serve_host": "0.0.0.0"}, {"behind_proxy": True}],  # noqa: S104 (what is tested)
    ids=["all-addresses", "behind-nginx"],
)
def test_a_server_others_can_reach_takes_no_label_without_the_token(
    tmp_path: Path, bundle_dir: Path, exposed: dict[str, object]
) -> None:
    app = create_app(serving_settings(tmp_path, **exposed), source=FileModelSource(bundle_dir))
    with TestClient(app) as client:
        answer = client.post("/feedback", json={"request_id": "r", "label": "Yes"})
    assert answer.status_code == 403, answer.text
    assert "DRIFTLOOP_FEEDBACK_TOKEN" in answer.json()["detail"]


def test_with_a_token_labels_need_it(tmp_path: Path, bundle_dir: Path) -> None:
    settings = serving_settings(tmp_path, serve_host="0.0.0.0", feedback_token="s3cret-token")  # noqa: S104
    label = {"request_id": "r", "label": "Yes"}
    with TestClient(create_app(settings, source=FileModelSource(bundle_dir))) as client:
        missing = client.post("/feedback", json=label)
        wrong = client.post("/feedback", json=label, headers={"authorization": "Bearer s3cret-tokem"})
        basic = client.post("/feedback", json=label, headers={"authorization": "Basic s3cret-token"})
        right = client.post("/models/churn/feedback", json=label, headers={"authorization": "Bearer s3cret-token"})
        predicted = client.post("/predict", content=b"{")  # predictions need no token
    assert (missing.status_code, wrong.status_code, basic.status_code) == (401, 401, 401)
    assert missing.json()["reason"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 202, right.text
    assert predicted.status_code == 400


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104 (what is tested)
        ("10.0.0.5", False),
        ("::", False),
        ("example.org", False),
    ],  # fmt: skip  # noqa: S104
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"features": {"a": "\xff"}}', "byte 0xff at offset 20 (invalid start byte)"),
        (b'\xfe{"features": {}}', "byte 0xfe at offset 0 (invalid start byte)"),
        (b'{"features": {"a": "ok\xc3"}}', "byte 0xc3 at offset 22 (invalid continuation byte)"),
        (b'{"request_id": "\xff", "note": NaN}', "byte 0xff at offset 16 (invalid start byte)"),  # via json.loads
    ],
    ids=["invalid-start", "first-byte", "cut-sequence", "with-nan"],
)
def test_a_body_that_is_not_utf8_is_a_400_naming_the_byte(
    client: TestClient, path: str, body: bytes, where: str
) -> None:
    # orjson's own message put every such body at "char 0", wherever the bad byte was.
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert f"malformed JSON: the body is not UTF-8: {where}" in answer.text
    assert "char 0" not in answer.text


def test_a_csv_body_that_is_not_utf8_is_a_400_naming_its_line(client: TestClient) -> None:
    body = b"a,b\n1,x\n2,caf\xe9\n"  # Latin-1: the codec said "position 15", of the whole body
    answer = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert answer.status_code == 400, answer.text
    assert (
        answer.json()["message"]
        == "the CSV body is not UTF-8: byte 0xe9 at line 3, offset 5 (invalid continuation byte)"
    )
