"""The user's own estimator: a factory, imported and called.

Two spellings of the reference, as Prefect's entrypoints take them:

    package.module:factory      imported; the current directory is searched first, as ``uvicorn module:app`` does
    path/to/models.py:factory   loaded from that file (recorded with its absolute path)

The reference is what a version records as its estimator, so a retrain loads the same factory again: the process
that runs it (the CLI, or the Prefect worker of ``driftloop up``) must find it. A file on the same machine is found
by its path; a module must be installed or on ``PYTHONPATH`` where the worker runs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from driftloop.core.features import encode_target, to_model_frame
from driftloop.core.float32_splits import snap_fitted_pipeline
from driftloop.core.pipeline import build_pipeline, configure_estimator, make_estimator
from driftloop.core.sampling import sample_positions, sample_positions_by_label
from driftloop.core.schema import DatasetSchema
from driftloop.core.task import Task
from driftloop.errors import ConfigError, ExportError
from driftloop.io.onnx_export import USER_MODULE_PREFIX, check_convertible, export_onnx

_MODULE_REFERENCE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_FILE_REFERENCE = re.compile(r"^(?P<path>.+\.py):(?P<name>[A-Za-z_]\w*)$")


def is_factory_reference(estimator: str) -> bool:
    """A factory (``pkg.module:factory`` or ``file.py:factory``) rather than a built-in estimator's name."""
    return ":" in estimator


def canonical_reference(estimator: str) -> str:
    """The reference as a version records it: a file's path made absolute, anything else unchanged."""
    match = _FILE_REFERENCE.match(estimator)
    if match is None:
        return estimator
    return f"{Path(match['path']).expanduser().resolve()}:{match['name']}"


def resolve_estimator(
    estimator: str, params: Mapping[str, Any] | None = None, seed: int = 42, task: Task | None = None
) -> BaseEstimator:
    """The unfitted, configured estimator ``estimator`` names (built-in or a factory), known to export to ONNX.

    Raises:
        ConfigError: the name or reference is unknown, cannot be imported or called, or takes other parameters.
        ExportError: skl2onnx has no converter for it (checked before anything is fitted).
    """
    if not is_factory_reference(estimator):
        model = make_estimator(estimator, params, seed, task)
    else:
        model = configure_estimator(estimator, _call_factory(estimator), params, seed, task)
    check_convertible(model)
    return model


def candidate_pipeline(schema: DatasetSchema, estimator: str, params: Mapping[str, Any] | None, seed: int) -> Pipeline:
    """The unfitted pipeline a run fits: the schema's preprocessing and ``estimator``, or the user's whole Pipeline."""
    return build_pipeline(schema, resolve_estimator(estimator, params, seed, schema.task), seed=seed)


TRIAL_ROWS = 1_000  # enough to fit most models, few enough to take seconds


def check_export_on_sample(
    rows: pd.DataFrame, schema: DatasetSchema, estimator: str, params: Mapping[str, Any] | None, seed: int
) -> int | None:
    """Fit a user's model on at most ``TRIAL_ROWS`` of ``rows`` (a classifier's every class kept) and export it.

    skl2onnx has a converter for a step that still refuses how it is configured (a ``SimpleImputer`` filling text
    with ``missing_values=nan``), which ``check_convertible`` cannot see before a fit: found here, it fails in
    seconds rather than after the full fit (trial 52). Returns the rows it was fitted on, or None when it could
    not be fitted on so few (proving nothing: the full fit goes ahead).

    Raises:
        ExportError: The model fitted on the sample cannot be exported to ONNX.
    """
    target = encode_target(rows[schema.target.name], schema)
    positions = (
        sample_positions_by_label(target, TRIAL_ROWS, seed, floor=1)
        if schema.task.is_classifier
        else sample_positions(len(rows), TRIAL_ROWS, seed)
    )
    pipeline = candidate_pipeline(schema, estimator, params, seed)
    try:
        pipeline.fit(to_model_frame(rows.iloc[positions], schema), target[positions])
    except Exception:  # a model that needs more rows than the sample: its own fit will say what is wrong
        return None
    snap_fitted_pipeline(pipeline)
    try:
        export_onnx(pipeline, schema)
    except ExportError as error:
        raise ExportError(
            f"{error} (found before the full fit: {estimator} fitted on {len(positions):,} of the training rows, "
            "then exported)"
        ) from None
    return len(positions)


def _call_factory(reference: str) -> Any:
    file_match = _FILE_REFERENCE.match(reference)
    if file_match is not None:
        module, attribute = _load_file(reference, Path(file_match["path"]).expanduser()), file_match["name"]
    elif _MODULE_REFERENCE.match(reference):
        module_name, _, attribute = reference.partition(":")
        module = _import(reference, module_name)
    else:
        raise ConfigError(
            f"--model {reference!r} is not a reference like 'package.module:factory' or 'path/to/models.py:factory'"
        )
    factory = getattr(module, attribute, None)
    if not callable(factory):
        found = "nothing" if factory is None else f"a {type(factory).__name__}"
        where = file_match["path"] if file_match is not None else module.__name__
        raise ConfigError(f"--model {reference}: {where} has {found} called {attribute!r}, not a function")
    try:
        return factory()
    except Exception as error:
        raise ConfigError(f"--model {reference}: calling it raised {type(error).__name__}: {error}") from None


def _import(reference: str, module_name: str) -> ModuleType:
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    except Exception as error:  # the user's module can fail any way while it is imported
        raise ConfigError(
            f"--model {reference}: cannot import {module_name!r} ({type(error).__name__}: {error}); run from the "
            "directory that holds it, install it, or put its directory on PYTHONPATH"
        ) from None


def _load_file(reference: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"--model {reference}: there is no file {path}")
    # One module per file, under a name that cannot clash with an installed one.
    name = f"{USER_MODULE_PREFIX}{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--model {reference}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first, as an import would: pickling its classes needs it
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ConfigError(f"--model {reference}: loading {path} raised {type(error).__name__}: {error}") from None
    return module
