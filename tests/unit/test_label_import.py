"""Late labels from a table: ids resolved (the server's or the client's), bad labels refused before any write."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core.schema import DatasetSchema
from driftloop.core.task import Task, TaskKind
from driftloop.errors import DatasetError
from driftloop.io.label_import import import_labels, label_texts, read_label_table
from driftloop.io.partition_scoring import LogSampling, score_partition
from driftloop.io.prediction_store import open_prediction_log
from tests.support.churn import scoring_model
from tests.support.prediction_log import T0, make_event

CHURN = Task(TaskKind.BINARY, ("No", "Yes"))


def test_server_and_client_ids_both_join_partial_tables_fill_in(tmp_path: Path) -> None:
    store = open_prediction_log(f"sqlite:///{tmp_path / 'predictions.db'}")
    try:
        store.write(
            [make_event(T0, "srv-1", rows=3), replace(make_event(T0 + 1, "srv-2"), client_request_id="order-7")]
        )
        table = read_label_table(
            pd.DataFrame({"id": ["srv-1", "srv-1", "order-7", "srv-1", "nowhere"], "row": [0, 2, 0, 7, 0],
                          "y": ["Yes", None, "No", "No", "Yes"]}),
            "id", "y", "row",
        )  # fmt: skip
        labels = label_texts(table["label"], CHURN, "y")
        done = import_labels(store, "churn", table["id"].tolist(), table["row"].tolist(), labels)
        assert (done.rows, done.missing, done.accepted, done.unmatched) == (5, 1, 2, 2)
        assert done.unmatched_examples == ("srv-1#7", "nowhere#0")
        window = store.read_window("churn")
        assert window["actual"].tolist() == ["Yes", None, None, "No"]
        # The rest arrives later: the missing one now labelled, the first one given again (kept as it was).
        later = import_labels(store, "churn", ["srv-1", "srv-1", "srv-1"], [2, 0, 2], ["No", "No", "Yes"])
        assert (later.accepted, later.already_labelled, later.repeated) == (1, 1, 1)  # row 2 given twice: "No" kept
        assert store.read_window("churn")["actual"].tolist() == ["Yes", None, "No", "No"]
        assert store.count_labelled("churn") == 3
    finally:
        store.close()


def test_a_label_the_model_cannot_use_is_refused_naming_its_row() -> None:
    expected = r"label column 'y': data row 3 is 'maybe', expected one of 'No', 'Yes' \(1 such"
    with pytest.raises(DatasetError, match=expected):
        label_texts(pd.Series(["Yes", None, "maybe"]), CHURN, "y")
    regressor = Task(TaskKind.REGRESSION)
    assert label_texts(pd.Series([1.5, np.nan, 3]), regressor, "v") == ["1.5", None, "3.0"]
    with pytest.raises(DatasetError, match="data row 1 is 'abc', expected a finite number"):
        label_texts(pd.Series(["abc", 1.0]), regressor, "v")
    # A CSV column of class numbers with a gap reads as floats: 1.0 is the class "1".
    assert label_texts(pd.Series([1.0, 0.0, np.nan]), Task(TaskKind.BINARY, ("0", "1")), "y") == ["1", "0", None]


def test_the_table_s_columns_are_checked() -> None:
    frame = pd.DataFrame({"id": [17.0, 18.0, np.nan], "y": ["Yes", "No", "No"], "row": [0, 1.5, 0]})
    with pytest.raises(DatasetError, match="the labels table has no column 'label'"):
        read_label_table(frame, "id", "label", None)
    with pytest.raises(DatasetError, match="id column 'id': data row 3 has no id"):
        read_label_table(frame, "id", "y", None)
    with pytest.raises(DatasetError, match="row column 'row': data row 2 is 1.5, expected a row index"):
        read_label_table(frame.iloc[:2], "id", "y", "row")
    table = read_label_table(frame.iloc[:2], "id", "y", None)
    assert table["id"].tolist() == ["17", "18"]
    assert table["row"].tolist() == [0, 0]


def test_rows_scored_in_batch_with_one_key_take_late_labels_by_that_key(
    tmp_path: Path, churn_frame: pd.DataFrame, churn_schema: DatasetSchema
) -> None:
    """Trial 12: rows logged by `driftloop score --key order_id` matched no label given by order_id."""
    model = scoring_model(churn_frame, churn_schema)
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    batch = churn_frame.iloc[600:800].drop(columns=["churn"]).reset_index(drop=True)
    batch.insert(0, "order_id", np.arange(5000, 5200))  # numbers, as a Parquet key column holds them
    batch.insert(1, "region", "north")
    for keys, out in ((["order_id"], "one"), (["order_id", "region"], "two")):
        (tmp_path / out).mkdir()
        done = score_partition(batch, (0, 0), model, keys, str(tmp_path / out), LogSampling(url, 1.0))
        assert done.logged == 200
    labels = pd.DataFrame({"order_id": [5000, 5007, 5199, 123], "churn": ["Yes", "No", "No", "Yes"]})
    table = read_label_table(labels, "order_id", "churn", None)
    store = open_prediction_log(url)
    try:
        done = import_labels(store, "churn", table["id"].tolist(), table["row"].tolist(),
                             label_texts(table["label"], CHURN, "churn"))  # fmt: skip
        # The one-key run logged each row as a request of its own, its key as the client's id; the two-key run
        # logged one request of all its rows, which no single id names.
        assert (done.accepted, done.unmatched, done.unmatched_examples) == (3, 1, ("123#0",))
        assert store.read_window("churn")["actual"].notna().sum() == 3
    finally:
        store.close()
