"""Names of the MLflow tags that carry a model version's lineage and decisions (one spelling everywhere)."""

from __future__ import annotations

import re
from collections.abc import Mapping

PREFIX = "driftloop."

# A registered model's name: also a path segment of the server's routes, a Prefect deployment's and a container's.
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def as_model_name(text: str) -> str:
    """``text`` as a registered model's name: each run of other characters becomes one '-' ("My data" → "My-data")."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return name or "model"


DATA_HASH = "driftloop.data_hash"
DATA_ROWS = "driftloop.data_rows"
SCHEMA_NAME = "driftloop.schema"
SCHEMA_FINGERPRINT = "driftloop.schema_fingerprint"
SCHEMA_CONTRACT = "driftloop.schema_contract"  # what a model takes: two versions with the same one can be compared
TASK = "driftloop.task"  # the model's task: {"kind": ..., "classes": [...]} (core.task.Task.record)
ESTIMATOR = "driftloop.estimator"
TRAINED_AT = "driftloop.trained_at"
GIT_COMMIT = "driftloop.git_commit"
FLOW_RUN_ID = "driftloop.prefect_flow_run_id"
FLOW_RUN_URL = "driftloop.prefect_flow_run_url"
CLOSED_LATE = "driftloop.closed_late"  # why a run was closed FAILED by a later one, or as its process gave up
ONNX_SHA256 = "driftloop.onnx_sha256"
PARITY = "driftloop.parity"  # "passed" | "failed"
PARITY_MAX_ABS_DIFF = "driftloop.parity_max_abs_diff"
PARITY_DETAIL = "driftloop.parity_detail"
METRIC = "driftloop.metric."  # + a metric's name (and "rows"): the version's value on its whole holdout
# + a metric's name (and "rows"): a retrain's value on the holdout rows of the truth it learnt (its recent rows), when
# the labels of live traffic had changed; the label check then holds live labels to it, not to the mixed holdout's.
TRUTH_BASELINE = "driftloop.truth_baseline."
# "recent" | "all": the rows a retrain after a changed truth was fitted on (core.training_window)
TRAINING_WINDOW = "driftloop.training_window"
TRAINING_WINDOW_REASON = "driftloop.training_window_reason"  # the comparison that chose it, in one sentence
GATE = "driftloop.gate"  # "promote" | "refuse"
REFUSED = "refuse"  # GATE's value for a version its gate refused
GATE_REASON = "driftloop.gate_reason"
GATE_RULE = "driftloop.gate_rule"  # the rule the gate applied, in one sentence
GATE_SEGMENTS = "driftloop.gate_segments"  # JSON: per holdout segment, both models' metric and the interval
IGNORED_COLUMNS = "driftloop.ignored_columns"  # JSON list: the snapshot's columns the schema does not name
SKLEARN_MODEL_URI = "driftloop.sklearn_model_uri"
DATA_PATH = "driftloop.data_path"  # the snapshot file a version was trained on (informative: may have moved)
# How a version was trained, so a retrain rebuilds it the same way (core/recipe.py).
PARAMS = "driftloop.params"  # JSON: the estimator parameters the user gave
GATE_POLICY = "driftloop.gate_policy"  # JSON: floors, tolerance and significance settings of its gate
SPLIT = "driftloop.split"  # JSON: holdout fraction and seed
SNAPSHOT_URI = "driftloop.snapshot_uri"  # the training snapshot in the artifact store, named by its content hash
SOURCE = "driftloop.source"  # where the data came from (the path or URL the user gave)
SOURCE_HASH = "driftloop.source_hash"  # that source's content hash when it was read
LABELS_THROUGH = "driftloop.labels_through"  # the newest label (feedback time) in its snapshot
BASE_ROWS = "driftloop.base_rows"  # a retrain's snapshot: how many of its first rows are its base's (then: recent)
RETRAIN_OF = "driftloop.retrain_of"  # the drifted champion version a retrain was built from
RETRAIN_DECISION = "driftloop.retrain_decision"  # on a drifted version: what its latest retrain decided and why
REFERENCE_URI = "driftloop.reference_uri"  # the drift reference profile saved with the version
IMAGE_ID = "driftloop.image_id"  # the serving image built for the version (sha256:...)
IMAGE_TAG = "driftloop.image_tag"

# Drift episodes (see core/episodes.py): on a version, and the last retrain on the registered model.
DRIFT_EPISODE = "driftloop.drift_episode"
RETRAINED_EPISODE = "driftloop.retrained_episode"
LAST_RETRAIN_AT = "driftloop.last_retrain_at"

# The champion's append-only history (core/history.py): one MLflow run per entry in this experiment, found by
# the model tag, chained by hashes; the registered model carries one compact current-state tag (STATE).
HISTORY_EXPERIMENT = "driftloop-history"
HISTORY_MODEL = "driftloop.history.model"
HISTORY_SEQ = "driftloop.history.seq"
HISTORY_ACTION = "driftloop.history.action"
HISTORY_FROM = "driftloop.history.from"
HISTORY_TO = "driftloop.history.to"
HISTORY_ACTOR = "driftloop.history.actor"
HISTORY_REASON = "driftloop.history.reason"
HISTORY_AT = "driftloop.history.at"
HISTORY_ENTRY = "driftloop.history.entry"  # the canonical JSON the hash is taken of
HISTORY_PREV = "driftloop.history.prev"
HISTORY_HASH = "driftloop.history.hash"
STATE = "driftloop.state"

# Older versions kept one registered-model tag per move under this prefix: still read, never written.
HISTORY_PREFIX = "driftloop.history."

PASSED = "passed"
FAILED = "failed"

# Files inside the registered (ONNX-flavour) model's directory.
ONNX_FILE = "model.onnx"
# The same graph with the features grouped into two inputs, what the server runs when the bundle has it.
SERVING_ONNX_FILE = "serving.onnx"
SELFCHECK_FILE = "selfcheck.json"
SCHEMA_FILE = "schema.json"
MODEL_INFO_FILE = "model_info.json"  # written beside the bundle when a model is baked into an image


def parity_refusal(tags: Mapping[str, str], model_name: str, version: str, use: str) -> str | None:
    """Why a version may not ``use`` ("become champion", "be rolled out", "score"); None if its parity passed.

    Only a version whose ONNX export passed the parity check answers anyone: its graph is the model it was trained as.
    """
    parity = tags.get(PARITY)
    if parity == PASSED:
        return None
    return (
        f"version {version} of {model_name!r} has {PARITY}={parity or 'unset'}: only a version whose ONNX export "
        f"passed the parity check may {use}"
    )


def refused_by_gate(tags: Mapping[str, str]) -> str | None:
    """The first line of the gate's reasons when it refused the version; None when it did not (or never ran)."""
    if tags.get(GATE) != REFUSED:
        return None
    return tags.get(GATE_REASON, "").split("\n", 1)[0] or "no reason recorded"


def gate_refusal(tags: Mapping[str, str], model_name: str, version: str) -> str | None:
    """Why a version its promotion gate refused may not get traffic without a reason given; None if it passed.

    A person may overrule the gate (a metric the gate does not weigh, a known bad holdout), as ``promote`` lets them:
    then the reason goes into the alias history beside the move.
    """
    why = refused_by_gate(tags)
    if why is None:
        return None
    return (
        f"version {version} of {model_name!r} was refused by its promotion gate ({why}): to put it into service "
        f'anyway, give the reason (driftloop rollout {version} --reason "WHY"; the ship-model flow\'s reason '
        "parameter), which the alias history keeps"
    )
