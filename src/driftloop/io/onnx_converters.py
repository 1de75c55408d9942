"""ONNX converters of the optional boosting extra (LightGBM, XGBoost), registered with skl2onnx when installed.

skl2onnx converts scikit-learn's own estimators; onnxmltools holds the converters of LightGBM's and XGBoost's
scikit-learn wrappers. Registering them lets the one export path (``io.onnx_export``) convert a pipeline that
ends in one of them, with the outputs every other classifier or regressor has.
"""

from __future__ import annotations

import importlib
from functools import cache

# (package, class, kind, skl2onnx alias, onnxmltools converter module, converter function)
_CONVERTERS = (
    ("lightgbm", "LGBMClassifier", "classifier", "LightGbmLGBMClassifier", "lightgbm", "convert_lightgbm"),
    ("lightgbm", "LGBMRegressor", "regressor", "LightGbmLGBMRegressor", "lightgbm", "convert_lightgbm"),
    ("xgboost", "XGBClassifier", "classifier", "XGBoostXGBClassifier", "xgboost", "convert_xgboost"),
    ("xgboost", "XGBRegressor", "regressor", "XGBoostXGBRegressor", "xgboost", "convert_xgboost"),
)
_CONVERTER_MODULES = {
    "lightgbm": "onnxmltools.convert.lightgbm.operator_converters.LightGbm",
    "xgboost": "onnxmltools.convert.xgboost.operator_converters.XGBoost",
}
_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}


@cache
def register_optional_converters() -> tuple[str, ...]:
    """Register the converters of every installed boosting package; the classes registered (once per process)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    registered = []
    for package, name, kind, alias, converters, function in _CONVERTERS:
        try:
            estimator = getattr(importlib.import_module(package), name)
            convert = getattr(importlib.import_module(_CONVERTER_MODULES[converters]), function)
        except ImportError:
            continue  # the extra is not installed: these estimators are refused where they are named
        classifier = kind == "classifier"
        update_registered_converter(
            estimator,
            alias,
            calculate_linear_classifier_output_shapes if classifier else calculate_linear_regressor_output_shapes,
            convert,
            options=_CLASSIFIER_OPTIONS if classifier else None,
        )
        registered.append(f"{package}.{name}")
    return tuple(registered)
