"""The prediction endpoints: for each, how a decoded body is parsed and how its answer and its errors look.

The same ``Endpoint`` serves a request whichever way it arrived (the FastAPI route or the ASGI fast path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.errors import InputError
from driftloop.serving import protocols
from driftloop.serving.inputs import FeatureBatch, FeatureParser
from driftloop.serving.model import ServingModel

Parse = Callable[[Any, FeatureParser], FeatureBatch]
# The model's outputs (``io.onnx_runtime.Outputs``: labels and probabilities, or values and None) and the model.
Respond = Callable[[np.ndarray, np.ndarray | None, ServingModel], Any]
ErrorBody = Callable[[InputError], Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A prediction endpoint: its metrics label, how it reads a decoded body, and how it answers."""

    name: str
    parse: Parse
    respond: Respond
    error_body: ErrorBody
    # The status for content that breaks the schema: 422, or 400 where the protocol says so (MLflow's server).
    invalid_status: int = 422


def error_detail(error: InputError) -> dict[str, Any]:
    return error.detail()


def _predict_response(labels: np.ndarray, proba: np.ndarray | None, model: ServingModel) -> Any:
    return protocols.predict_response(labels, proba, model.parser.schema, model.version)


def _batch_response(labels: np.ndarray, proba: np.ndarray | None, model: ServingModel) -> Any:
    return protocols.batch_response(labels, proba, model.parser.schema, model.version)


def _invocations_response(labels: np.ndarray, proba: np.ndarray | None, model: ServingModel) -> Any:
    return protocols.invocations_response(labels, proba)


def v2_error(error: InputError) -> Any:
    return protocols.v2_error(error.message)


def _parse_invocations(body: Any, parser: FeatureParser) -> FeatureBatch:
    """``protocols.parse_invocations``, with the one-row parser for MLflow clients' commonest request.

    One row as ``dataframe_split`` (in schema order) or ``dataframe_records``: the batch parser's numpy work
    per column costs ten times the one-row checks. Both accept the same values and build the same feed;
    any problem goes to the batch parser, so error messages stay exactly its own.
    """
    if type(body) is dict and len(body) == 1:
        split = body.get("dataframe_split")
        if type(split) is dict and len(split) <= 2:
            data = split.get("data")
            columns = split.get("columns", None if len(split) == 1 else False)
            if type(data) is list and len(data) == 1 and (columns is None or columns == parser.feature_names):
                try:
                    return parser.from_row(data[0])
                except InputError:
                    pass
        records = body.get("dataframe_records")
        if type(records) is list and len(records) == 1:
            try:
                return parser.from_record(records[0])
            except InputError:
                pass
    return protocols.parse_invocations(body, parser)


PREDICT = Endpoint("predict", protocols.parse_predict, _predict_response, error_detail)
PREDICT_BATCH = Endpoint("predict_batch", protocols.parse_predict_batch, _batch_response, error_detail)
# `mlflow models serve` answers every input it cannot score with 400 BAD_REQUEST: so does /invocations.
INVOCATIONS = Endpoint("invocations", _parse_invocations, _invocations_response, protocols.mlflow_error, 400)
INVOCATIONS_CSV = Endpoint(
    "invocations", protocols.parse_invocations_csv, _invocations_response, protocols.mlflow_error, 400
)
# The routes the ASGI fast path answers (JSON bodies; /invocations with another content type goes to its route).
FAST_PATHS = {"/predict": PREDICT, "/predict/batch": PREDICT_BATCH, "/invocations": INVOCATIONS}
