"""A reference profile on disk: one folder, no pickle.

    profile.json    format, row count, per column: kind, and std/distinct (numerical) or category counts;
                    "prediction": the model output's column, the same way (absent in older profiles)
                    "weights": each feature's importance weight, summing to 1 (absent in older profiles)
                    "target": the training target's column, as "prediction" (absent in older profiles)
                    "calibration": the model's calibration kind; its two arrays are in numeric.npz (absent in
                    older profiles and for regressors)
                    "thresholds": the schema's per-column drift thresholds (absent when the schema sets none)
                    "segments": the schema's segment columns (absent when it names none)
    numeric.npz     each numerical column's sorted reference values (float64), keyed c0, c1, ... as in profile.json,
                    and the prediction's under "prediction" when it is numerical
    sample.parquet  the seeded sample of reference rows, for the HTML report

The folder is logged as-is next to each model version (MLflow artifact path ``reference/``).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftloop.core.drift import (
    CategoricalReference,
    NumericReference,
    PredictionReference,
    ReferenceProfile,
    TargetReference,
)
from driftloop.core.performance_estimate import Calibration
from driftloop.errors import DatasetError

__all__ = ["FORMAT", "PROFILE_FILE", "SAMPLE_FILE", "VALUES_FILE", "load_profile", "save_profile"]

# Unchanged by the optional "prediction" entry: older readers ignore it, and this one reads profiles without it.
FORMAT = "driftloop.reference-profile/1"
PREDICTION_KEY = "prediction"  # profile.json entry and .npz key of the model output's column
WEIGHTS_KEY = "weights"
SEGMENTS_KEY = "segments"  # the schema's segment columns (absent when it names none)
THRESHOLDS_KEY = "thresholds"  # per-column drift thresholds from the schema (absent: the tests' defaults)
CALIBRATION_KEY = "calibration"
TARGET_KEY = "target"  # profile.json entry and .npz key of the training target's column
CALIBRATION_ARRAYS = ("calibration_scores", "calibration_probabilities")  # .npz keys
PROFILE_FILE = "profile.json"
VALUES_FILE = "numeric.npz"
SAMPLE_FILE = "sample.parquet"


def save_profile(profile: ReferenceProfile, directory: Path) -> list[Path]:
    """Write the profile's three files into ``directory`` (created if needed); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    columns: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for index, (name, ref) in enumerate(profile.numeric.items()):
        key = f"c{index}"
        arrays[key] = ref.values
        columns.append(_column_entry(name, ref, key))
    for name, categories in profile.categorical.items():
        columns.append(_column_entry(name, categories))
    document: dict[str, Any] = {
        "format": FORMAT,
        "rows": profile.rows,
        "sample_rows": len(profile.sample),
        "columns": columns,
    }
    if profile.prediction is not None:
        prediction = profile.prediction
        document[PREDICTION_KEY] = _column_entry(prediction.column, prediction.reference, PREDICTION_KEY)
        if isinstance(prediction.reference, NumericReference):
            arrays[PREDICTION_KEY] = prediction.reference.values
    if profile.target is not None:
        document[TARGET_KEY] = _column_entry(profile.target.column, profile.target.reference, TARGET_KEY)
        if isinstance(profile.target.reference, NumericReference):
            arrays[TARGET_KEY] = profile.target.reference.values
    if profile.weights is not None:
        document[WEIGHTS_KEY] = dict(profile.weights)
    if profile.thresholds:
        document[THRESHOLDS_KEY] = dict(profile.thresholds)
    if profile.segments:
        document[SEGMENTS_KEY] = list(profile.segments)
    if profile.calibration is not None:
        document[CALIBRATION_KEY] = {"kind": profile.calibration.kind}
        arrays[CALIBRATION_ARRAYS[0]] = profile.calibration.scores
        arrays[CALIBRATION_ARRAYS[1]] = profile.calibration.probabilities

    meta_path = directory / PROFILE_FILE
    values_path = directory / VALUES_FILE
    sample_path = directory / SAMPLE_FILE
    meta_path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    np.savez(values_path, allow_pickle=False, **arrays)  # float64 values only, as load_profile reads them
    profile.sample.to_parquet(sample_path, index=False)
    return [meta_path, values_path, sample_path]


def download_profile(tracking_uri: str, reference_uri: str) -> ReferenceProfile:
    """A version's profile from its MLflow artifact (the ``driftloop.reference_uri`` tag)."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="driftloop-reference-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=reference_uri, dst_path=tmp, tracking_uri=tracking_uri)
        return load_profile(Path(local))


def load_profile(directory: Path) -> ReferenceProfile:
    """Read a profile written by ``save_profile``.

    Raises:
        DatasetError: a file is missing, unreadable or not in this format.
    """
    directory = Path(directory)
    meta_path = directory / PROFILE_FILE
    try:
        document = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"no reference profile in {directory} ({PROFILE_FILE} is missing)") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise DatasetError(f"{meta_path} is not a {FORMAT} file (format: {found!r})")

    numeric: dict[str, NumericReference] = {}
    categorical: dict[str, CategoricalReference] = {}
    prediction: PredictionReference | None = None
    try:
        with np.load(directory / VALUES_FILE, allow_pickle=False) as arrays:
            for column in document["columns"]:
                ref = _read_column(column, arrays)
                if isinstance(ref, NumericReference):
                    numeric[column["name"]] = ref
                else:
                    categorical[column["name"]] = ref
            entry = document.get(PREDICTION_KEY)
            if entry is not None:
                prediction = PredictionReference(str(entry["name"]), _read_column(entry, arrays))
            calibration = _read_calibration(document.get(CALIBRATION_KEY), arrays)
            entry = document.get(TARGET_KEY)
            target = None if entry is None else TargetReference(str(entry["name"]), _read_column(entry, arrays))
        sample = pd.read_parquet(directory / SAMPLE_FILE)
        rows = int(document["rows"])
        weights = _read_weights(document.get(WEIGHTS_KEY), [*numeric, *categorical])
        thresholds = _read_thresholds(document.get(THRESHOLDS_KEY), [*numeric, *categorical])
        segments = tuple(str(name) for name in document.get(SEGMENTS_KEY, []) if name in categorical)
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"the reference profile in {directory} is incomplete or damaged: {exc!r}") from exc
    return ReferenceProfile(
        rows=rows,
        numeric=numeric,
        categorical=categorical,
        sample=sample,
        prediction=prediction,
        weights=weights,
        calibration=calibration,
        target=target,
        thresholds=thresholds,
        segments=segments,
    )


def _read_thresholds(entry: object, columns: list[str]) -> dict[str, float] | None:
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ValueError(f"{THRESHOLDS_KEY} must map columns to thresholds, got {entry!r}")
    thresholds = {str(name): float(value) for name, value in entry.items()}
    unknown = sorted(set(thresholds) - set(columns))
    if unknown or any(not 0 < value < 1 for value in thresholds.values()):
        raise ValueError(f"{THRESHOLDS_KEY}: each must be a profile column's, in (0, 1): {thresholds}")
    return thresholds


def _read_calibration(entry: object, arrays: Mapping[str, np.ndarray]) -> Calibration | None:
    if entry is None:
        return None
    if not isinstance(entry, dict) or entry.get("kind") not in ("binary", "top-label"):
        raise ValueError(f"{CALIBRATION_KEY} must say its kind (binary or top-label), got {entry!r}")
    scores, probabilities = (np.asarray(arrays[key], dtype=np.float64) for key in CALIBRATION_ARRAYS)
    if scores.shape != probabilities.shape or scores.ndim != 1 or scores.size == 0 or np.any(np.diff(scores) < 0):
        raise ValueError(f"{CALIBRATION_KEY}: the scores must rise, one probability each")
    return Calibration(entry["kind"], scores, probabilities)


def _read_weights(entry: object, columns: list[str]) -> dict[str, float] | None:
    """The profile's importance weights, checked: one per column, none negative, summing to 1."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or sorted(entry) != sorted(columns):
        raise ValueError(f"{WEIGHTS_KEY} must name each column once: {columns}")
    weights = {str(name): float(value) for name, value in entry.items()}
    if any(not 0 <= value <= 1 for value in weights.values()) or abs(sum(weights.values()) - 1) > 1e-6:
        raise ValueError(f"{WEIGHTS_KEY} must be in [0, 1] and sum to 1, got {weights}")
    return weights


def _column_entry(name: str, ref: NumericReference | CategoricalReference, key: str = "") -> dict[str, Any]:
    """A column's entry in profile.json; a numerical one's values are in the .npz under ``key``."""
    if isinstance(ref, NumericReference):
        return {"name": name, "kind": "numerical", "values": key, "std": ref.std, "distinct": ref.distinct}
    return {"name": name, "kind": "categorical", "counts": dict(ref.counts)}


def _read_column(column: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> NumericReference | CategoricalReference:
    if column["kind"] == "numerical":
        values = np.asarray(arrays[column["values"]], dtype=np.float64)
        return NumericReference(values=values, std=float(column["std"]), distinct=int(column["distinct"]))
    return CategoricalReference(counts={str(k): int(v) for k, v in column["counts"].items()})
