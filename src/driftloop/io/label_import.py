"""Labels that arrive late, in bulk: a table or file of (request id, row, label) joined to the prediction log.

The ids may be the server's (the ``request_id`` every answer carries) or the client's own (the ``X-Request-ID``
it sent, kept as ``client_request_id``). The whole table is checked before anything is written: a label the model
cannot use (a class it does not know, a value that is not a finite number) refuses the import and names the row.
Ids that match no logged prediction are counted and left out. A row labelled already keeps its first label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from driftloop.core.scoring import id_text
from driftloop.core.task import Task
from driftloop.core.validation import data_row
from driftloop.errors import DatasetError
from driftloop.io.prediction_store import Feedback, SqlPredictionStore, predictions

_LOOKUP_PAGE = 500
_WRITE_PAGE = 5_000


@dataclass(frozen=True)
class LabelImport:
    """What an import did."""

    rows: int  # rows in the table
    missing: int  # rows with no label yet (left out)
    accepted: int  # labels written
    already_labelled: int  # rows that had a label already (kept)
    unmatched: int  # rows whose id and row matched no logged prediction of the model
    unmatched_examples: tuple[str, ...] = ()
    repeated: int = 0  # rows whose id and row came earlier in the table (the first label given is the one kept)


def label_texts(values: pd.Series, task: Task, column: str) -> list[str | None]:
    """The labels as the prediction log keeps them (text; a regressor's value as ``repr(float)``); None: missing.

    Raises:
        DatasetError: A label is not one the task can use; the message names the first such row.
    """
    texts = [_label_text(value, task) for value in values.tolist()]
    given = np.asarray([t is not None for t in texts])
    usable = task.usable_labels(np.asarray([t or "" for t in texts], dtype=object)) | ~given
    if not usable.all():
        first = int(np.flatnonzero(~usable)[0])
        expected = (
            "one of " + ", ".join(repr(c) for c in task.classes)
            if task.is_classifier
            else "a finite number within float32 range"
        )
        bad = int(np.count_nonzero(~usable))
        raise DatasetError(
            f"label column {column!r}: {data_row(first)} is {values.tolist()[first]!r}, expected {expected} "
            f"({bad:,} such row(s)); nothing was imported"
        )
    return texts


def _label_text(value: object, task: Task) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if not task.is_classifier:
        try:
            return repr(float(value))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return str(value)
    # A CSV column of class numbers with a gap is read as floats: 1.0 is the class "1".
    if isinstance(value, float) and value.is_integer() and str(value) not in task.classes:
        return str(int(value))
    return str(value)


def import_labels(
    store: SqlPredictionStore,
    model_name: str,
    ids: list[str],
    rows: list[int],
    labels: list[str | None],
) -> LabelImport:
    """Write each (id, row) → label to the prediction log's feedback, resolving client ids to the server's.

    A row without a label (None) is left out; a row given twice keeps its first label, as the feedback does.
    """
    wanted: dict[tuple[str, int], str] = {}
    repeated = 0
    for key, label in zip(zip(ids, rows, strict=True), labels, strict=True):
        if label is not None:
            repeated += key in wanted
            wanted.setdefault(key, label)
    known = _logged_rows(store, model_name, sorted(set(ids)))
    items: list[Feedback] = []
    unmatched: list[str] = []
    for (given, row), label in wanted.items():
        server_id = known.get((given, row))
        if server_id is None:
            unmatched.append(f"{given}#{row}")
        else:
            items.append(Feedback(request_id=server_id, row_index=row, actual=label))
    accepted = already = 0
    for start in range(0, len(items), _WRITE_PAGE):
        written = store.write_feedback(model_name, items[start : start + _WRITE_PAGE])
        accepted += written.accepted
        already += written.already_labelled
    missing = sum(label is None for label in labels)
    return LabelImport(len(ids), missing, accepted, already, len(unmatched), tuple(unmatched[:3]), repeated)


def _logged_rows(store: SqlPredictionStore, model_name: str, ids: list[str]) -> dict[tuple[str, int], str]:
    """(given id, row) → the server's request id, for each logged row whose server or client id is given."""
    table = predictions.c
    found: dict[tuple[str, int], str] = {}
    with store.engine.connect() as connection:
        for start in range(0, len(ids), _LOOKUP_PAGE):
            page = ids[start : start + _LOOKUP_PAGE]
            query = sa.select(table.request_id, table.client_request_id, table.row_index).where(
                (table.model_name == model_name) & (table.request_id.in_(page) | table.client_request_id.in_(page))
            )
            for request_id, client_id, row in connection.execute(query):
                if client_id is not None:
                    found.setdefault((client_id, row), request_id)
                found[(request_id, row)] = request_id  # the server's own id wins over a client's equal one
    return found


def read_label_table(frame: pd.DataFrame, id_column: str, label_column: str, row_column: str | None) -> pd.DataFrame:
    """The three columns of a labels table, checked: ids present, rows whole numbers ≥ 0 (0 without a row column).

    Raises:
        DatasetError: A column is missing, an id is empty, or a row index is not a whole number ≥ 0.
    """
    missing = [c for c in (id_column, label_column, row_column) if c is not None and c not in frame.columns]
    if missing:
        raise DatasetError(f"the labels table has no column {missing[0]!r} (columns: {', '.join(map(str, frame))})")
    ids = frame[id_column]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        raise DatasetError(f"id column {id_column!r}: {data_row(int(np.flatnonzero(empty)[0]))} has no id")
    if row_column is None:
        row_values = pd.Series(0, index=frame.index)
    else:
        row_values = pd.to_numeric(frame[row_column], errors="coerce")
        bad = row_values.isna() | (row_values < 0) | (row_values % 1 != 0)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"row column {row_column!r}: {data_row(first)} is {frame[row_column].tolist()[first]!r}, "
                "expected a row index (a whole number ≥ 0)"
            )
    return pd.DataFrame({"id": ids.map(id_text), "row": row_values.astype(np.int64), "label": frame[label_column]})
